"""Audio data for pretraining: find files, decode, mix to mono, resample, crop; sharded loading.

Legend: B batch, V crops per item (1, or 2 for objectives whose two views are separate
crops, e.g. COLA), N samples per crop (crop_seconds x 16 kHz).

- Sources: a folder (searched recursively for the configured extensions) or a manifest,
  `.txt` (one path per line) or `.csv` (a `path` column, else the first column); relative
  paths are relative to the manifest's folder.
- Decoding: soundfile (wav, flac, ogg, ...), any rate and channel count; channels are
  averaged, then resampled to the target rate with soxr.
- Crops by partial read (`read_crops`): for every format soundfile can seek sample-exactly
  (WAV/W64/RF64/AIFF/CAF/AU and FLAC; not Ogg or MP3, whose seeks are not exact), only the
  crop plus a resampler margin is read and resampled, from an input frame aligned to the
  rate ratio's period, so the crop's samples are those of the whole-file decode up to the
  resampler's float rounding (<= 1e-5, tested). Crop offsets are drawn exactly as before,
  on the resampled length computed from the header. Other formats, and files shorter than
  a crop, are decoded whole. The silence check looks at the crops read; only when they are
  all silent is the whole file decoded to tell a silent file from a quiet span of a good one.
  Non-finite samples are found in the spans read (a whole-file decode would find them anywhere).
- Header scan (`scan_files`): threads, a progress bar, and a CSV cache keyed by each file's
  path, size and modification time, so a second run on the same files reads no header.
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

import concurrent.futures as cf
import csv
import io
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

from hear_slicer.progress import Progress
from hear_slicer.written import temporary_path

from .errors import DataError, UsageError

__all__ = ["DatasetError", "DatasetNotFound", "AudioFileError", "find_audio_files", "scan_files", "decode_audio",
           "resampled_length", "read_crops", "random_crop", "progress_bar", "AudioCrops", "ShardedInfiniteSampler",
           "Batch", "collate", "make_loader"]


class DatasetError(DataError):
    """The dataset as a whole is unusable (missing, empty, no readable file)."""


class DatasetNotFound(DatasetError, UsageError):
    """`data.path` (or prepare's SOURCE) names no file or folder: a usage error (exit 2), not bad data."""


class AudioFileError(ValueError):
    """One audio file cannot be used; the message says why."""


def find_audio_files(path: str | Path, extensions: tuple[str, ...] = ("wav", "flac", "ogg"),
                     unreadable: list[tuple[str, str]] | None = None) -> list[Path]:
    """Sorted audio files under a folder (recursive) or listed in a .txt/.csv manifest.

    Subfolders that cannot be listed (permissions, I/O errors) are left out; with `unreadable`,
    each is appended to it as (folder, reason) so the caller can log it.
    """
    if not str(path):
        raise DatasetNotFound("no dataset given: set data.path to a folder of audio files or a .txt/.csv manifest")
    path = Path(path)
    if not path.exists():
        raise DatasetNotFound(f"dataset path does not exist: {path}")
    if path.is_dir():
        exts = {"." + e.lower().lstrip(".") for e in extensions}
        problems: list[tuple[str, str]] = []

        def unlistable(e: OSError) -> None:
            problems.append((str(e.filename), f"unreadable folder: {e.strerror}"))

        files = sorted(Path(folder) / name for folder, _, names in os.walk(path, onerror=unlistable)
                       for name in names if Path(name).suffix.lower() in exts and (Path(folder) / name).is_file())
        if unreadable is not None:
            unreadable.extend(problems)
        if not files:
            raise DatasetError(f"no audio files ({', '.join(sorted(exts))}) found under {path}"
                               + (f" (unreadable folders: {', '.join(p for p, _ in problems)})" if problems else ""))
        return files
    if path.suffix.lower() == ".csv":
        try:
            with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
                rows = list(csv.DictReader(f))
        except csv.Error as e:
            raise DatasetError(f"manifest {path} is not a CSV list of audio files: {e}") from e
        column = "path" if rows and "path" in rows[0] else (next(iter(rows[0])) if rows else None)
        entries = [r[column] for r in rows if column and r[column]]
    elif path.suffix.lower() == ".txt":
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        entries = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    else:
        raise DatasetError(f"{path} is neither a folder nor a .txt/.csv manifest")
    if not entries:
        raise DatasetError(f"manifest {path} lists no files")
    if any("\0" in e for e in entries):  # no file name holds a NUL byte: a binary file, not a list
        raise DatasetError(f"manifest {path} is not a list of audio files (it holds NUL bytes: a binary file?)")
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def _sf_name(path: str | Path) -> bytes:
    """The path as bytes for libsndfile: any name the file system holds, UTF-8 or not."""
    return os.fsencode(path)


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "file") -> Progress:
    """A bar on a terminal; when stderr is not one, a heartbeat line a minute (`hear_slicer.progress`)."""
    return Progress(total, desc, unit=unit, enabled=enabled)


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _header(path: Path) -> str:
    """'' when the file's header opens and announces samples, else why not."""
    try:
        info = sf.info(_sf_name(path))
    except Exception as e:  # soundfile raises several types for bad files
        return f"unreadable: {_first_line(e)}"
    return "" if info.frames > 0 else "empty (no samples)"


SCAN_CACHE_FIELDS = ("path", "size", "mtime_ns", "problem")


def scan_files(files: list[Path], workers: int = 1, cache: Path | None = None,
               progress: bool = False, write=None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Check headers: (files that open and have samples, [(path, reason)] for the others).

    `workers` threads read headers in parallel (libsndfile releases the GIL). With `cache`
    (a CSV file), results are reused for files whose path, size and mtime are unchanged and
    the cache is rewritten (atomically) with this scan's results, by `write(path, bytes)` when
    given (the run's record, `hear_slicer.written.WrittenFiles.write`).
    """
    if workers < 1:
        raise ValueError(f"scan workers must be at least 1, got {workers}")
    known: dict[tuple[str, int, int], str] = {}
    if cache is not None and Path(cache).is_file():
        try:
            with open(cache, newline="", encoding="utf-8", errors="surrogateescape") as f:
                for row in csv.DictReader(f):
                    known[(row["path"], int(row["size"]), int(row["mtime_ns"]))] = row["problem"]
        except (OSError, KeyError, ValueError, csv.Error):
            known = {}  # unreadable cache: scan again

    def key(p: Path) -> tuple[str, int, int]:
        try:
            st = os.stat(p)
        except OSError:
            return (str(p), -1, -1)
        return (str(p), st.st_size, st.st_mtime_ns)

    def check(p: Path) -> tuple[tuple[str, int, int], str]:
        k = key(p)
        if k in known:
            return k, known[k]
        return k, ("unreadable: file not found" if k[1] < 0 else _header(p))

    results: list[tuple[tuple[str, int, int], str]] = []
    with cf.ThreadPoolExecutor(max_workers=workers) as pool, progress_bar(len(files), "header scan", progress) as bar:
        for r in pool.map(check, files, chunksize=256):
            results.append(r)
            bar.update(1)
    if cache is not None:
        cache = Path(cache)
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(SCAN_CACHE_FIELDS)
        w.writerows((*k, problem) for k, problem in results if k[1] >= 0)
        data = buf.getvalue().encode("utf-8", "surrogateescape")  # any file name
        if write is not None:
            write(cache, data)
        else:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = temporary_path(cache)
            tmp.write_bytes(data)
            tmp.replace(cache)
    good = [p for p, (_, problem) in zip(files, results) if not problem]
    bad = [(str(p), problem) for p, (_, problem) in zip(files, results) if problem]
    return good, bad


def _checked_peak(x: np.ndarray, max_peak: float) -> float:
    """Peak |x| of decoded samples; AudioFileError when any is non-finite or the peak is above
    `max_peak` (the whole-file and the partial-read paths share this check)."""
    if not np.isfinite(x).all():
        raise AudioFileError("corrupt (non-finite samples)")
    peak = float(np.abs(x).max())
    if peak > max_peak:
        raise AudioFileError(f"out of range (peak |x| = {peak:.3g} > data.max_peak = {max_peak:g}; "
                             "float audio is expected within [-1, 1])")
    return peak


def decode_audio(path: str | Path, sample_rate: int, silence_peak: float = 0.0,
                 max_peak: float = math.inf) -> np.ndarray:
    """Decode, mix to mono and resample: -> float32 (n,). Raises AudioFileError for bad files."""
    try:
        x, sr = sf.read(_sf_name(path), dtype="float32", always_2d=True)  # (n, channels)
    except Exception as e:
        raise AudioFileError(f"unreadable: {_first_line(e)}") from e
    if x.shape[0] == 0:
        raise AudioFileError("empty (no samples)")
    x = x.mean(axis=1)
    peak = _checked_peak(x, max_peak)
    if peak <= silence_peak:
        raise AudioFileError(f"silent (peak <= {silence_peak:g})")
    if sr != sample_rate:
        x = soxr.resample(x, sr, sample_rate).astype(np.float32)
    return x


def resampled_length(n_frames: int, rate_in: int, rate_out: int) -> int:
    """Samples soxr.resample returns for n_frames input frames: n * out / in, rounded half up."""
    return (2 * n_frames * rate_out + rate_in) // (2 * rate_in)


def random_crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random crop of n samples of x (n,), zero-padded (at a random offset) when x is shorter."""
    if len(x) >= n:
        start = int(rng.integers(0, len(x) - n + 1))
        return x[start:start + n]
    out = np.zeros(n, dtype=np.float32)
    start = int(rng.integers(0, n - len(x) + 1))
    out[start:start + len(x)] = x
    return out


RESAMPLE_MARGIN_S = 0.02  # input read on each side of a crop: soxr's HQ filter support is ~1 ms at 44.1 -> 16 kHz
# containers whose seek is sample-exact in libsndfile (lossless PCM and FLAC); Ogg Vorbis/Opus
# and MP3 seek to within a page/frame only (measured off by hundreds of samples), so they are decoded whole
SEEKABLE_FORMATS = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "CAF", "AU", "FLAC"}


def _read_span(f: sf.SoundFile, start: int, n: int, rate: int) -> np.ndarray | None:
    """Samples [start, start + n) of the file resampled to `rate` and mixed to mono -> (n,) float32.

    Reads from an input frame a0 aligned to the rate ratio's period (a0 * rate / f.samplerate
    is an integer), so output sample j of the chunk is output sample a0 * rate / sr + j of the
    whole file. None when the file holds fewer frames than its header says.
    """
    sr = f.samplerate
    if sr == rate:
        f.seek(start)
        x = f.read(n, dtype="float32", always_2d=True)  # (n, channels)
        return x.mean(axis=1) if len(x) == n else None
    g = math.gcd(sr, rate)
    period_in, period_out = sr // g, rate // g
    margin = math.ceil(RESAMPLE_MARGIN_S * sr)
    a0 = max(0, (start * sr // rate - margin) // period_in) * period_in
    a1 = min(f.frames, -(-(start + n) * sr // rate) + margin)
    f.seek(a0)
    x = f.read(a1 - a0, dtype="float32", always_2d=True).mean(axis=1)  # (a1 - a0,) mono
    y = soxr.resample(x, sr, rate)
    offset = start - a0 // period_in * period_out
    y = y[offset:offset + n]
    return y.astype(np.float32, copy=False) if len(y) == n else None


def read_crops(path: str | Path, sample_rate: int, crop_samples: int, n_crops: int, seed: int,
               silence_peak: float = 0.0, max_peak: float = math.inf) -> np.ndarray:
    """n_crops random crops of the file at sample_rate, mono -> (n_crops, crop_samples) float32.

    Equal to `random_crop(decode_audio(path), ...)` n_crops times with
    `np.random.default_rng(seed)`, up to resampling rounding, but read by seeking where the
    format allows (see the module docstring). Raises AudioFileError for bad files.
    """
    try:
        f = sf.SoundFile(_sf_name(path))
    except Exception as e:
        raise AudioFileError(f"unreadable: {_first_line(e)}") from e
    with f:
        length = resampled_length(f.frames, f.samplerate, sample_rate)
        if f.seekable() and f.format in SEEKABLE_FORMATS and length >= crop_samples:
            rng = np.random.default_rng(seed)
            try:
                crops = [_read_span(f, int(rng.integers(0, length - crop_samples + 1)), crop_samples, sample_rate)
                         for _ in range(n_crops)]  # offsets drawn as random_crop draws them on the whole file
            except Exception as e:
                raise AudioFileError(f"unreadable: {_first_line(e)}") from e
            if all(c is not None for c in crops):
                out = np.stack(crops)  # (V, N)
                if _checked_peak(out, max_peak) > silence_peak:
                    return out
            # quiet crops (is the whole file silent?) or fewer frames than the header says: decode all
    x = decode_audio(path, sample_rate, silence_peak, max_peak)
    rng = np.random.default_rng(seed)
    return np.stack([random_crop(x, crop_samples, rng) for _ in range(n_crops)])


class AudioCrops(Dataset):
    """Item (file index, crop seed) -> dict(wave (V, N) float32 tensor, path of the file used,
    skipped [(path, reason)]).

    `crops_per_item` (V) independent random crops of the same file per item, read by seeking
    (`read_crops`); `partial_read=False` decodes every file whole (the reference behaviour).
    """

    def __init__(self, files: list[Path], sample_rate: int, crop_samples: int, silence_peak: float = 1e-4,
                 crops_per_item: int = 1, max_peak: float = math.inf, partial_read: bool = True):
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
        self.partial_read = partial_read

    def __len__(self) -> int:
        return len(self.files)

    def crop(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random crop of crop_samples samples, zero-padded (at a random offset) when shorter."""
        return random_crop(x, self.crop_samples, rng)

    def load(self, path: Path, crop_seed: int) -> np.ndarray:
        """(V, N) crops of one file; raises AudioFileError."""
        if self.partial_read:
            return read_crops(path, self.sample_rate, self.crop_samples, self.crops_per_item, crop_seed,
                              self.silence_peak, self.max_peak)
        x = decode_audio(path, self.sample_rate, self.silence_peak, self.max_peak)
        rng = np.random.default_rng(crop_seed)
        return np.stack([self.crop(x, rng) for _ in range(self.crops_per_item)])

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, crop_seed = item
        skipped = []
        for attempt in range(len(self.files)):
            path = self.files[(index + attempt) % len(self.files)]
            try:
                wave = self.load(path, crop_seed)  # (V, N)
            except AudioFileError as e:
                skipped.append((str(path), str(e)))
                continue
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
    paths: list[str]  # (B,) the file each clip was cropped from


def collate(items: list[dict]) -> Batch:
    return Batch(wave=torch.stack([it["wave"] for it in items]), skipped=[s for it in items for s in it["skipped"]],
                 paths=[it["path"] for it in items])


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
