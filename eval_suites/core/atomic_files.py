"""Whole-file writes that readers and concurrent writers never see half done.

Several jobs may write one results folder at once (``--shard``): each file is written
under a temporary name unique to the writer, in the file's own folder, then renamed over
the target (``os.replace``, atomic on POSIX file systems). A reader sees the old file or
the new one; two writers of the same file leave one complete version, never a mix.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import IO, Callable

__all__ = ["write_atomically"]


def write_atomically(path: str | Path, write: Callable[[IO], None], mode: str = "w") -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    ``mode``: ``"w"`` (text, UTF-8) or ``"wb"``. A failed write is an OSError (same errno)
    whose message names ``path``, as :func:`eval_suites.errors.write_file`'s; the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, mode.replace("w", "x"), encoding=None if "b" in mode else "utf-8") as fh:
            write(fh)
        os.replace(tmp, path)
    except OSError as e:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
