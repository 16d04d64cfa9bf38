"""Benchmark of the SLICER training step: clips/s and where the time goes.

    python benchmarks/pretrain.py [--data DIR] [--steps 20] [--batch 64] [--workers 2] [--device auto]

Without --data, a small corpus is synthesised with espeak-ng and fluidsynth in a temporary folder.
Measures, per step (after warm-up): waiting on the data loader, frontend (log-mel), augmentation
(two views + memory update), forward+backward+optimiser, queue/EMA (`after_step`); then the same
for a plain two-view MoCo step on the same encoder (symmetric InfoNCE against a queue, EMA
teacher; no cluster head, no k-mix) and reports the ratio. Numbers are measured, in this run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]


def make_corpus(root: Path, n: int = 48) -> Path:
    import soundfile as sf

    from eval_suites.synth import Note, espeak, fluidsynth_render_many

    root.mkdir(parents=True, exist_ok=True)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    for i in range(n // 2):
        sf.write(root / f"s{i}.wav", espeak(" ".join(words[i % 8:i % 8 + 3]), voice="en", speed=150 + 5 * i), 16000)
    clips = [[Note((7 * i) % 100, 50 + i % 20, 100, 0.25 * k, 0.4) for k in range(5)] for i in range(n // 2)]
    for i, x in enumerate(fluidsynth_render_many(clips, duration=2.0)):
        sf.write(root / f"m{i}.wav", x, 16000)
    return root


class PlainMoCo(nn.Module):
    """Reference step: encoder + instance head, EMA teacher, symmetric InfoNCE against a queue."""

    def __init__(self, slicer):
        super().__init__()
        self.s = slicer  # reuse the same encoder, instance head, teacher and queue

    def forward(self, a, b):
        from pretrain.losses.instance import info_nce

        s = self.s
        q_a = F.normalize(s.instance_head(s.encoder.clip_embedding(a)), dim=1)
        q_b = F.normalize(s.instance_head(s.encoder.clip_embedding(b)), dim=1)
        with torch.no_grad():
            k_a, k_b = s._teacher_keys(a), s._teacher_keys(b)
        s._pending_keys = torch.cat([k_a, k_b])
        loss = info_nce(q_a, k_b, s.queue.keys.clone(), 0.07) + info_nce(q_b, k_a, s.queue.keys.clone(), 0.07)
        return loss


def run(args, plain: bool) -> dict[str, float]:
    from hear_slicer.frontend import LogMelFrontend
    from pretrain.augment import AugmentPipeline
    from pretrain.config import load_config
    from pretrain.data import AudioCrops, find_audio_files, make_loader, scan_files
    from pretrain.objectives.slicer import Slicer
    from pretrain.stats import compute_stats

    overrides = [f"data.batch_size={args.batch}", f"objective.params.queue_size={args.queue}"]
    if plain:
        overrides.append("augment.kmix.enabled=false")
    cfg = load_config(REPO / "pretrain/configs/slicer.yaml", overrides)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    files, _ = scan_files(find_audio_files(args.data))
    crop = round(cfg.data.crop_seconds * 16000)
    ds = AudioCrops(files, 16000, crop)
    st = compute_stats(ds, cfg.frontend, cfg.augment.kmix.k, 1.0, 8, 64, 20, 1, seed=0, device=device)
    frontend = LogMelFrontend(cfg.frontend, st.mean, st.std).to(device)
    slicer = Slicer(cfg.encoder, cfg.objective.params).to(device)
    model = PlainMoCo(slicer) if plain else slicer
    aug = AugmentPipeline(cfg.augment, 64, cfg.frontend.num_frames(crop)).to(device)
    if aug.kmix is not None:
        aug.kmix.set_centroids(st.centroids)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-4)
    batches = iter(make_loader(ds, args.batch, args.workers, seed=0))
    times = defaultdict(float)
    for step in range(args.warmup + args.steps):
        t = [time.perf_counter()]

        def mark():
            sync()
            t.append(time.perf_counter())

        batch = next(batches)
        mark()
        with torch.no_grad():
            x = frontend(batch.wave.to(device))
        mark()
        with torch.no_grad():
            a, b = aug(x), aug(x)
        aug.remember(x)
        mark()
        out = model(a, b)
        loss = out if plain else out.loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        opt.step()
        mark()
        slicer.after_step(step + 1, 10**6)
        mark()
        if step >= args.warmup:
            for name, i in [("loader wait", 0), ("frontend", 1), ("augmentation", 2), ("forward/backward/step", 3),
                            ("queue/EMA", 4)]:
                times[name] += t[i + 1] - t[i]
    return dict(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="folder of audio (default: synthesise a small corpus)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--queue", type=int, default=65536)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        if not args.data:
            args.data = str(make_corpus(Path(tmp) / "audio"))
        results = {"SLICER": run(args, plain=False), "plain MoCo": run(args, plain=True)}
    clips = args.steps * args.batch
    print(f"batch {args.batch}, {args.steps} timed steps, {args.workers} loader workers, "
          f"device {'cuda' if torch.cuda.is_available() and args.device == 'auto' else args.device}, "
          f"torch threads {torch.get_num_threads()}")
    for name, times in results.items():
        total = sum(times.values())
        print(f"\n{name}: {clips / total:.1f} clips/s ({1000 * total / args.steps:.0f} ms/step)")
        for part, sec in times.items():
            print(f"  {part:24s} {1000 * sec / args.steps:8.1f} ms/step  {100 * sec / total:5.1f} %")
    s, m = sum(results["SLICER"].values()), sum(results["plain MoCo"].values())
    wait = results["SLICER"]["loader wait"] / s
    print(f"\nloader wait share (SLICER): {100 * wait:.1f} % (target < 10 %)")
    print(f"SLICER step / plain MoCo step: {s / m:.2f} (target <= 1.30)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
