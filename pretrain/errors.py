"""The one error path of the pretrain commands: `python -m pretrain`, `.prepare`, `.export`.

Each module raises its own error type where the bad value enters (`ConfigError`,
`RunFolderError`, `DatasetError`, `StoreError`, `PrepareError`, `hear_slicer`'s
`CheckpointError`, ...); each derives from one of the two kinds below. `run_command` runs a
command's body, catches them, prints one line (`error: ...`, naming the input) and returns
the exit code; `--debug` adds the traceback. Anything else is a bug and keeps its traceback.

    exit 2  USAGE: the arguments or the config are wrong (a key out of range, a run folder
            that holds another run, resuming to fewer steps, a file in the way that the command
            did not write: `hear_slicer.written.ForeignFileError`, ...)
    exit 3  DATA: what is read or written is missing, damaged or unusable (a corpus with
            no usable audio, a tampered store, a corrupt checkpoint, a full or read-only disk)
    exit 1  the run diverged (`TrainingDiverged`: a NaN/Inf loss or training state)
"""
from __future__ import annotations

import sys
import traceback
from typing import Callable

from hear_slicer.checkpoint import CheckpointError
from hear_slicer.written import ForeignFileError

__all__ = ["UsageError", "DataError", "Diverged", "USAGE", "DATA", "DIVERGED", "exit_code", "run_command"]

USAGE, DATA, DIVERGED = 2, 3, 1


class UsageError(ValueError):
    """The command's arguments or config are wrong; the message names the argument or key."""


class DataError(ValueError):
    """Data the command reads or writes is missing, damaged or unusable; the message names the file."""


class Diverged(RuntimeError):
    """Training produced NaN or Inf values; the message names the last good checkpoint."""


def exit_code(error: BaseException) -> int | None:
    """The exit code for an error of the pretrain commands; None for anything else (a bug)."""
    if isinstance(error, (UsageError, ForeignFileError)):
        return USAGE
    if isinstance(error, (DataError, CheckpointError, OSError)):
        return DATA
    if isinstance(error, Diverged):
        return DIVERGED
    return None


def one_line(error: BaseException) -> str:
    """The error's message on one line, undecodable bytes of file names as backslash escapes."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def run_command(body: Callable[[], object], debug: bool = False) -> int:
    """Run `body`; 0 when it returns, else print the error as one line and return its exit code."""
    try:
        body()
    except Exception as e:  # classified below; anything else is a bug and is re-raised
        code = exit_code(e)
        if code is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"error: {one_line(e)}", file=sys.stderr)
        return code
    return 0
