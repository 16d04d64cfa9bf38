"""Dataset statistics computed before training: log-mel mean/std and the k-mix centroids.

Legend: n files in the subset, F mel bins, T frames, k centroids.

On a random subset of the files (raw or from a prepared store; one random crop each; bad files are replaced by the
loader and listed in `skipped`, and a crop whose log-mel is not finite is left out and
listed too, so the statistics come from good files only):
- mean and std of the un-normalised log-mel over all bins and frames (BYOL-A
  pre-normalisation), stored in the frontend and in every checkpoint;
- k-mix centroids: spherical k-means (scikit-learn KMeans on L2-normalised vectors) of each
  crop's time-averaged *normalised* log-mel, the same descriptor `pretrain.augment.clip_descriptor`
  uses during training (released SLICER code: k = 4, 20 iterations, 5 % of the data).

Results are cached in a file next to the run, keyed by everything they depend on.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hear_slicer.frontend import FrontendConfig, LogMelFrontend
from hear_slicer.written import temporary_path

from torch.utils.data import Dataset

from .augment import clip_descriptor
from .data import DatasetError

__all__ = ["DataStats", "compute_stats", "load_or_compute_stats"]


@dataclass
class DataStats:
    mean: float
    std: float
    centroids: torch.Tensor | None  # (k, F) unit rows, or None when k-mix is off
    n_files: int  # files in the subset
    skipped: list[tuple[str, str]]  # bad files met while computing

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "centroids": self.centroids, "n_files": self.n_files,
                "skipped": [list(s) for s in self.skipped]}

    @classmethod
    def from_dict(cls, d: dict) -> "DataStats":
        return cls(float(d["mean"]), float(d["std"]), d["centroids"], int(d["n_files"]),
                   [tuple(s) for s in d.get("skipped", [])])


@torch.no_grad()
def compute_stats(dataset: Dataset, frontend_cfg: FrontendConfig, n_centroids: int, fraction: float,
                  min_files: int, max_files: int, kmeans_iters: int, kmeans_init: int, seed: int,
                  device: torch.device | str = "cpu", batch_size: int = 64) -> DataStats:
    """Statistics on a random subset of max(min_files, fraction * n) files, at most max_files.

    `dataset`: `pretrain.data.AudioCrops` (raw files) or `pretrain.store.StoreCrops` (a
    prepared store); both map (index, crop seed) to dict(wave (V, N), skipped).
    """
    rng = np.random.default_rng(seed)
    n = len(dataset)
    size = min(n, max_files, max(min_files, math.ceil(fraction * n)))
    chosen = rng.choice(n, size=size, replace=False)
    frontend = LogMelFrontend(frontend_cfg).to(device)
    log_mels, skipped = [], []
    for start in range(0, size, batch_size):
        items = [dataset[(int(i), int(rng.integers(2**31)))] for i in chosen[start:start + batch_size]]
        skipped += [s for it in items for s in it["skipped"]]
        wave = torch.stack([it["wave"][0] for it in items]).to(device)  # (b, N), first crop of each item
        mel = frontend.log_mel(wave).cpu()  # (b, F, T)
        finite = torch.isfinite(mel).flatten(1).all(dim=1)  # (b,)
        skipped += [(it["path"], "non-finite log-mel (samples far out of range)")
                    for it, ok in zip(items, finite.tolist()) if not ok]
        log_mels.append(mel[finite])
    x = torch.cat(log_mels).double()  # (n, F, T)
    if len(x) == 0:
        raise DatasetError(f"no file of the statistics subset gave a finite log-mel; first problems: {skipped[:3]}")
    mean, std = float(x.mean()), float(x.std())
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise DatasetError(f"log-mel statistics are degenerate (mean={mean}, std={std}); is the audio all constant?")
    centroids = None
    if n_centroids > 0:
        desc = clip_descriptor(((x - mean) / std).float()).numpy()  # (n, F) unit rows
        if len(np.unique(desc.round(6), axis=0)) < n_centroids:
            raise DatasetError(f"k-mix needs at least {n_centroids} distinct clips for k-means, the subset has "
                               f"{len(desc)}; add data, raise stats.min_files, or lower augment.kmix.k")
        from sklearn.cluster import KMeans  # imported here: training without k-mix needs no scikit-learn

        km = KMeans(n_clusters=n_centroids, max_iter=kmeans_iters, n_init=kmeans_init, random_state=seed).fit(desc)
        centroids = torch.nn.functional.normalize(torch.from_numpy(km.cluster_centers_).float(), dim=1)
    return DataStats(mean, std, centroids, len(x), skipped)


def load_or_compute_stats(cache: Path, files: list[Path], frontend_cfg: FrontendConfig, settings: dict,
                          compute, write=None) -> tuple[DataStats, bool]:
    """Stats from `cache` if it was made for the same files and settings, else `compute()` and cache.

    `write(path, bytes)` writes the cache (the run's record, `hear_slicer.written.WrittenFiles.write`);
    default: a plain atomic write.

    Returns (stats, loaded_from_cache).
    """
    key = hashlib.sha256(json.dumps({"files": [str(f) for f in files], "frontend": asdict(frontend_cfg),
                                     "settings": settings}, sort_keys=True).encode()).hexdigest()
    if cache.is_file():
        try:
            d = torch.load(cache, map_location="cpu", weights_only=True)
            if d.get("key") == key:
                return DataStats.from_dict(d), True
        except Exception:
            pass  # unreadable cache: recompute
    stats = compute()
    buf = io.BytesIO()
    torch.save({"key": key, **stats.to_dict()}, buf)
    if write is not None:
        write(cache, buf.getvalue())
    else:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_path(cache)
        tmp.write_bytes(buf.getvalue())
        tmp.replace(cache)
    return stats, False
