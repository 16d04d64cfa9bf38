"""How a command of this project fails: two kinds of error, one exit code each, one message.

Every module raises its own error type, named after what it checks (``ManifestError``,
``TaskFormatError``, ``LayoutError``, ``CorruptResult``, ...); each is a :class:`UsageError`
or a :class:`DataError`, so a command line sorts them without knowing them all:

- exit 2, :class:`UsageError`: a bad command line, manifest, option or source folder, or an
  input named on the command line that does not exist (``FileNotFoundError``);
- exit 3, :class:`DataError` or any other ``OSError``: input data that cannot be read as
  what it should be, or an output that cannot be written (disk full, read-only folder).

(Exit 1 stays the commands' own "ran, but something failed", e.g. a failed cell.)
Outputs are written through :func:`write_file`, so that a full disk or read-only folder is
an OSError naming the file (the OS's own message often names none).
:func:`run_command` prints such an error as ``error: <message>`` (its first line names the
input; an error listing several problems, e.g. a manifest's, lists them below it) and
returns its code; ``debug=True`` (the commands' ``--debug``) re-raises it, with
its traceback. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["EXIT_USAGE", "EXIT_DATA", "UsageError", "DataError", "exit_code", "run_command", "write_file"]

EXIT_USAGE = 2
EXIT_DATA = 3


class UsageError(ValueError):
    """A bad command line, manifest, option or source folder: exit 2."""


class DataError(ValueError):
    """Input data that cannot be read as what it should be: exit 3."""


def exit_code(error: UsageError | DataError | OSError) -> int:
    """The exit code of an expected error: 2 (usage) or 3 (data, I/O)."""
    return EXIT_USAGE if isinstance(error, (UsageError, FileNotFoundError)) else EXIT_DATA


def run_command(command: Callable[[], int], debug: bool = False) -> int:
    """``command()``'s exit status; an expected error is printed as one ``error:`` line on
    stderr and gives its exit code (with ``debug`` it is raised, traceback and all)."""
    try:
        return command()
    except (UsageError, DataError, OSError) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)


def write_file(path: str | Path, write: Callable[[IO[Any]], Any], mode: str = "wb") -> None:
    """Run ``write(file)`` on ``path`` opened with ``mode``; a failed write is an OSError
    (same errno) whose message names ``path``."""
    try:
        with open(path, mode) as fh:
            write(fh)
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
