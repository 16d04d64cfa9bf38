"""The prepared corpus: audio converted once to 16 kHz mono int16 in memory-mapped shards.

Legend: V crops per item, N samples per crop.

Written by `python -m pretrain.prepare SOURCE OUT` (`pretrain/prepare.py`), read by training
when `data.path` is the store's folder. Layout of OUT:

    store.json          format, version, sample rate, the settings and the source file list's
                        hash (a different source or setting never writes into this store),
                        `complete` once every shard and the index are written, then the
                        clip count and index.csv's blake2b
    shards/NNNNN.pcm    int16 little-endian samples of several clips back to back
    shards/NNNNN.csv    the shard's source files: path, offset, samples, peak, problem, the
                        source's size, mtime and fast hash (`source_fingerprint`), the clip's
                        blake2b (written after the .pcm: its presence marks the shard complete)
    index.csv           the manifest of usable clips: path, shard, offset, samples, duration_s,
                        peak, blake2b (of the clip's int16 bytes)
    skipped.csv         the source files left out and why (unreadable, empty, corrupt, silent,
                        out of range)

Integrity: opening a store (`StoreCrops`) checks store.json's entries, index.csv against its
recorded hash, every row (samples >= 1, offsets inside the shard, a peak in [0, 32768 / 32767]) and that
each shard is exactly as long as its clips; `verify=True` (`data.verify_store`) also hashes
every clip, which catches a shard overwritten with noise of the same size. Each failure is a
`StoreError` naming the file. No entry of store.json switches a check off: a store that says
it is of version 1 (which recorded no hashes, so nothing in it could be verified) is refused
with a message to prepare it again, whatever else it holds.

Why raw int16 shards and not WebDataset tar, HDF5 or LMDB: a 0.95 s crop is one slice of a
`numpy.memmap` (no decoding, no per-clip file open, the page cache shares it between loader
workers and processes), the files are plain and inspectable (`numpy.fromfile`), the only
dependency is numpy, and a shard is written once and renamed into place, which makes
`prepare` resumable shard by shard. Sequential tar shards would suit an object store that
cannot seek; a cluster file system or local NVMe can. 16 kHz mono int16 is 32 kB per second
of audio: 2 M clips of 10 s are about 640 GB.

Crops are drawn exactly as `pretrain.data.AudioCrops` draws them (same generator, same
offsets on the same resampled length), so a run on the store sees the same spans as a run
on the raw files, up to int16 rounding (<= 0.5 / 32767).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .data import DatasetError, random_crop

__all__ = ["STORE_FORMAT", "STORE_VERSION", "INT16_SCALE", "StoreError", "is_store", "read_store_info",
           "shard_paths", "to_int16", "clip_hash", "source_fingerprint", "read_csv_rows", "StoreCrops"]

STORE_FORMAT = "hear-slicer-prepared-audio"
STORE_VERSION = 2  # 2: per-clip and index hashes, source fingerprints, max_peak
READABLE_VERSIONS = (2,)  # 1 recorded no hashes: refused, never read unverified
INT16_SCALE = 32767.0  # float sample = int16 / INT16_SCALE (written with round(x * INT16_SCALE), clipped)
MAX_PEAK = 32768 / INT16_SCALE  # the largest stored peak: a full-scale negative sample, -32768
INDEX_FIELDS = ("path", "shard", "offset", "samples", "duration_s", "peak", "blake2b")
FINGERPRINT_BYTES = 1 << 16  # the fast hash of a source file reads this much from each end


class StoreError(DatasetError):
    """A prepared store is missing, unfinished, damaged or of another format."""


def is_store(path: str | Path) -> bool:
    """True when `path` is a folder written by `pretrain.prepare` (it holds store.json)."""
    return bool(str(path)) and (Path(path) / "store.json").is_file()


def read_store_info(root: str | Path) -> dict:
    """store.json of a store, checked for format, version and the types of its entries."""
    root = Path(root)
    path = root / "store.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StoreError(f"{path} cannot be read: {e}") from e
    if not isinstance(info, dict):
        raise StoreError(f"{path} is damaged: it holds a {type(info).__name__}, not an object")
    if info.get("format") == STORE_FORMAT and info.get("version") == 1:
        raise StoreError(f"{root} is a version 1 store (store.json says so): version 1 recorded no hashes, so its "
                         f"index and samples cannot be verified and it is refused; prepare it again into a new "
                         f"folder (python -m pretrain.prepare {info.get('source', 'SOURCE')} NEW_FOLDER)")
    if info.get("format") != STORE_FORMAT or info.get("version") not in READABLE_VERSIONS:
        raise StoreError(f"{root} is not a {STORE_FORMAT} store of version {STORE_VERSION} "
                         f"(store.json says format {info.get('format')!r}, version {info.get('version')!r})")
    expected = {"sample_rate": int, "complete": bool, "source": str, "files_per_shard": int}
    if info.get("complete"):
        expected.update(clips=int, hours=(int, float), index_blake2b=str)
    for key, kind in expected.items():
        if not isinstance(info.get(key), kind) or (kind is int and isinstance(info.get(key), bool)):
            raise StoreError(f"{path} is damaged: {key!r} is {info.get(key)!r}; prepare the store again")
    return info


def shard_paths(root: Path, shard: int) -> tuple[Path, Path]:
    """(samples .pcm, part index .csv) of shard number `shard`."""
    return root / "shards" / f"{shard:05d}.pcm", root / "shards" / f"{shard:05d}.csv"


def to_int16(x: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16 (rounded, clipped)."""
    return np.clip(np.rint(x * INT16_SCALE), -32768, 32767).astype("<i2")


def clip_hash(samples: np.ndarray) -> str:
    """blake2b of a clip's int16 little-endian bytes."""
    return hashlib.blake2b(np.ascontiguousarray(samples, dtype="<i2").data, digest_size=16).hexdigest()


def source_fingerprint(path: str | Path) -> tuple[int, int, str]:
    """(size, mtime_ns, fast hash) of a source file; the hash reads its first and last 64 KiB and its size.
    (-1, -1, "") when the file cannot be read."""
    try:
        with open(os.fsencode(path), "rb") as f:
            st = os.fstat(f.fileno())
            h = hashlib.blake2b(str(st.st_size).encode(), digest_size=16)
            h.update(f.read(FINGERPRINT_BYTES))
            if st.st_size > FINGERPRINT_BYTES:
                f.seek(max(FINGERPRINT_BYTES, st.st_size - FINGERPRINT_BYTES))
                h.update(f.read(FINGERPRINT_BYTES))
    except OSError:
        return -1, -1, ""
    return st.st_size, st.st_mtime_ns, h.hexdigest()


def read_csv_rows(path: Path, data: bytes | None = None) -> list[dict]:
    """Rows of one of the store's CSV files (any file name: undecodable bytes kept as surrogates)."""
    try:
        text = (path.read_bytes() if data is None else data).decode("utf-8", "surrogateescape")
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except (OSError, csv.Error) as e:
        raise StoreError(f"{path} cannot be read: {e}") from e


class StoreCrops(Dataset):
    """`AudioCrops` on a prepared store: item (clip index, crop seed) -> dict(wave (V, N), skipped).

    Clips whose stored peak is <= silence_peak are skipped as silent (replaced by the next
    clip), as `AudioCrops` skips silent files. The store is checked when opened (module
    docstring); `verify=True` also hashes every clip.
    """

    def __init__(self, root: str | Path, sample_rate: int, crop_samples: int, silence_peak: float = 1e-4,
                 crops_per_item: int = 1, verify: bool = False):
        self.root = Path(root)
        info = read_store_info(self.root)
        if not info.get("complete"):
            raise StoreError(f"{self.root} is an unfinished store: rerun `python -m pretrain.prepare "
                             f"{info.get('source', 'SOURCE')} {self.root}` to complete it")
        if int(info["sample_rate"]) != sample_rate:
            raise StoreError(f"{self.root} holds {info['sample_rate']} Hz audio but frontend.sample_rate is "
                             f"{sample_rate}; prepare the store again with --sample-rate {sample_rate}")
        if crops_per_item < 1:
            raise ValueError(f"crops_per_item must be at least 1, got {crops_per_item}")
        self.files, self.shard, self.offset, self.samples, self.peak, hashes = _read_index(self.root, info)
        self.sample_rate, self.crop_samples = sample_rate, crop_samples
        self.silence_peak, self.crops_per_item = silence_peak, crops_per_item
        self._maps: dict[int, np.memmap] = {}  # opened lazily in each loader worker
        for shard in np.unique(self.shard):  # a damaged store fails here, not mid-run
            pcm = shard_paths(self.root, int(shard))[0]
            mine = self.shard == shard
            needed = 2 * int((self.offset + self.samples)[mine].max())
            size = pcm.stat().st_size if pcm.is_file() else -1
            if size < needed or size != 2 * int(self.samples[mine].sum()):
                raise StoreError(f"{pcm} is {'missing' if size < 0 else f'{size} bytes'} but index.csv says "
                                 f"{needed} bytes; the store is damaged: prepare it again into a new folder")
        if verify:
            for i, expected in enumerate(hashes):
                if clip_hash(self.clip(i)) != expected:
                    raise StoreError(f"{shard_paths(self.root, int(self.shard[i]))[0]}: the samples of {self.files[i]} "
                                     "do not match their recorded hash; the shard is damaged: prepare the store again")
            self._maps = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}  # memory maps are reopened in the worker, not pickled

    def __len__(self) -> int:
        return len(self.files)

    def clip(self, index: int) -> np.ndarray:
        """The whole stored clip, int16 (n,), a view of the memory map."""
        shard = int(self.shard[index])
        if shard not in self._maps:
            self._maps[shard] = np.memmap(shard_paths(self.root, shard)[0], dtype="<i2", mode="r")
        start = int(self.offset[index])
        return self._maps[shard][start:start + int(self.samples[index])]

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, crop_seed = item
        skipped = []
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            if self.peak[i] <= self.silence_peak:
                skipped.append((self.files[i], f"silent (peak <= {self.silence_peak:g})"))
                continue
            x = self.clip(i)
            rng = np.random.default_rng(crop_seed)
            wave = np.stack([random_crop(x, self.crop_samples, rng) for _ in range(self.crops_per_item)])
            return {"wave": torch.from_numpy(wave.astype(np.float32) / INT16_SCALE), "path": self.files[i],
                    "skipped": skipped}  # (V, N)
        raise DatasetError(f"every clip of {self.root} is silent at data.silence_peak={self.silence_peak:g}")


def _read_index(root: Path, info: dict) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """index.csv, checked against store.json: (paths, shard, offset, samples, peak, clip hashes), one per clip."""
    path = root / "index.csv"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StoreError(f"{path} cannot be read: {e}") from e
    if hashlib.blake2b(data, digest_size=16).hexdigest() != info["index_blake2b"]:
        raise StoreError(f"{path} was changed after the store was written (its hash differs from store.json's); "
                         "prepare the store again into a new folder")
    rows = read_csv_rows(path, data)
    if not rows:
        raise StoreError(f"{path} lists no clip; every source file was skipped (see {root / 'skipped.csv'})")
    if len(rows) != info["clips"]:
        raise StoreError(f"{path} lists {len(rows)} clips but store.json says {info['clips']}; the store is damaged")
    paths, numbers, hashes = [], [], []
    for line, r in enumerate(rows, start=2):
        try:
            shard, offset, samples, peak = int(r["shard"]), int(r["offset"]), int(r["samples"]), float(r["peak"])
        except (KeyError, TypeError, ValueError):
            raise StoreError(f"{path} line {line} is damaged: {dict(r)!r:.200}") from None
        if shard < 0 or offset < 0 or samples < 1 or not (math.isfinite(peak) and 0 <= peak <= MAX_PEAK):
            raise StoreError(f"{path} line {line} is damaged (shard {shard}, offset {offset}, samples {samples}, "
                             f"peak {peak}): every clip has samples >= 1 and a peak in [0, 32768 / 32767]")
        paths.append(r["path"])
        numbers.append((shard, offset, samples, peak))
        hashes.append(r.get("blake2b") or "")
    shard, offset, samples, peak = (np.array(c) for c in zip(*numbers))
    return (paths, shard.astype(np.int64), offset.astype(np.int64), samples.astype(np.int64),
            peak.astype(np.float64), hashes)
