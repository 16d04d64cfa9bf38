"""What a tool wrote into a folder, so that it deletes or replaces only its own files.

The trainer (a run folder), the demo-data builder (its root), `pretrain.export` and
`pretrain.debian_corpus` write into folders a user may also use. Each keeps, in that folder,
a record `.hear-slicer-written.jsonl`: one JSON line per version of a file it wrote, its name
relative to the folder and the blake2b of its content, appended *before* the file appears
(so a kill between the two leaves a recorded version on disk, never an unrecorded one):

    {"path": "checkpoints/step_00000003.pt", "blake2b": "3f1c..."}
    {"path": "checkpoints/.step_00000003.pt.5e0a9c1b2d3f.tmp", "temporary": true}

A file is *proven* ours when the record names it and its content hashes to a version the
record holds; a temporary file (a unique random name, created exclusively) when the record
names it, since a kill can leave it half written. Before deleting or replacing anything a
tool checks every file involved (`check`); any other file in the way is foreign, and
`ForeignFileError` names it before anything is touched. Nothing is ever recognised by its
name alone: another tool's `step_1000.pt`, a user's `log.csv` or copy of a checkpoint is
foreign, whatever it is called.

It lives in `hear_slicer` because both `pretrain` and `eval_suites` use it and import
`hear_slicer` (as they do `hear_slicer.progress`).
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Iterable

__all__ = ["RECORD_NAME", "ForeignFileError", "WrittenFiles", "file_hash", "files_in", "temporary_path"]

RECORD_NAME = ".hear-slicer-written.jsonl"
_CHUNK = 1 << 20


class ForeignFileError(ValueError):
    """A file in the way of a write or a deletion was not written by this tool (or was changed since).

    Commands report it as a usage error (exit 2): the user chooses another output or moves the file."""


def temporary_path(path: Path) -> Path:
    """A temporary name next to `path` for writing it, unique to this writer (hidden, ``.tmp``): a
    rename then puts the file in place; never the name of a file someone else has there."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def file_hash(path: str | Path) -> str:
    """blake2b (20 bytes, hex) of a file's content."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def files_in(path: str | Path) -> list[Path]:
    """Every file under the folder `path`, links included (never followed); `[path]` when it is a file or a
    link, `[]` when it is missing: what deleting it, or writing into it, would put at stake."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        return sorted(p for p in path.rglob("*") if not p.is_dir() or p.is_symlink())
    return [path] if path.exists() or path.is_symlink() else []


class WrittenFiles:
    """The record of the files written into `folder` (module docstring).

    `write` and `append` write a file and record it; `proves`, `foreign` and `check` say
    whether files are ours; `remove` deletes files, `remove_folders` folders, after checking all
    of them. `what` names the tool in error messages ("the run", "the demo-data builder").
    """

    def __init__(self, folder: str | Path, what: str = "this tool"):
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / RECORD_NAME
        self._appending: dict[str, tuple[int, "hashlib._Hash"]] = {}  # name -> (size, hash of that content)

    # ----------------------------------------------------------------- reading the record
    def _read(self) -> tuple[dict[str, set[str]], set[str]]:
        """(name -> recorded content hashes, recorded temporary names); a torn last line is ignored."""
        versions: dict[str, set[str]] = {}
        temporary: set[str] = set()
        try:
            lines = self.path.read_bytes().decode("utf-8", "surrogateescape").splitlines()
        except FileNotFoundError:
            return versions, temporary
        for line in lines:
            try:
                entry = json.loads(line)
                name = entry["path"]
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(name, str):
                continue
            if entry.get("temporary") is True:
                temporary.add(name)
            elif isinstance(entry.get("blake2b"), str):
                versions.setdefault(name, set()).add(entry["blake2b"])
        return versions, temporary

    def name(self, path: str | Path) -> str:
        """`path` (as the caller has it, e.g. `folder / "log.csv"`) relative to the folder; ValueError outside it."""
        rel = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(self.folder))).as_posix()
        if rel in ("", ".") or rel == ".." or rel.startswith("../"):
            raise ValueError(f"{path} is not inside {self.folder}")
        return rel

    def _proven(self, name: str, record: tuple[dict[str, set[str]], set[str]]) -> bool:
        versions, temporary = record
        full = self.folder / name
        if not full.is_file() or full.is_symlink():
            return False
        if name in temporary:
            return True
        try:
            return name in versions and file_hash(full) in versions[name]
        except OSError:
            return False

    def proves(self, path: str | Path) -> bool:
        """True when `path` is a file the record shows was written here, its content unchanged."""
        return self._proven(self.name(path), self._read())

    def foreign(self, paths: Iterable[str | Path]) -> list[str]:
        """The names (relative to the folder) of those of `paths` that are not proven ours, sorted."""
        record = self._read()
        return sorted(n for n in map(self.name, paths) if not self._proven(n, record))

    def check(self, paths: Iterable[str | Path], doing: str) -> None:
        """ForeignFileError naming the first of `paths` not proven ours; `doing` says what was refused."""
        bad = self.foreign(paths)
        if bad:
            more = f" (and {len(bad) - 1} more: {', '.join(bad[1:4])}{', ...' if len(bad) > 4 else ''})" \
                if len(bad) > 1 else ""
            raise ForeignFileError(
                f"refusing to {doing}: {self.folder / bad[0]}{more} was not written by {self.what} (not in "
                f"{self.path.name} with this content); nothing was touched. Move it away, or choose another "
                "folder")

    def temporaries(self) -> list[str]:
        """Names of the recorded temporary files that are in the folder now (left by a kill mid-write), sorted."""
        _, temporary = record = self._read()
        return sorted(n for n in temporary if self._proven(n, record))

    def adopt(self, paths: Iterable[str | Path]) -> list[str]:
        """Record the present content of `paths` as written by this tool; their names. Only for files the user
        has just said are this tool's (e.g. a run folder written before the record existed, resumed in place)."""
        names = []
        for p in paths:
            name = self.name(p)
            self._log({"path": name, "blake2b": file_hash(self.folder / name)})
            names.append(name)
        return names

    def recorded(self) -> list[str]:
        """Names of the files the record lists that are in the folder now and proven ours, sorted."""
        versions, temporary = record = self._read()
        return sorted(n for n in set(versions) | temporary if self._proven(n, record))

    # ----------------------------------------------------------------- writing
    def _log(self, entry: dict) -> None:
        """Append one line to the record (one `write` call with O_APPEND: whole lines, even from several
        processes)."""
        line = (json.dumps(entry, ensure_ascii=True) + "\n").encode()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as e:
            raise OSError(e.errno, f"cannot write {self.path}: {e.strerror}") from e

    def _check_replaceable(self, path: Path) -> None:
        if path.is_dir() or path.is_symlink() or (path.exists() and not self.proves(path)):
            self.check([path], f"replace {path}")

    def write(self, path: str | Path, data: bytes) -> Path:
        """Write `data` to `path` in the folder atomically (a recorded temporary file, then a rename).

        An existing `path` is replaced only when it is proven ours (else ForeignFileError,
        nothing touched). A failed write raises an OSError naming `path`; the old file stays.
        """
        name = self.name(path)
        path = self.folder / name
        self._check_replaceable(path)
        tmp = temporary_path(path)
        tmp_name = self.name(tmp)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._log({"path": tmp_name, "temporary": True})
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            self._log({"path": name, "blake2b": hashlib.blake2b(data, digest_size=20).hexdigest()})
            os.replace(tmp, path)
        except OSError as e:
            if tmp.is_file():
                tmp.unlink()
            raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
        self._appending.pop(name, None)
        return path

    def append(self, path: str | Path, data: bytes) -> Path:
        """Append `data` to `path` in the folder (created if missing), recording the new content's hash first.

        An existing `path` must be proven ours (else ForeignFileError). The hash is carried
        forward from the last append, so a long log is not read again at every line.
        """
        name = self.name(path)
        path = self.folder / name
        size = path.stat().st_size if path.is_file() else None
        known = self._appending.get(name)
        if known is not None and known[0] == size:
            h = known[1].copy()
        else:
            if size is not None or path.exists():
                self._check_replaceable(path)
            h = hashlib.blake2b(digest_size=20)
            if size is not None:
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(_CHUNK), b""):
                        h.update(block)
        h.update(data)
        self._log({"path": name, "blake2b": h.hexdigest()})
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as f:
                f.write(data)
        except OSError as e:
            raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from e
        self._appending[name] = ((size or 0) + len(data), h)
        return path

    def remove(self, paths: Iterable[str | Path], doing: str) -> list[str]:
        """Delete `paths` (files in the folder) after checking that every one is ours; their names.

        One foreign file among them: ForeignFileError and nothing is deleted."""
        paths = [self.folder / self.name(p) for p in paths]
        self.check(paths, doing)
        removed = []
        for p in paths:
            p.unlink(missing_ok=True)
            self._appending.pop(self.name(p), None)
            removed.append(self.name(p))
        return removed

    def remove_folders(self, folders: Iterable[str | Path], doing: str) -> list[str]:
        """Delete `folders` (inside the record's folder) and everything in them, after checking that every
        file in all of them is ours (`files_in`: a link in place of a folder is never proven); the names of
        the files deleted. One foreign file: ForeignFileError and nothing is deleted."""
        folders = [self.folder / self.name(f) for f in folders]
        removed = self.remove([p for f in folders for p in files_in(f)], doing)
        for f in folders:
            if f.is_dir():
                for sub in sorted((p for p in f.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [f]:
                    sub.rmdir()  # empty now, deepest first
        return removed

    def compact(self) -> None:
        """Rewrite the record with only the files that are in the folder now, each with its present content's
        hash (dropping older versions and deleted files). Call it where no other process writes."""
        versions, temporary = record = self._read()
        if not self.path.is_file():
            return
        lines = []
        for name in sorted(set(versions) | temporary):
            if not self._proven(name, record):
                continue
            lines.append({"path": name, "temporary": True} if name in temporary
                         else {"path": name, "blake2b": file_hash(self.folder / name)})
        text = "".join(json.dumps(e, ensure_ascii=True) + "\n" for e in lines).encode()
        tmp = temporary_path(self.path)
        try:
            with open(tmp, "xb") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise OSError(e.errno, f"cannot write {self.path}: {e.strerror}") from e
