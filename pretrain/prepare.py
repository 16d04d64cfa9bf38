"""Convert a corpus once into a prepared store: `python -m pretrain.prepare SOURCE OUT`.

SOURCE is what `data.path` accepts (a folder, searched recursively, or a .txt/.csv manifest);
OUT becomes a store (`pretrain/store.py` describes the layout and why) that `data.path=OUT`
trains from. Every file is decoded, mixed to mono and resampled (`pretrain.data.decode_audio`,
the same code the raw loader uses) and written as int16.

- Parallel: `--workers` processes, one shard (`--files-per-shard` consecutive source files)
  per task; a progress bar counts files.
- Resumable and idempotent: each shard is written to temporary files and renamed into place,
  its part index last, so a killed run leaves only complete shards; running the same command
  again does only the missing shards and then writes the index. Shard contents depend only on
  the source list and the settings, so a killed-and-resumed store is byte-identical to one
  written in one go, and rerunning a complete store does nothing.
- Never overwrites another store: OUT must be new, empty, or a store of the same source list
  and settings (store.json records them).
- A source file changed between a killed run and its rerun (size, mtime or the fast hash of
  its ends, `pretrain.store.source_fingerprint`, recorded per file) has its shard prepared
  again, said on stderr; shards and the index carry hashes that training checks
  (`pretrain/store.py`); `--verify` hashes every clip of the finished store.
- Bad files (unreadable, empty, non-finite, silent at --silence-peak, out of range: peak |x|
  above --max-peak, as `data.max_peak`) are skipped and listed in OUT/skipped.csv and at the
  end; OUT/index.csv lists each clip with its duration. File names need not be UTF-8.
- Errors are one line (`pretrain.errors`): exit 2 for wrong arguments or an OUT that is
  another store, 3 for unusable data or an OUT that cannot be written (full, read-only).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from hear_slicer.written import temporary_path

from .data import decode_audio, find_audio_files, progress_bar
from .errors import UsageError, run_command
from .store import (INDEX_FIELDS, STORE_FORMAT, STORE_VERSION, StoreCrops, StoreError, clip_hash, is_store,
                    read_csv_rows, read_store_info, shard_paths, source_fingerprint, to_int16)

__all__ = ["PrepareError", "prepare", "main"]

PART_FIELDS = ("path", "offset", "samples", "peak", "problem", "source_size", "source_mtime_ns", "source_hash",
               "blake2b")


class PrepareError(UsageError):
    """An argument of `python -m pretrain.prepare` is wrong (a flag's value, an OUT that is another store)."""


def _written(path: Path, write) -> None:
    """Run `write(tmp)` on a temporary file next to `path`, then rename it into place; an OSError names `path`."""
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from e


def _write_atomic(path: Path, text: str) -> None:
    _written(path, lambda f: f.write(text.encode("utf-8", "surrogateescape")))


def _csv_text(fields: tuple[str, ...], rows: list) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    w.writerows(rows)
    return buf.getvalue()


def _prepare_shard(root: Path, shard: int, files: list[str], sample_rate: int, silence_peak: float,
                   max_peak: float) -> tuple[int, int]:
    """Decode `files` into shard number `shard`; returns (shard, files skipped). Runs in a worker."""
    pcm, part = shard_paths(root, shard)
    rows = []

    def write(f) -> None:
        offset = 0
        for path in files:
            fingerprint = source_fingerprint(path)  # before decoding: a later change is seen on a rerun
            try:
                x = decode_audio(path, sample_rate, silence_peak, max_peak)
            except Exception as e:  # AudioFileError, and anything else a broken file can raise: skip it
                rows.append((path, 0, 0, 0.0, str(e) or type(e).__name__, *fingerprint, ""))
                continue
            q = to_int16(x)
            f.write(q.tobytes())
            peak = float(np.abs(q.astype(np.int32)).max()) / 32767.0
            rows.append((path, offset, len(q), f"{peak:.6g}", "", *fingerprint, clip_hash(q)))
            offset += len(q)

    _written(pcm, write)
    _write_atomic(part, _csv_text(PART_FIELDS, rows))  # last: marks the shard complete
    return shard, sum(1 for r in rows if r[4])


def _settings(files: list[Path], source: str, sample_rate: int, silence_peak: float, max_peak: float,
              files_per_shard: int) -> dict:
    listing = hashlib.sha256(b"\n".join(os.fsencode(p) for p in files)).hexdigest()  # any file name
    return {"format": STORE_FORMAT, "version": STORE_VERSION, "dtype": "int16", "sample_rate": sample_rate,
            "silence_peak": silence_peak, "max_peak": max_peak, "files_per_shard": files_per_shard, "source": source,
            "source_files": len(files), "source_files_sha256": listing}


def _claim(out: Path, settings: dict) -> None:
    """Make OUT this store's folder, or check that it already is; never touch another store."""
    if out.exists() and not out.is_dir():
        raise PrepareError(f"OUT {out} is a file; give a folder for the store")
    if is_store(out):
        info = read_store_info(out)
        differs = {k: (info.get(k), v) for k, v in settings.items() if info.get(k) != v}
        if differs:
            raise PrepareError(f"{out} is a store of another source or settings ("
                               + ", ".join(f"{k}: store {a!r}, now {b!r}" for k, (a, b) in differs.items())
                               + "); it is left untouched: choose a new OUT folder")
        return
    if out.is_dir() and any(out.iterdir()):
        raise PrepareError(f"OUT {out} exists and holds files that are not a prepared store; "
                           "choose a new or empty folder")
    try:
        (out / "shards").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"cannot create {out / 'shards'}: {e.strerror}") from e
    _write_atomic(out / "store.json", json.dumps({**settings, "complete": False}, indent=1))


def _changed_sources(part: Path) -> list[str]:
    """Source files of a written shard whose size, mtime or fast hash differ from when it was written."""
    changed = []
    for r in read_csv_rows(part):
        recorded = (r.get("source_size"), r.get("source_mtime_ns"), r.get("source_hash"))
        now = tuple(str(v) for v in source_fingerprint(r.get("path") or ""))
        if recorded != now:  # also a damaged row: the shard is prepared again
            changed.append(r.get("path") or "?")
    return changed


def prepare(source: str | Path, out: str | Path, workers: int = 1, files_per_shard: int = 1000,
            sample_rate: int = 16000, silence_peak: float = 1e-4, extensions: tuple[str, ...] = ("wav", "flac", "ogg"),
            progress: bool = True, max_peak: float = 1000.0, verify: bool = False) -> dict:
    """Write (or complete) the store OUT from SOURCE; returns its store.json contents.

    `max_peak`: files whose peak |x| is above it are skipped as out of range (as `data.max_peak`).
    `verify`: then hash every clip of the store (`StoreCrops(verify=True)`).
    """
    _check("workers", workers, workers >= 1, "at least 1")
    _check("files_per_shard", files_per_shard, files_per_shard >= 1, "at least 1")
    _check("sample_rate", sample_rate, 1000 <= sample_rate <= 384000, "between 1000 and 384000 Hz")
    _check("silence_peak", silence_peak, 0.0 <= silence_peak < 1.0, "in [0, 1)")
    _check("max_peak", max_peak, max_peak > 0 and math.isfinite(max_peak), "a finite number > 0")
    if not extensions or not all(isinstance(e, str) and e.strip(".").isalnum() for e in extensions):
        raise PrepareError(f"--extensions must be file extensions such as wav flac, got {list(extensions)!r}")
    out = Path(out)
    if is_store(source):
        raise PrepareError(f"SOURCE {source} is already a prepared store; train from it with data.path={source}")
    source = Path(source).resolve() if str(source) else source  # the store records absolute paths
    unreadable: list[tuple[str, str]] = []
    files = find_audio_files(source, extensions, unreadable)
    for folder, reason in unreadable:
        print(f"skipped {folder}: {reason}".encode("utf-8", "backslashreplace").decode(), file=sys.stderr)
    settings = _settings(files, str(source), sample_rate, silence_peak, max_peak, files_per_shard)
    _claim(out, settings)
    info = read_store_info(out)
    if not info.get("complete"):
        _write_shards(out, files, info, workers, progress)
        info = _finish(out, math.ceil(len(files) / files_per_shard), info, unreadable)
    else:
        print(f"{out}: complete store of {info['clips']} clips ({info['hours']:.2f} h), nothing to do", file=sys.stderr)
    if verify:
        StoreCrops(out, info["sample_rate"], 1, verify=True)
        print(f"{out}: every clip matches its recorded hash", file=sys.stderr)
    return info


def _write_shards(out: Path, files: list[Path], info: dict, workers: int, progress: bool) -> None:
    """Write the shards not yet written (or whose source files changed since), `workers` at a time."""
    per_shard, sample_rate, silence_peak, max_peak = (info["files_per_shard"], info["sample_rate"],
                                                      info["silence_peak"], info["max_peak"])
    n_shards = math.ceil(len(files) / per_shard)
    for s in range(n_shards):
        part = shard_paths(out, s)[1]
        changed = _changed_sources(part) if part.is_file() else []
        if changed:
            print(f"shard {s}: {len(changed)} source file(s) changed since it was written ("
                  + ", ".join(changed[:3]).encode("utf-8", "backslashreplace").decode()
                  + (", ..." if len(changed) > 3 else "") + "); preparing it again", file=sys.stderr)
            part.unlink()
    parts = {s: [str(p) for p in files[s * per_shard:(s + 1) * per_shard]] for s in range(n_shards)
             if not shard_paths(out, s)[1].is_file()}  # shards not yet written
    for stale in (out / "shards").glob(".*.tmp"):  # left by a killed run
        stale.unlink()
    with progress_bar(len(files), f"prepare {out.name}", progress) as bar:
        bar.update(len(files) - sum(map(len, parts.values())))
        if workers == 1:
            for s, part in parts.items():
                _prepare_shard(out, s, part, sample_rate, silence_peak, max_peak)
                bar.update(len(part))
        else:
            with cf.ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(_prepare_shard, out, s, part, sample_rate, silence_peak, max_peak): len(part)
                           for s, part in parts.items()}
                for fut in cf.as_completed(futures):
                    fut.result()
                    bar.update(futures[fut])


def _finish(out: Path, n_shards: int, info: dict, unreadable: list[tuple[str, str]]) -> dict:
    """Merge the shards' part indexes into index.csv and skipped.csv, then mark the store complete."""
    clips, skipped, samples = [], list(unreadable), 0
    for s in range(n_shards):
        part = shard_paths(out, s)[1]
        for line, r in enumerate(read_csv_rows(part), start=2):
            try:
                problem, n = r["problem"], int(r["samples"])
                row = (r["path"], s, int(r["offset"]), n, f"{n / info['sample_rate']:.6f}", r["peak"], r["blake2b"])
            except (KeyError, TypeError, ValueError):
                raise StoreError(f"{part} line {line} is damaged; delete {part} and rerun to prepare the shard again"
                                 ) from None
            if problem:
                skipped.append((r["path"], problem))
            else:
                samples += n
                clips.append(row)
    index = _csv_text(INDEX_FIELDS, clips)
    _write_atomic(out / "index.csv", index)
    _write_atomic(out / "skipped.csv", _csv_text(("path", "reason"), skipped))
    info = {**info, "complete": True, "clips": len(clips), "skipped": len(skipped),
            "hours": samples / info["sample_rate"] / 3600,
            "index_blake2b": hashlib.blake2b(index.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()}
    _write_atomic(out / "store.json", json.dumps(info, indent=1))
    print(f"{out}: {len(clips)} clips, {info['hours']:.2f} h at {info['sample_rate']} Hz; "
          f"{len(skipped)} file(s) skipped" + (f" (listed in {out / 'skipped.csv'}):" if skipped else ""),
          file=sys.stderr)
    for path, reason in skipped[:20]:
        print(f"  {path}: {reason}".encode("utf-8", "backslashreplace").decode(), file=sys.stderr)
    if len(skipped) > 20:
        print(f"  ... and {len(skipped) - 20} more", file=sys.stderr)
    return info


def _check(name: str, value, ok: bool, allowed: str) -> None:
    if not ok:
        raise PrepareError(f"--{name.replace('_', '-')} must be {allowed}, got {value!r}")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pretrain.prepare",
        description="Convert audio once to 16 kHz mono int16 memory-mapped shards that training reads crops from "
                    "without decoding (data.path=OUT). Resumable: rerun the same command after an interruption.",
        epilog="example: python -m pretrain.prepare /data/audioset /data/audioset_store --workers 16")
    p.add_argument("source", help="folder of audio (searched recursively) or a .txt/.csv manifest, as data.path")
    p.add_argument("out", help="store folder to create (new or empty), or an unfinished store to complete")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1) - 1),
                   help="decoding processes (default: CPU count - 1)")
    p.add_argument("--files-per-shard", type=int, default=1000,
                   help="source files per shard and per task (default 1000: ~320 MB shards of 10 s clips)")
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz; must equal frontend.sample_rate (16000)")
    p.add_argument("--silence-peak", type=float, default=1e-4,
                   help="files whose peak |x| is at most this are skipped as silent (as data.silence_peak)")
    p.add_argument("--max-peak", type=float, default=1000.0,
                   help="files whose peak |x| is above this are skipped as out of range (as data.max_peak; "
                        "default 1000). Float audio is expected within [-1, 1]; peaks in (1, max-peak] are clipped")
    p.add_argument("--extensions", nargs="+", default=["wav", "flac", "ogg"],
                   help="file extensions searched in a SOURCE folder (as data.extensions)")
    p.add_argument("--verify", action="store_true",
                   help="after preparing (or on a complete store), hash every clip and compare with the store's "
                        "records (training checks sizes and the index only, unless data.verify_store=true)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit 0, or one line `error: ...` and 2 (arguments) or 3 (data, IO): `pretrain.errors`."""
    args = _parse_args(argv)
    return run_command(lambda: prepare(
        args.source, args.out, workers=args.workers, files_per_shard=args.files_per_shard,
        sample_rate=args.sample_rate, silence_peak=args.silence_peak, extensions=tuple(args.extensions),
        progress=not args.no_progress, max_peak=args.max_peak, verify=args.verify), args.debug)


if __name__ == "__main__":
    sys.exit(main())
