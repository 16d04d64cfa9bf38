"""The prepared corpus: audio converted once to 16 kHz mono int16 in memory-mapped shards.

Legend: V crops per item, N samples per crop.

Written by `python -m pretrain.prepare SOURCE OUT` (`pretrain/prepare.py`), read by training
when `data.path` is the store's folder. Layout of OUT:

    store.json          format, version, sample rate, the settings and the source file list's
                        hash (a different source or setting never writes into this store),
                        `complete` once every shard and the index are written
    shards/NNNNN.pcm    int16 little-endian samples of several clips back to back
    shards/NNNNN.csv    the shard's source files: path, offset, samples, peak, problem
                        (written after the .pcm: its presence marks the shard complete)
    index.csv           the manifest of usable clips: path, shard, offset, samples, duration_s, peak
    skipped.csv         the source files left out and why (unreadable, empty, corrupt, silent)

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
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .data import DatasetError, random_crop

__all__ = ["STORE_FORMAT", "STORE_VERSION", "INT16_SCALE", "StoreError", "is_store", "read_store_info",
           "shard_paths", "to_int16", "StoreCrops"]

STORE_FORMAT = "hear-slicer-prepared-audio"
STORE_VERSION = 1
INT16_SCALE = 32767.0  # float sample = int16 / INT16_SCALE (written with round(x * INT16_SCALE), clipped)
INDEX_FIELDS = ("path", "shard", "offset", "samples", "duration_s", "peak")


class StoreError(DatasetError):
    """A prepared store is missing, unfinished, damaged or of another format."""


def is_store(path: str | Path) -> bool:
    """True when `path` is a folder written by `pretrain.prepare` (it holds store.json)."""
    return bool(str(path)) and (Path(path) / "store.json").is_file()


def read_store_info(root: str | Path) -> dict:
    """store.json of a store, checked for format and version."""
    root = Path(root)
    try:
        info = json.loads((root / "store.json").read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{root / 'store.json'} cannot be read: {e}") from e
    if info.get("format") != STORE_FORMAT or info.get("version") != STORE_VERSION:
        raise StoreError(f"{root} is not a {STORE_FORMAT} store of version {STORE_VERSION} "
                         f"(store.json says format {info.get('format')!r}, version {info.get('version')!r})")
    return info


def shard_paths(root: Path, shard: int) -> tuple[Path, Path]:
    """(samples .pcm, part index .csv) of shard number `shard`."""
    return root / "shards" / f"{shard:05d}.pcm", root / "shards" / f"{shard:05d}.csv"


def to_int16(x: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16 (rounded, clipped)."""
    return np.clip(np.rint(x * INT16_SCALE), -32768, 32767).astype("<i2")


class StoreCrops(Dataset):
    """`AudioCrops` on a prepared store: item (clip index, crop seed) -> dict(wave (V, N), skipped).

    Clips whose stored peak is <= silence_peak are skipped as silent (replaced by the next
    clip), as `AudioCrops` skips silent files.
    """

    def __init__(self, root: str | Path, sample_rate: int, crop_samples: int, silence_peak: float = 1e-4,
                 crops_per_item: int = 1):
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
        with open(self.root / "index.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise StoreError(f"{self.root / 'index.csv'} lists no clip; every source file was skipped "
                             f"(see {self.root / 'skipped.csv'})")
        self.files = [r["path"] for r in rows]
        self.shard = np.array([int(r["shard"]) for r in rows], dtype=np.int64)
        self.offset = np.array([int(r["offset"]) for r in rows], dtype=np.int64)
        self.samples = np.array([int(r["samples"]) for r in rows], dtype=np.int64)
        self.peak = np.array([float(r["peak"]) for r in rows], dtype=np.float64)
        for shard in np.unique(self.shard):  # a damaged store fails here, not mid-run
            pcm = shard_paths(self.root, int(shard))[0]
            needed = 2 * int((self.offset + self.samples)[self.shard == shard].max())
            if not pcm.is_file() or pcm.stat().st_size < needed:
                raise StoreError(f"{pcm} is missing or shorter than index.csv says ({needed} bytes); "
                                 "the store is damaged: prepare it again into a new folder")
        self.sample_rate, self.crop_samples = sample_rate, crop_samples
        self.silence_peak, self.crops_per_item = silence_peak, crops_per_item
        self._maps: dict[int, np.memmap] = {}  # opened lazily in each loader worker

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
