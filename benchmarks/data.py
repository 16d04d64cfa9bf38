"""Benchmark of the pretraining data pipeline on AudioSet-like files: can it feed the GPUs?

    nice python benchmarks/data.py [--files 24] [--workers 2] [--seconds 3] [--batch 32] [--steps 6]

The script writes --files clips of 10 s, 44.1 kHz stereo (tones + noise), as FLAC and as
16-bit WAV, in a temporary folder, prepares a store from the FLAC ones
(`pretrain.prepare`), and measures, each for about --seconds:

1. Clips/s of one worker (items read in this process, no DataLoader) for
     raw, partial read       `AudioCrops` as training uses it (seek + resample the crop only)
     raw, whole-file decode  the previous loader (decode and resample the whole file, then crop)
     prepared store          `StoreCrops` (a slice of a memory-mapped int16 shard)
   Reported per CPU second of the reading process (= one dedicated core; immune to other
   jobs on a shared machine) and per wall second. Targets on one core: raw FLAC >= 100
   clips/s, store >= 1,000 clips/s.
2. Clips/s with --workers DataLoader worker processes (batches of --batch), same readers.
3. The SLICER training step on CPU as `pretrain.train` runs it (default encoder, queue
   --queue), fed from the raw FLAC files by the loader with --workers workers: the share of
   the step spent waiting for the next batch. Target: < 5 %.
Finally the sizing figure: loader cores needed per GPU at 2,000 clips/s for each reader.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pretrain.data import AudioCrops, make_loader  # noqa: E402
from pretrain.prepare import prepare  # noqa: E402
from pretrain.store import StoreCrops  # noqa: E402

GPU_CLIPS_PER_S = 2000  # the H100 target of one GPU (issue 12)


def make_files(root: Path, n: int) -> tuple[Path, Path]:
    """n clips of 10 s, 44.1 kHz stereo, as FLAC (root/flac) and 16-bit WAV (root/wav)."""
    rng = np.random.default_rng(0)
    t = np.arange(441000) / 44100
    for fmt in ("flac", "wav"):
        (root / fmt).mkdir(parents=True)
    for i in range(n):
        chans = [sum(0.15 * np.sin(2 * np.pi * f * t) for f in rng.uniform(60, 8000, 4))
                 + 0.03 * rng.standard_normal(len(t)) for _ in range(2)]
        x = np.stack(chans, axis=1).astype(np.float32)  # (441000, 2)
        sf.write(root / "flac" / f"clip{i:04d}.flac", x, 44100)
        sf.write(root / "wav" / f"clip{i:04d}.wav", x, 44100, subtype="PCM_16")
    return root / "flac", root / "wav"


def per_worker(dataset, seconds: float) -> tuple[float, float]:
    """(clips per wall second, clips per CPU second) reading items one after another in this process.

    The CPU-time rate is what one dedicated core delivers; on a shared machine the wall rate is lower.
    """
    dataset[(0, 0)]  # warm-up (file cache, first-call overheads)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds or n < 3:
        dataset[(n % len(dataset), n)]
        n += 1
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)


def with_workers(dataset, workers: int, batch: int, seconds: float) -> float:
    """Clips/s through the real loader with `workers` processes (start-up excluded)."""
    batches = iter(make_loader(dataset, batch, workers, seed=0))
    next(batches)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2 * batch:
        n += next(batches).wave.shape[0]
    return n / (time.perf_counter() - t0)


def loader_wait(files: list[Path], args) -> tuple[float, float]:
    """(loader wait share, ms per step) of the SLICER step fed by the loader from raw files."""
    from hear_slicer.frontend import LogMelFrontend
    from pretrain.augment import AugmentPipeline
    from pretrain.config import load_config
    from pretrain.objectives.slicer import Slicer
    from pretrain.optim import build_optimizer
    from pretrain.stats import compute_stats
    from pretrain.train import two_views

    cfg = load_config(REPO / "pretrain/configs/slicer.yaml", [f"objective.params.queue_size={args.queue}"])
    crop = round(cfg.data.crop_seconds * cfg.frontend.sample_rate)
    n_frames = cfg.frontend.num_frames(crop)
    dataset = AudioCrops(files, cfg.frontend.sample_rate, crop)
    st = compute_stats(dataset, cfg.frontend, cfg.augment.kmix.k, 1.0, 8, 16, 20, 1, seed=0)
    frontend = LogMelFrontend(cfg.frontend, st.mean, st.std)
    augment = AugmentPipeline(cfg.augment, cfg.frontend.n_mels, n_frames)
    augment.kmix.set_centroids(st.centroids)
    torch.manual_seed(0)
    model = Slicer(cfg.encoder, cfg.objective.params)
    params = model.trainable_parameters()
    optimizer = build_optimizer(params, cfg.optim)
    batches = iter(make_loader(dataset, args.batch, args.workers, seed=0))
    waits, totals = [], []
    for i in range(1 + args.steps):  # the first step (workers starting) is not timed
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        with torch.no_grad():
            x = frontend(batch.wave.flatten(0, 1)).unflatten(0, batch.wave.shape[:2])  # (B, V, F, T)
        view_a, view_b = two_views(x, augment)
        loss = model(view_a, view_b).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        model.after_step(i + 1, args.steps + 1)
        if i:
            waits.append(t1 - t0)
            totals.append(time.perf_counter() - t0)
    return sum(waits) / sum(totals), 1000 * sum(totals) / len(totals)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=24, help="clips of 10 s to write (each as FLAC and WAV)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for parts 2 and 3")
    p.add_argument("--seconds", type=float, default=3.0, help="time per clips/s measurement")
    p.add_argument("--batch", type=int, default=32, help="batch size of the loader and of the training step")
    p.add_argument("--steps", type=int, default=4, help="timed training steps in part 3")
    p.add_argument("--queue", type=int, default=65536, help="SLICER queue size in part 3")
    args = p.parse_args()
    if args.files < 4:
        p.error(f"--files must be at least 4 (k-means of the k-mix centroids needs 4 clips), got {args.files}")
    for name in ("workers", "batch", "steps", "queue"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not args.seconds > 0:
        p.error(f"--seconds must be positive, got {args.seconds}")
    crop = 15200  # 0.95 s at 16 kHz
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} CPU cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.files} clips of 10 s, 44.1 kHz stereo")
    with tempfile.TemporaryDirectory() as tmp:
        flac, wav = make_files(Path(tmp), args.files)
        t0 = time.perf_counter()
        prepare(flac, Path(tmp) / "store", workers=args.workers, files_per_shard=8, progress=False)
        prep = args.files / (time.perf_counter() - t0)
        flac_files, wav_files = sorted(flac.iterdir()), sorted(wav.iterdir())
        readers = {
            "raw FLAC, partial read": AudioCrops(flac_files, 16000, crop),
            "raw WAV, partial read": AudioCrops(wav_files, 16000, crop),
            "raw FLAC, whole-file decode (old)": AudioCrops(flac_files, 16000, crop, partial_read=False),
            "raw WAV, whole-file decode (old)": AudioCrops(wav_files, 16000, crop, partial_read=False),
            "prepared store": StoreCrops(Path(tmp) / "store", 16000, crop),
        }
        print(f"\nprepare (FLAC -> store, {args.workers} workers): {prep:.1f} clips/s")
        one = {name: per_worker(ds, args.seconds) for name, ds in readers.items()}
        many = {name: with_workers(ds, args.workers, args.batch, args.seconds) for name, ds in readers.items()
                if "WAV" not in name}
        wait, step_ms = loader_wait(flac_files, args)

    print(f"\nclips/s {'reader':36s} {'1 core (CPU time)':>18s} {'1 worker (wall)':>16s} "
          f"{f'{args.workers} workers (wall)':>18s}")
    for name in readers:
        print(f"        {name:36s} {one[name][1]:18.1f} {one[name][0]:16.1f} "
              f"{many[name] if name in many else float('nan'):18.1f}")
    one = {name: cpu for name, (_, cpu) in one.items()}  # per core from here on
    partial, whole, store = (one[k] for k in ("raw FLAC, partial read", "raw FLAC, whole-file decode (old)",
                                              "prepared store"))
    print(f"\npartial read / whole-file decode, FLAC: {partial / whole:.1f}x; store / raw FLAC partial: "
          f"{store / partial:.1f}x")
    for name, target in (("raw FLAC, partial read", 100), ("prepared store", 1000)):
        print(f"target {name} >= {target} clips/s on one core: {'met' if one[name] >= target else 'MISSED'} "
              f"({one[name]:.0f})")
    print(f"\ntraining step on CPU (SLICER, batch {args.batch}, raw FLAC, {args.workers} workers): "
          f"{step_ms:.0f} ms/step, loader wait {100 * wait:.2f} % (target < 5 %: {'met' if wait < 0.05 else 'MISSED'})")
    print(f"\nsizing at {GPU_CLIPS_PER_S} clips/s per GPU (loader cores = worker processes, one core each):")
    for name in ("raw FLAC, partial read", "raw WAV, partial read", "raw FLAC, whole-file decode (old)",
                 "prepared store"):
        print(f"  {name:36s} {math.ceil(GPU_CLIPS_PER_S / one[name]):4d} cores per GPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
