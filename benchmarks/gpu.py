"""Everything to measure on a lent CUDA machine, in one command that prints and writes JSON.

    python benchmarks/gpu.py                                   # on a CUDA machine
    python benchmarks/gpu.py --store /data/prepared --steps 30 # data from `python -m pretrain.prepare`
    python benchmarks/gpu.py --device cpu --steps 3            # CPU dry run (tiny sizes): checks the script

Legend: B batch, V crops per clip, N samples per crop, F mel bins, T frames.

1. Pretraining throughput, fp32 and bf16 autocast (`pretrain.precision`): the SLICER training
   step as `pretrain.train` runs it (frontend, two views with mixup / random resize crop /
   k-mix, forward, backward, clipping, AdamW, EMA teacher and queue) and a plain two-view MoCo
   step (`benchmarks/pretrain.py`'s TwoViewMoCo: encoder + instance head, EMA teacher, queue of
   65,536, mixup and random resize crop), batch 256 of 0.95 s crops. Per variant: clips/s over
   the timed steps, peak GPU memory (torch.cuda.max_memory_allocated), and GPU busy %:
   NVML's utilisation sampled every 20 ms during the timed steps when `torch.cuda.utilization()`
   works (needs the nvidia-ml-py wheel), else the share of wall time covered by CUDA kernels in
   a torch.profiler trace of a few extra steps; the JSON says which.
   Data: with --store, the prepared store (`pretrain.store.StoreCrops`) or a folder of audio
   files (`pretrain.data.AudioCrops`) through the trainer's loader (`--workers` processes);
   without it, random audio held in (pinned) host memory and copied to the GPU each step, so
   the figures are the GPU's, not a disk's. Normalisation and k-mix centroids come from the
   first batch (they change what is computed, not how much).
2. Embedding (hear_slicer, fp32 as the plugin runs): x real time of scene and timestamp
   embeddings of 10 s clips in batches of --embed-batch, and peak GPU memory of one 20-minute
   clip (HEAR asks for <= 16 GB).
3. The tests marked `cuda` (`pytest -m cuda` on the files that hold them): their summary line.

Imports only torch, numpy, nnAudio, soundfile, soxr, pyyaml, tqdm and this repository's
`hear_slicer` and `pretrain` (never TensorFlow or heareval); a missing package is named with the
command that installs it. The CPU dry run shrinks every size (encoder, batch, queue, clip
length): its figures check the script, they measure nothing.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = {"torch": "torch", "numpy": "numpy", "scipy": "scipy", "nnAudio": "nnAudio", "yaml": "pyyaml",
        "soundfile": "soundfile", "soxr": "soxr", "tqdm": "tqdm"}
FOR_TESTS = {"pytest": "pytest", "sklearn": "scikit-learn", "pandas": "pandas", "matplotlib": "matplotlib",
             "intervaltree": "intervaltree"}
INSTALL = "pip install --no-index --find-links wheels -r requirements/gpu.txt   (see benchmarks/gpu_check.sh)"
SR = 16000


def missing(modules: dict[str, str]) -> list[str]:
    """pip names of the modules that cannot be imported."""
    return [pip for mod, pip in modules.items() if importlib.util.find_spec(mod) is None]


# ----------------------------------------------------------------------------- GPU busy
class NvmlBusy:
    """Mean NVML utilisation (% of time a kernel ran) sampled every `period` s on a thread."""

    def __init__(self, device, period: float = 0.02):
        import torch

        self.device, self.period, self.samples = device, period, []
        torch.cuda.utilization(device)  # raises when NVML (pynvml) is missing
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import torch

        while not self._stop.is_set():
            self.samples.append(torch.cuda.utilization(self.device))
            time.sleep(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def percent(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def kernel_busy_percent(run_steps, n_steps: int) -> float:
    """Share of wall time covered by CUDA kernels (union of their intervals) over `n_steps`
    steps traced by torch.profiler."""
    import torch
    from torch.profiler import DeviceType, ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        run_steps(n_steps)
        torch.cuda.synchronize()
        wall_us = (time.perf_counter() - t0) * 1e6
    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                   if e.device_type == DeviceType.CUDA and e.time_range.end > e.time_range.start)
    covered, end = 0.0, -math.inf
    for s, e in spans:  # union of kernel intervals (streams may overlap)
        if e > end:
            covered += e - max(s, end)
            end = e
    return 100.0 * min(1.0, covered / wall_us)


# ----------------------------------------------------------------------------- pretraining
def load_twoview_moco():
    """`TwoViewMoCo` from benchmarks/pretrain.py (the file's name shadows the package)."""
    spec = importlib.util.spec_from_file_location("bench_pretrain", REPO / "benchmarks" / "pretrain.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.TwoViewMoCo


class Source:
    """Waveform batches (B, 1, N) on the device: a loader over --store, or random audio in host memory."""

    def __init__(self, args, cfg, crop: int, device):
        import torch

        self.device, self.batch = device, args.batch
        if args.store:
            from pretrain.data import AudioCrops, find_audio_files, make_loader

            store = Path(args.store)
            try:
                from pretrain.store import StoreCrops, is_store
            except ImportError:  # a checkout without `python -m pretrain.prepare`
                StoreCrops, is_store = None, (lambda p: False)
            if is_store(store):
                dataset = StoreCrops(store, cfg.frontend.sample_rate, crop)
                self.kind = f"prepared store {store} ({len(dataset)} clips)"
            elif store.exists():
                dataset = AudioCrops(find_audio_files(store), cfg.frontend.sample_rate, crop)
                self.kind = f"audio files under {store} ({len(dataset)} files, decoded by the loader)"
            else:
                raise SystemExit(f"error: --store {store} does not exist")
            self.kind += f", {args.workers} loader workers"
            self._batches = iter(make_loader(dataset, args.batch, args.workers, seed=0))
            self._pool = None
        else:
            g = torch.Generator().manual_seed(0)
            pool = (torch.rand(max(4 * args.batch, 64), crop, generator=g) * 2 - 1) * 0.3  # (P, N)
            self._pool = pool.pin_memory() if device.type == "cuda" else pool
            self._g = torch.Generator().manual_seed(1)
            self.kind = (f"random audio in host memory ({self._pool.shape[0]} crops, uniform noise), copied to "
                         f"{device.type} each step; no --store given")

    def next(self):
        import torch

        if self._pool is None:
            return next(self._batches).wave.to(self.device, non_blocking=True)  # (B, 1, N)
        idx = torch.randint(self._pool.shape[0], (self.batch,), generator=self._g)
        return self._pool[idx].unsqueeze(1).to(self.device, non_blocking=True)  # (B, 1, N)


def pretraining(args, device, dry: bool) -> dict:
    import torch

    from hear_slicer.frontend import LogMelFrontend
    from pretrain.augment import AugmentPipeline, clip_descriptor
    from pretrain.config import load_config
    from pretrain.objectives.slicer import Slicer
    from pretrain.precision import autocast, autocast_dtype
    from pretrain.train import two_views

    sizes = [f"data.batch_size={args.batch}", f"objective.params.queue_size={args.queue}"]
    if dry:
        sizes += ["encoder.channels=8", "encoder.d=64", "objective.params.instance_dim=16",
                  "objective.params.n_clusters=8", "augment.mixup.memory=16", "augment.kmix.memory=16",
                  "augment.kmix.r=4"]
    cfg = load_config(REPO / "pretrain/configs/slicer.yaml", sizes)
    crop = round(cfg.data.crop_seconds * cfg.frontend.sample_rate)
    n_frames = cfg.frontend.num_frames(crop)
    source = Source(args, cfg, crop, device)
    first = source.next()  # (B, 1, N)
    with torch.no_grad():
        log_mel = LogMelFrontend(cfg.frontend).to(device).log_mel(first[:, 0])  # (B, F, T)
    mean, std = float(log_mel.mean()), float(log_mel.std())
    frontend = LogMelFrontend(cfg.frontend, mean, std).to(device)
    k = cfg.augment.kmix.k
    centroids = clip_descriptor((log_mel[:k] - mean) / std)  # (k, F): k clips of the first batch
    TwoViewMoCo = load_twoview_moco()
    p = cfg.objective.params

    def augment(kmix: bool) -> AugmentPipeline:
        a = cfg.augment
        a = type(a)(mixup=a.mixup, rrc=a.rrc, kmix=type(a.kmix)(**{**vars(a.kmix), "enabled": kmix}))
        pipe = AugmentPipeline(a, cfg.frontend.n_mels, n_frames).to(device)
        if pipe.kmix is not None:
            pipe.kmix.set_centroids(centroids)
        return pipe

    results = {"data": source.kind, "batch": args.batch, "crop_seconds": cfg.data.crop_seconds,
               "queue": args.queue, "encoder": {"channels": cfg.encoder.channels, "d": cfg.encoder.d},
               "steps": args.steps, "warmup_steps": args.warmup, "runs": []}
    print(f"\n1. Pretraining, batch {args.batch} x {cfg.data.crop_seconds} s crops, queue {args.queue}; data: "
          f"{source.kind}")
    print(f"   {'variant':8s} {'precision':9s} {'clips/s':>9s} {'ms/step':>8s} {'GPU busy %':>10s} "
          f"{'peak GiB':>9s}  busy measured by")
    for precision in ("fp32", "bf16"):
        dtype = autocast_dtype(precision, device)
        for name in ("SLICER", "MoCo"):
            torch.manual_seed(0)
            if name == "SLICER":
                model, aug = Slicer(cfg.encoder, p).to(device), augment(True)
            else:
                model = TwoViewMoCo(cfg.encoder, p.instance_dim, p.queue_size, p.instance_temperature,
                                    p.momentum).to(device)
                aug = augment(False)
            params = [q for q in model.parameters() if q.requires_grad]
            opt = torch.optim.AdamW(params, lr=3e-4)
            state = {"step": 0, "loss": None}

            def run_steps(n: int) -> None:
                for _ in range(n):
                    wave = source.next()
                    with torch.no_grad():
                        x = frontend(wave.flatten(0, 1)).unflatten(0, wave.shape[:2])  # (B, 1, F, T)
                    view_a, view_b = two_views(x, aug)  # (B, F, T) each
                    with autocast(device, dtype):
                        out = model(view_a, view_b)
                    loss = out if isinstance(out, torch.Tensor) else out.loss
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 3.0)
                    opt.step()
                    state["step"] += 1
                    model.after_step(state["step"], 10**6)
                    state["loss"] = loss

            def sync() -> None:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)

            run_steps(args.warmup)
            sync()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            busy, busy_how = None, "not measured on CPU"
            meter = None
            if device.type == "cuda":
                try:
                    meter = NvmlBusy(device)
                except Exception as e:  # noqa: BLE001 - NVML missing or unsupported: fall back below
                    busy_how = f"torch.profiler kernel time (NVML unavailable: {type(e).__name__})"
            t0 = time.perf_counter()
            if meter is not None:
                with meter:
                    run_steps(args.steps)
                    sync()
                busy, busy_how = meter.percent, "NVML utilisation (torch.cuda.utilization), 20 ms samples"
            else:
                run_steps(args.steps)
                sync()
            seconds = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            if device.type == "cuda" and meter is None:
                try:
                    busy = kernel_busy_percent(run_steps, max(2, min(5, args.steps)))
                except Exception as e:  # noqa: BLE001 - report, do not invent
                    busy_how = f"unavailable: {type(e).__name__}: {e}"
            final_loss = float(state["loss"].detach().float())
            row = {"variant": name, "precision": precision, "clips_per_s": args.steps * args.batch / seconds,
                   "ms_per_step": 1000 * seconds / args.steps, "gpu_busy_percent": busy, "busy_measured_by": busy_how,
                   "peak_gpu_memory_gib": peak, "final_loss": final_loss, "loss_finite": math.isfinite(final_loss)}
            results["runs"].append(row)
            print(f"   {name:8s} {precision:9s} {row['clips_per_s']:9.1f} {row['ms_per_step']:8.1f} "
                  f"{'-' if busy is None else f'{busy:.0f}':>10s} {'-' if peak is None else f'{peak:.2f}':>9s}  "
                  f"{busy_how}")
            del model, opt, aug
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return results


# ----------------------------------------------------------------------------- embedding
def embedding(args, device, dry: bool) -> dict:
    import torch

    import hear_slicer

    model = hear_slicer.load_model(args.checkpoint).to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    clip_s = 2.0 if dry else 10.0
    batch = args.embed_batch
    audio = ((torch.rand(batch, int(clip_s * SR), generator=g) * 2 - 1) * 0.3).to(device)  # (n, N)
    out = {"checkpoint": model.checkpoint_path or "random init", "clip_seconds": clip_s, "clips_per_call": batch,
           "precision": "fp32"}
    print(f"\n2. Embedding with hear_slicer ({out['checkpoint']}), fp32")
    for kind, fn in (("scene", hear_slicer.get_scene_embeddings), ("timestamp", hear_slicer.get_timestamp_embeddings)):
        fn(audio, model)  # warm-up
        sync()
        times = []
        for _ in range(args.embed_repeats):
            t0 = time.perf_counter()
            fn(audio, model)
            sync()
            times.append(time.perf_counter() - t0)
        out[f"{kind}_x_real_time"] = batch * clip_s / statistics.median(times)
        print(f"   {kind:9s} {batch} x {clip_s:g} s clips: {out[f'{kind}_x_real_time']:.0f} x real time "
              f"(median of {args.embed_repeats})")
    long_s = 20.0 if dry else 1200.0
    long_audio = ((torch.rand(1, int(long_s * SR), generator=g) * 2 - 1) * 0.3).to(device)  # (1, N)
    out["long_clip_seconds"] = long_s
    for kind, fn in (("scene", hear_slicer.get_scene_embeddings), ("timestamp", hear_slicer.get_timestamp_embeddings)):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        fn(long_audio, model)
        sync()
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        out[f"long_{kind}_peak_gpu_memory_gib"] = peak
        out[f"long_{kind}_x_real_time"] = long_s / seconds
        print(f"   one {long_s / 60:g}-minute clip, {kind}: peak GPU memory "
              f"{'- (CPU)' if peak is None else f'{peak:.2f} GiB'}, {long_s / seconds:.0f} x real time")
    return out


# ----------------------------------------------------------------------------- cuda tests
def cuda_tests(timeout: int) -> dict:
    lacking = missing(FOR_TESTS)
    if lacking:
        print(f"\n3. cuda-marked tests: NOT RUN, missing {', '.join(lacking)} ({INSTALL})")
        return {"ran": False, "missing": lacking}
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                   if "pytest.mark.cuda" in p.read_text())
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"\n3. cuda-marked tests: TIMED OUT after {timeout} s")
        return {"ran": True, "command": " ".join(cmd), "timed_out": True}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else proc.stderr.strip()[-300:]
    print(f"\n3. cuda-marked tests ({' '.join(cmd[1:])}): exit {proc.returncode}, {summary}")
    if proc.returncode not in (0, 5):  # 5: nothing selected
        print("\n".join(proc.stdout.splitlines()[-40:]))
    return {"ran": True, "command": " ".join(cmd), "files": files, "returncode": proc.returncode, "summary": summary,
            "seconds": time.perf_counter() - t0, "output_tail": proc.stdout[-4000:]}


# ----------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda; cpu is a dry run)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per variant and precision")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; 1 on CPU)")
    p.add_argument("--batch", type=int, default=None, help="training batch (default 256; 8 on CPU)")
    p.add_argument("--queue", type=int, default=None, help="key queue size (default 65536; 64 on CPU)")
    p.add_argument("--store", default=None, help="prepared store (python -m pretrain.prepare) or folder of audio; "
                                                  "default: random audio in host memory")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="loader workers with --store")
    p.add_argument("--checkpoint", default="", help="hear_slicer checkpoint (default: the packaged model)")
    p.add_argument("--embed-batch", type=int, default=None, help="10 s clips per embedding call (default 64; 4 on CPU)")
    p.add_argument("--embed-repeats", type=int, default=5)
    p.add_argument("--no-tests", action="store_true", help="skip the cuda-marked tests")
    p.add_argument("--tests-timeout", type=int, default=300, help="seconds for the cuda-marked tests")
    p.add_argument("--out", default=None, help="JSON file (default: results/gpu/gpu_<device>_<time>.json, new)")
    args = p.parse_args(argv)
    for name in ("steps", "embed_repeats", "workers", "tests_timeout"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("warmup", "batch", "queue", "embed_batch"):
        v = getattr(args, name)
        if v is not None and v < (0 if name == "warmup" else 1):
            p.error(f"--{name.replace('_', '-')} must be {'>= 0' if name == 'warmup' else '>= 1'}, got {v}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    lacking = missing(CORE)
    if lacking:
        print(f"error: missing Python package(s) {', '.join(lacking)}; install them with\n  {INSTALL}",
              file=sys.stderr)
        return 3
    sys.path.insert(0, str(REPO))
    import torch

    device = torch.device(args.device or "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: torch sees no CUDA GPU here; on a CPU machine run the dry mode: "
              "python benchmarks/gpu.py --device cpu --steps 3", file=sys.stderr)
        return 2
    if device.type not in ("cuda", "cpu"):
        print(f"error: --device {args.device}: use cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    dry = device.type == "cpu"
    args.batch = args.batch or (8 if dry else 256)
    args.queue = args.queue or (64 if dry else 65536)
    args.warmup = args.warmup if args.warmup is not None else (1 if dry else 3)
    args.embed_batch = args.embed_batch or (4 if dry else 64)
    if dry:
        args.embed_repeats = 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else REPO / "results" / "gpu" / f"gpu_{device.type}_{stamp}.json"
    if out.exists():
        print(f"error: {out} exists; it is another run's result: choose another --out", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    header = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "device": str(device), "device_name": name,
              "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
              "dry_run": dry, "command": " ".join([Path(sys.executable).name, *sys.argv])}
    print(f"{header['date']}; {name} ({device}); torch {torch.__version__}, CUDA {torch.version.cuda}; "
          f"Python {header['python']}" + ("\nCPU DRY RUN: tiny sizes, the figures check the script and measure "
                                         "nothing" if dry else ""))
    report = {**header, "pretraining": pretraining(args, device, dry), "embedding": embedding(args, device, dry)}
    report["cuda_tests"] = {"ran": False, "reason": "--no-tests"} if args.no_tests else cuda_tests(args.tests_timeout)
    report["imported_tensorflow_or_heareval"] = any(m in sys.modules for m in ("tensorflow", "heareval"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    failed = not all(r["loss_finite"] for r in report["pretraining"]["runs"]) or (
        report["cuda_tests"].get("ran") and report["cuda_tests"].get("returncode") not in (0, 5))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
