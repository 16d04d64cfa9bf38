"""Audio data for pretraining: find files, decode, mix to mono, resample, crop; sharded loading.

Legend: B batch, V crops per item (1, or 2 for objectives whose two views are separate
crops, e.g. COLA), N samples per crop (crop_seconds x 16 kHz).

- Sources: a folder (searched recursively for the configured extensions) or a manifest,
  `.txt` (one path per line) or `.csv` (a `path` column, else the first column); relative
  paths are relative to the manifest's folder.
- Decoding: soundfile (wav, flac, ogg, ...), any rate and channel count; channels are
  averaged, then resampled to the target rate with soxr.
- Bad files (unreadable, corrupt, empty, non-finite, silent, out of range: peak |x| above
  `data.max_peak`) never stop a run: the loader replaces them by the next good file and
  reports them in each batch's `skipped`, so the trainer can count and log them. A header
  scan before training catches most of them early. Names that are not valid UTF-8 are read
  like any other (paths are passed to libsndfile as bytes, `os.fsencode`); manifests are
  read as UTF-8 with `surrogateescape`, so any byte string names a file.
- Order: `ShardedInfiniteSampler` walks a fresh permutation per epoch (seeded), pads it to
  a multiple of the process count and gives each process every P-th entry (as
  DistributedSampler). Each item carries its own crop seed, so what a step sees depends only
  on (seed, position), not on worker timing: resuming at a position replays the same data.
- Crops: an item is V independent random crops of one file, drawn in order from one
  generator seeded by the item's crop seed (the first crop is the same whatever V is).
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["DatasetError", "AudioFileError", "find_audio_files", "scan_files", "decode_audio",
           "AudioCrops", "ShardedInfiniteSampler", "Batch", "collate", "make_loader"]


class DatasetError(ValueError):
    """The dataset as a whole is unusable (missing, empty, no readable file)."""


class AudioFileError(ValueError):
    """One audio file cannot be used; the message says why."""


def find_audio_files(path: str | Path, extensions: tuple[str, ...] = ("wav", "flac", "ogg")) -> list[Path]:
    """Sorted audio files under a folder (recursive) or listed in a .txt/.csv manifest."""
    if not str(path):
        raise DatasetError("no dataset given: set data.path to a folder of audio files or a .txt/.csv manifest")
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset path does not exist: {path}")
    if path.is_dir():
        exts = {"." + e.lower().lstrip(".") for e in extensions}
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        if not files:
            raise DatasetError(f"no audio files ({', '.join(sorted(exts))}) found under {path}")
        return files
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = list(csv.DictReader(f))
        column = "path" if rows and "path" in rows[0] else (next(iter(rows[0])) if rows else None)
        entries = [r[column] for r in rows if column and r[column]]
    elif path.suffix.lower() == ".txt":
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        entries = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    else:
        raise DatasetError(f"{path} is neither a folder nor a .txt/.csv manifest")
    if not entries:
        raise DatasetError(f"manifest {path} lists no files")
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def _sf_name(path: str | Path) -> bytes:
    """The path as bytes for libsndfile: any name the file system holds, UTF-8 or not."""
    return os.fsencode(path)


def scan_files(files: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Check headers: (files that open and have samples, [(path, reason)] for the others)."""
    good, bad = [], []
    for p in files:
        try:
            info = sf.info(_sf_name(p))
        except Exception as e:  # soundfile raises several types for bad files
            bad.append((str(p), f"unreadable: {str(e).splitlines()[0] if str(e) else type(e).__name__}"))
            continue
        if info.frames <= 0:
            bad.append((str(p), "empty (no samples)"))
        else:
            good.append(p)
    return good, bad


def decode_audio(path: str | Path, sample_rate: int, silence_peak: float = 0.0,
                 max_peak: float = math.inf) -> np.ndarray:
    """Decode, mix to mono and resample: -> float32 (n,). Raises AudioFileError for bad files."""
    try:
        x, sr = sf.read(_sf_name(path), dtype="float32", always_2d=True)  # (n, channels)
    except Exception as e:
        raise AudioFileError(f"unreadable: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if x.shape[0] == 0:
        raise AudioFileError("empty (no samples)")
    x = x.mean(axis=1)
    if not np.isfinite(x).all():
        raise AudioFileError("corrupt (non-finite samples)")
    peak = float(np.abs(x).max())
    if peak > max_peak:
        raise AudioFileError(f"out of range (peak |x| = {peak:.3g} > data.max_peak = {max_peak:g}; "
                             "float audio is expected within [-1, 1])")
    if peak <= silence_peak:
        raise AudioFileError(f"silent (peak <= {silence_peak:g})")
    if sr != sample_rate:
        x = soxr.resample(x, sr, sample_rate).astype(np.float32)
    return x


class AudioCrops(Dataset):
    """Item (file index, crop seed) -> dict(wave (V, N) float32 tensor, path of the file used,
    skipped [(path, reason)]).

    `crops_per_item` (V) independent random crops of the same file per item.
    """

    def __init__(self, files: list[Path], sample_rate: int, crop_samples: int, silence_peak: float = 1e-4,
                 crops_per_item: int = 1, max_peak: float = math.inf):
        if not files:
            raise DatasetError("the dataset holds no usable audio file")
        if crops_per_item < 1:
            raise ValueError(f"crops_per_item must be at least 1, got {crops_per_item}")
        self.files = list(files)
        self.sample_rate = sample_rate
        self.crop_samples = crop_samples
        self.silence_peak = silence_peak
        self.crops_per_item = crops_per_item
        self.max_peak = max_peak

    def __len__(self) -> int:
        return len(self.files)

    def crop(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random crop of crop_samples samples, zero-padded (at a random offset) when shorter."""
        n = self.crop_samples
        if len(x) >= n:
            start = int(rng.integers(0, len(x) - n + 1))
            return x[start:start + n]
        out = np.zeros(n, dtype=np.float32)
        start = int(rng.integers(0, n - len(x) + 1))
        out[start:start + len(x)] = x
        return out

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, crop_seed = item
        skipped = []
        for attempt in range(len(self.files)):
            path = self.files[(index + attempt) % len(self.files)]
            try:
                x = decode_audio(path, self.sample_rate, self.silence_peak, self.max_peak)
            except AudioFileError as e:
                skipped.append((str(path), str(e)))
                continue
            rng = np.random.default_rng(crop_seed)
            wave = np.stack([self.crop(x, rng) for _ in range(self.crops_per_item)])  # (V, N)
            return {"wave": torch.from_numpy(wave), "path": str(path), "skipped": skipped}
        raise DatasetError(f"none of the {len(self.files)} files could be decoded; first problems: {skipped[:3]}")


class ShardedInfiniteSampler(Sampler):
    """Endless (file index, crop seed) items for one process, starting at `start` (items consumed)."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1, seed: int = 0, start: int = 0):
        self.n, self.rank, self.world_size, self.seed, self.start = n, rank, world_size, seed, start
        self.per_rank = math.ceil(n / world_size)  # items per process per epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        while True:
            epoch, i = divmod(position, self.per_rank)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch)).tolist()
            perm += perm[: self.per_rank * self.world_size - self.n]  # pad as DistributedSampler
            for j in range(i, self.per_rank):
                global_slot = j * self.world_size + self.rank
                crop_seed = (self.seed * 100003 + epoch) * self.per_rank * self.world_size + global_slot
                yield perm[global_slot], crop_seed
            position = (epoch + 1) * self.per_rank


@dataclass
class Batch:
    wave: torch.Tensor  # (B, V, N)
    skipped: list[tuple[str, str]]


def collate(items: list[dict]) -> Batch:
    return Batch(wave=torch.stack([it["wave"] for it in items]), skipped=[s for it in items for s in it["skipped"]])


def make_loader(dataset: AudioCrops, batch_size: int, num_workers: int, rank: int = 0, world_size: int = 1,
                seed: int = 0, start: int = 0) -> DataLoader:
    """Endless loader of Batch for this process, resuming after `start` items of its shard."""
    sampler = ShardedInfiniteSampler(len(dataset), rank, world_size, seed, start)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=True,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG untouched
        pin_memory=torch.cuda.is_available(),
    )
