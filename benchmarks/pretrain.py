"""Benchmark of the SLICER training step: clips/s, where the time goes, and the cost of SLICER's machinery.

    python benchmarks/pretrain.py [--data DIR] [--batch 32] [--workers 2] [--pipeline-steps 12]
                                  [--repeats 5] [--steps-per-repeat 2] [--device auto]

Legend: B batch, F mel bins, T frames, E instance-head dim.

Without --data, a small corpus is synthesised with espeak-ng and fluidsynth in a temporary folder.
Two measurements, both in this run (nothing is hard-coded):

1. Pipeline. The SLICER training step exactly as `pretrain.train` runs it, fed by the real
   loader with --workers processes. Per step: waiting on the loader, frontend (log-mel),
   augmentation (two views + memory update, `pretrain.train.two_views`), forward + backward +
   clipping + optimiser step, queue/EMA (`after_step`). Target: loader wait < 10 % of the step.

2. Interleaved comparison. The same pre-loaded batches go through three variants, one step
   of each in turn (the order rotates every repeat), so machine load drifts hit all equally:
     SLICER            encoder + instance head + cluster head, EMA teacher, queue; mixup, RRC, k-mix
     MoCo              encoder + instance head, EMA teacher, queue; mixup, RRC (symmetric InfoNCE)
     two-view, no queue  as MoCo but negatives are the other keys of the batch (no queue)
   Per repeat, the ratio of summed step times (frontend to queue/EMA) SLICER / MoCo and
   SLICER / two-view; the median over repeats is reported. Target: SLICER / MoCo <= 1.30.

3. Layout and precision (issue 23). The SLICER model step (forward, backward, clipping, AdamW,
   EMA/queue) on the same batches in three forms, interleaved: the NCHW encoder as it trained
   before 2026-12-04 (Conv -> BN -> ReLU -> MaxPool on NCHW activations), the channels-last
   encoder that pools before the ReLU (today's fp32 step: the same function, tests/test_fast_step.py),
   and that step under bf16 autocast (`run.precision=bf16`, a different precision). Reported:
   median wall and CPU (process) seconds per step and the ratios to the NCHW step; CPU time
   is what a busy machine distorts least. Target: >= 1.5x.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
PHASES = ("loader wait", "frontend", "augmentation", "forward/backward/step", "queue/EMA")


def make_corpus(root: Path, n: int = 48) -> Path:
    import soundfile as sf

    from eval_suites.synthetic.synth import Note, espeak, fluidsynth_render_many

    root.mkdir(parents=True, exist_ok=True)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    for i in range(n // 2):
        sf.write(root / f"s{i}.wav", espeak(" ".join(words[i % 8:i % 8 + 3]), voice="en", speed=150 + 5 * i), 16000)
    clips = [[Note((7 * i) % 100, 50 + i % 20, 100, 0.25 * k, 0.4) for k in range(5)] for i in range(n // 2)]
    for i, x in enumerate(fluidsynth_render_many(clips, duration=2.0)):
        sf.write(root / f"m{i}.wav", x, 16000)
    return root


class TwoViewMoCo(nn.Module):
    """Reference step: encoder + instance head, EMA teacher, symmetric InfoNCE.

    queue_size > 0: negatives from a FIFO queue of teacher keys (MoCo); 0: the other teacher
    keys of the batch (no queue). Built from the same shared pieces as `Slicer`.
    """

    def __init__(self, encoder_cfg, dim: int, queue_size: int, temperature: float, momentum: float):
        super().__init__()
        from hear_slicer.encoder import AudioNTT2020
        from pretrain.ema import copy_as_teacher
        from pretrain.queue import KeyQueue

        self.encoder = AudioNTT2020(encoder_cfg)
        self.head = nn.Linear(encoder_cfg.d, dim)
        self.teacher_encoder, self.teacher_head = copy_as_teacher(self.encoder), copy_as_teacher(self.head)
        self.queue = KeyQueue(queue_size, dim) if queue_size > 0 else None
        self.temperature, self.momentum = temperature, momentum
        self._pending: torch.Tensor | None = None

    def _loss(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """q, k: (B, E) unit rows."""
        from pretrain.losses.instance import info_nce

        if self.queue is not None:
            return info_nce(q, k, self.queue.keys.clone(), self.temperature)
        logits = q @ k.T / self.temperature  # (B, B), positives on the diagonal
        return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        q_a = F.normalize(self.head(self.encoder.clip_embedding(a)), dim=1)  # (B, E)
        q_b = F.normalize(self.head(self.encoder.clip_embedding(b)), dim=1)
        with torch.no_grad():
            k_a = F.normalize(self.teacher_head(self.teacher_encoder.clip_embedding(a)), dim=1)
            k_b = F.normalize(self.teacher_head(self.teacher_encoder.clip_embedding(b)), dim=1)
        self._pending = torch.cat([k_a, k_b])  # (2B, E)
        return self._loss(q_a, k_b) + self._loss(q_b, k_a)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        from pretrain.ema import ema_update

        ema_update(self.teacher_encoder, self.encoder, self.momentum)
        ema_update(self.teacher_head, self.head, self.momentum)
        if self.queue is not None:
            self.queue.enqueue(self._pending)
        self._pending = None


class Variant:
    """One training step variant: frontend -> two views -> model step -> after_step, timed by phase."""

    def __init__(self, name: str, model: nn.Module, augment, frontend, sync):
        self.name, self.model, self.augment, self.frontend, self.sync = name, model, augment, frontend, sync
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=3e-4)
        self.steps = 0

    def step(self, wave: torch.Tensor) -> dict[str, float]:
        """wave: (B, 1, N) on the device -> seconds per phase (loader wait excluded)."""
        from pretrain.train import two_views

        t = [time.perf_counter()]

        def mark():
            self.sync()
            t.append(time.perf_counter())

        with torch.no_grad():
            x = self.frontend(wave.flatten(0, 1)).unflatten(0, wave.shape[:2])  # (B, 1, F, T)
        mark()
        a, b = two_views(x, self.augment)
        mark()
        out = self.model(a, b)
        loss = out if isinstance(out, torch.Tensor) else out.loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 3.0)
        self.opt.step()
        mark()
        self.steps += 1
        self.model.after_step(self.steps, 10**6)
        mark()
        return {name: t[i + 1] - t[i] for i, name in enumerate(PHASES[1:])}


def build(args):
    """Shared pieces: config, device, dataset, statistics, frontend, and the three variants."""
    from hear_slicer.frontend import LogMelFrontend
    from pretrain.augment import AugmentPipeline
    from pretrain.config import load_config
    from pretrain.data import AudioCrops, find_audio_files, scan_files
    from pretrain.objectives.slicer import Slicer
    from pretrain.stats import compute_stats

    cfg = load_config(REPO / "pretrain/configs/slicer.yaml",
                      [f"data.batch_size={args.batch}", f"objective.params.queue_size={args.queue}"])
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    files, _ = scan_files(find_audio_files(args.data))
    crop = round(cfg.data.crop_seconds * cfg.frontend.sample_rate)
    n_frames = cfg.frontend.num_frames(crop)
    dataset = AudioCrops(files, cfg.frontend.sample_rate, crop)
    st = compute_stats(dataset, cfg.frontend, cfg.augment.kmix.k, 1.0, 8, 64, 20, 1, seed=0, device=device)
    frontend = LogMelFrontend(cfg.frontend, st.mean, st.std).to(device)
    p = cfg.objective.params

    def augment(kmix: bool) -> AugmentPipeline:
        a = cfg.augment
        a = type(a)(mixup=a.mixup, rrc=a.rrc, kmix=type(a.kmix)(**{**vars(a.kmix), "enabled": kmix}))
        pipe = AugmentPipeline(a, cfg.frontend.n_mels, n_frames).to(device)
        if pipe.kmix is not None:
            pipe.kmix.set_centroids(st.centroids)
        return pipe

    torch.manual_seed(0)
    slicer = Slicer(cfg.encoder, p).to(device)
    torch.manual_seed(0)
    moco = TwoViewMoCo(cfg.encoder, p.instance_dim, p.queue_size, p.instance_temperature, p.momentum).to(device)
    torch.manual_seed(0)
    two_view = TwoViewMoCo(cfg.encoder, p.instance_dim, 0, p.instance_temperature, p.momentum).to(device)
    variants = [Variant("SLICER", slicer, augment(True), frontend, sync),
                Variant("MoCo", moco, augment(False), frontend, sync),
                Variant("two-view, no queue", two_view, augment(False), frontend, sync)]
    return cfg, device, dataset, variants


def pipeline(args, dataset, slicer: Variant, device) -> dict[str, list[float]]:
    """The real loop with --workers loader processes: seconds per phase per timed step."""
    from pretrain.data import make_loader

    batches = iter(make_loader(dataset, args.batch, args.workers, seed=0))
    times: dict[str, list[float]] = defaultdict(list)
    for i in range(args.warmup + args.pipeline_steps):
        t0 = time.perf_counter()
        batch = next(batches)
        wait = time.perf_counter() - t0
        parts = slicer.step(batch.wave.to(device))
        if i >= args.warmup:
            times["loader wait"].append(wait)
            for k, v in parts.items():
                times[k].append(v)
    return times


def interleaved(args, dataset, variants: list[Variant], device):
    """Per repeat and variant: summed step seconds per phase over the same pre-loaded batches."""
    from pretrain.data import make_loader

    loader = iter(make_loader(dataset, args.batch, 0, seed=1))
    batches = [next(loader).wave.to(device) for _ in range(args.steps_per_repeat)]  # (B, 1, N) each
    for v in variants:  # warm-up (allocator, first-call overheads, memories filling)
        for _ in range(args.warmup):
            v.step(batches[0])
    per_repeat: list[dict[str, dict[str, float]]] = []
    for r in range(args.repeats):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        sums = {v.name: dict.fromkeys(PHASES[1:], 0.0) for v in variants}
        for wave in batches:
            for v in order:
                for k, sec in v.step(wave).items():
                    sums[v.name][k] += sec
        per_repeat.append(sums)
    return per_repeat


def _nchw_blocks(self, x: torch.Tensor):
    """AudioNTT2020.forward_blocks as it ran before 2026-12-04: NCHW, each block in written order."""
    h, outs = x.unsqueeze(1), []
    for block in self.blocks:
        h = block(h)
        outs.append(h)
    b, c, f, t = h.shape
    return self.fc(h.permute(0, 3, 1, 2).reshape(b, t, c * f)), outs


def layout_comparison(args, cfg, device, views: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, dict]:
    """Seconds per model step (wall and CPU) of the NCHW, channels-last and channels-last + bf16 steps."""
    import copy

    from pretrain.objectives.slicer import Slicer

    torch.manual_seed(0)
    base = Slicer(cfg.encoder, cfg.objective.params).to(device).train()
    forms = {}
    for name in ("NCHW fp32 (before)", "channels-last fp32", "channels-last bf16"):
        model = copy.deepcopy(base)
        if name.startswith("NCHW"):
            for enc in (model.encoder, model.teacher_encoder):
                for p in enc.blocks.parameters():
                    p.data = p.data.contiguous()
                enc.forward_blocks = _nchw_blocks.__get__(enc)
        params = [p for p in model.parameters() if p.requires_grad]
        forms[name] = (model, params, torch.optim.AdamW(params, lr=3e-4), name.endswith("bf16"))

    def step(model, params, opt, bf16, a, b) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(a, b).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        opt.step()
        model.after_step(1, 10**6)

    for form in forms.values():  # warm-up
        step(*form, *views[0])
    times = {name: {"wall": [], "cpu": []} for name in forms}
    for r in range(args.repeats):
        names = list(forms)[r % len(forms):] + list(forms)[:r % len(forms)]
        for a, b in views:
            for name in names:
                w, c = time.perf_counter(), time.process_time()
                step(*forms[name], a, b)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name]["wall"].append(time.perf_counter() - w)
                times[name]["cpu"].append(time.process_time() - c)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="folder of audio (default: synthesise a small corpus)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--pipeline-steps", type=int, default=12, help="timed steps of the real loop")
    p.add_argument("--repeats", type=int, default=5, help="repeats of the interleaved comparison")
    p.add_argument("--steps-per-repeat", type=int, default=2, help="steps per variant per repeat")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--queue", type=int, default=65536)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        if not args.data:
            args.data = str(make_corpus(Path(tmp) / "audio"))
        cfg, device, dataset, variants = build(args)
        print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}; device {device}; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; batch {args.batch}; queue {args.queue}; "
              f"encoder d={cfg.encoder.d}, channels={cfg.encoder.channels}; {len(dataset)} files")
        pipe = pipeline(args, dataset, variants[0], device)
        rounds = interleaved(args, dataset, variants, device)
        from pretrain.data import make_loader
        from pretrain.train import two_views

        loader = iter(make_loader(dataset, args.batch, 0, seed=2))
        views = []
        for _ in range(args.steps_per_repeat):
            wave = next(loader).wave.to(device)
            with torch.no_grad():
                x = variants[0].frontend(wave.flatten(0, 1)).unflatten(0, wave.shape[:2])
            views.append(two_views(x, variants[0].augment))
        layouts = layout_comparison(args, cfg, device, views)

    # ---------------------------------------------------------------- 1. pipeline
    n = args.pipeline_steps
    total = sum(sum(v) for v in pipe.values())
    print(f"\n1. SLICER step fed by the loader ({args.workers} workers), {n} timed steps: "
          f"{n * args.batch / total:.1f} clips/s, {1000 * total / n:.0f} ms/step")
    print(f"   {'phase':24s} {'ms/step':>9s} {'share':>7s}")
    for k in PHASES:
        print(f"   {k:24s} {1000 * sum(pipe[k]) / n:9.1f} {100 * sum(pipe[k]) / total:6.1f} %")
    wait_share = sum(pipe["loader wait"]) / total
    print(f"   loader wait: {100 * wait_share:.1f} % of the step (target < 10 %: "
          f"{'met' if wait_share < 0.10 else 'MISSED'})")

    # ---------------------------------------------------------------- 2. interleaved
    steps = args.steps_per_repeat
    names = [v.name for v in variants]
    print(f"\n2. Interleaved, same batches: {args.repeats} repeats x {steps} steps per variant "
          f"(median over repeats, ms/step)")
    print(f"   {'phase':24s}" + "".join(f" {nm:>20s}" for nm in names))
    for k in PHASES[1:]:
        print(f"   {k:24s}" + "".join(
            f" {1000 * statistics.median(r[nm][k] for r in rounds) / steps:20.1f}" for nm in names))
    step_sums = {nm: [sum(r[nm].values()) for r in rounds] for nm in names}
    print(f"   {'whole step':24s}" + "".join(
        f" {1000 * statistics.median(step_sums[nm]) / steps:20.1f}" for nm in names))
    print(f"   {'clips/s':24s}" + "".join(
        f" {args.batch * steps / statistics.median(step_sums[nm]):20.1f}" for nm in names))
    for ref in names[1:]:
        ratios = [s / m for s, m in zip(step_sums["SLICER"], step_sums[ref])]
        print(f"   SLICER / {ref}: median {statistics.median(ratios):.2f} "
              f"(repeats: {', '.join(f'{x:.2f}' for x in ratios)})")
    ratio = statistics.median(s / m for s, m in zip(step_sums["SLICER"], step_sums["MoCo"]))
    print(f"   SLICER machinery over MoCo: +{100 * (ratio - 1):.0f} % (target <= +30 %: "
          f"{'met' if ratio <= 1.30 else 'MISSED'})")
    extra = {k: statistics.median(r["SLICER"][k] - r["MoCo"][k] for r in rounds) / steps for k in PHASES[1:]}
    print("   where SLICER's extra time goes (median ms/step, SLICER - MoCo): " + ", ".join(
        f"{k} {1000 * v:+.1f}" for k, v in extra.items()))

    # ---------------------------------------------------------------- 3. layout and precision
    ref = "NCHW fp32 (before)"
    print(f"\n3. Layout and precision, SLICER model step (forward to EMA/queue), same batches, interleaved, "
          f"{args.repeats} x {steps} steps each")
    print(f"   {'step':24s} {'wall ms':>9s} {'CPU ms':>9s} {'x wall':>8s} {'x CPU':>8s}")
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in layouts.items()}
    for name, m in med.items():
        print(f"   {name:24s} {1000 * m['wall']:9.0f} {1000 * m['cpu']:9.0f} "
              f"{med[ref]['wall'] / m['wall']:8.2f} {med[ref]['cpu'] / m['cpu']:8.2f}")
    best = max(med[ref]["cpu"] / m["cpu"] for m in med.values())
    print(f"   fastest step over the NCHW step: {best:.2f}x CPU time (target >= 1.5x: {'met' if best >= 1.5 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
