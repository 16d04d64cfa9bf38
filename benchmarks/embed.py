"""Embedding speed and memory of the HEAR API.

Real-time factor (audio seconds per wall second) of get_scene_embeddings and
get_timestamp_embeddings on 1 s, 10 s and 20 min clips, on CPU and on CUDA when present,
and the peak resident memory of embedding one 20-minute clip (measured in a fresh
process, so the figure is that clip's alone). Targets on the 2-core CPU:
scene >= 100x and timestamp >= 50x real time on 10 s clips; 20-min clip under 2 GiB RSS.

    python benchmarks/embed.py [--device cpu|cuda] [--repeats 3] [--checkpoint PATH]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

import hear_slicer

SR = 16000
CASES = [("1 s", 1.0, 32), ("10 s", 10.0, 8), ("20 min", 1200.0, 1)]  # (name, seconds, clips per call)


def rtf(fn, audio, model, repeats: int) -> float:
    fn(audio[:1, : SR], model)  # warm-up
    if audio.is_cuda:
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(audio, model)
        if audio.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return audio.numel() / SR / best


def peak_rss_child(kind: str, checkpoint: str) -> float:
    """Run one 20-min embedding in a fresh process; return its peak RSS in GiB."""
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--checkpoint", checkpoint],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_gib"]


def child(kind: str, checkpoint: str) -> None:
    model = hear_slicer.load_model(checkpoint)
    audio = torch.rand(1, int(1200 * SR)) * 0.2 - 0.1
    fn = hear_slicer.get_scene_embeddings if kind == "scene" else hear_slicer.get_timestamp_embeddings
    fn(audio, model)
    print(json.dumps({"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--checkpoint", default="", help="checkpoint path (default: the packaged default model)")
    ap.add_argument("--child", choices=["scene", "timestamp"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.checkpoint)

    model = hear_slicer.load_model(args.checkpoint).to(args.device)
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"timestamp_hop_ms={model.timestamp_hop_ms}")
    print(f"{'clip':>8} {'clips':>5} {'scene xRT':>10} {'timestamp xRT':>14}")
    g = torch.Generator().manual_seed(0)
    for name, seconds, n in CASES:
        audio = (torch.rand(n, int(seconds * SR), generator=g) * 0.2 - 0.1).to(args.device)
        repeats = 1 if seconds > 60 else args.repeats
        s = rtf(hear_slicer.get_scene_embeddings, audio, model, repeats)
        t = rtf(hear_slicer.get_timestamp_embeddings, audio, model, repeats)
        print(f"{name:>8} {n:>5} {s:>10.1f} {t:>14.1f}")
        if seconds == 10.0:
            # Reference in the same run: the plain eval-mode encoder instead of the fused copy.
            fused = model.fast_encoder
            model.fast_encoder = model.encoder
            ref = rtf(hear_slicer.get_scene_embeddings, audio, model, repeats)
            model.fast_encoder = fused
            print(f"{'':>8} {'':>5} {ref:>10.1f} {'':>14} <- 10 s, scene, unfused encoder (reference): "
                  f"fused is {s / ref:.2f}x faster")
    if args.device == "cpu":
        for kind in ("scene", "timestamp"):
            print(f"20-min clip, {kind} embeddings: peak RSS {peak_rss_child(kind, args.checkpoint):.2f} GiB")


if __name__ == "__main__":
    main()
