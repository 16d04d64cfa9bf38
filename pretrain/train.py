"""The pretraining loop: config -> init -> data -> statistics -> model -> optimiser -> loop.

Legend: B per-process batch, V crops per clip (1 or 2), N samples per crop, F mel bins, T frames.

One step: waveforms (B, V, N) from the loader -> normalised log-mel x (B, V, F, T) on the
device -> two augmented views (`two_views`: both from the one crop, or one per crop when the
objective sets `views_from_separate_crops`, e.g. COLA) -> objective loss -> backward, clip,
optimiser step ->
`objective.after_step` (EMA teacher, queue) -> logs and, every N steps, a checkpoint
(hear_slicer.checkpoint format, written atomically, last K kept) whose `training_state`
holds everything needed to resume exactly: objective state (student, teacher, heads,
queue), augmentation memories, optimiser, GradScaler (fp16), RNG states, step, data position,
statistics, skipped files; under DDP, each other process's memories and BatchNorm
statistics go next to it (`pretrain.rank_state`).

Launched by `python -m pretrain` (one process) or `torchrun --nproc_per_node=P -m pretrain`
(DDP: gloo on CPU, NCCL on CUDA; only rank 0 writes).

The output folder belongs to one run: a fresh run refuses a folder that holds another run's
files (`overwrite=True` deletes them first), and a resumed run refuses config changes that
would mix state (`pretrain.config.RESUMABLE_KEYS` lists those it accepts; they are logged).
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from hear_slicer.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from hear_slicer.frontend import LogMelFrontend

from .augment import AugmentPipeline
from .config import RESUMABLE_KEYS, ConfigError, TrainConfig, config_changes, config_from_dict
from .data import AudioCrops, DatasetError, find_audio_files, make_loader, scan_files
from .distributed import DistContext, all_reduce_mean, init_distributed, shutdown_distributed, sync_batchnorm
from .objectives import objective_class
from .optim import build_optimizer, lr_at
from .rank_state import load_rank_state, prune_rank_states, rank_state_path, save_rank_state
from .precision import PrecisionError, autocast, autocast_dtype, make_grad_scaler
from .rng import capture_rng, restore_rng, seed_everything
from .runlog import RunLog, git_revision, plot_loss_curve
from .store import StoreCrops, is_store
from .stats import DataStats, compute_stats, load_or_compute_stats

__all__ = ["TrainingDiverged", "RunFolderError", "train", "two_views", "latest_checkpoint", "config_of_checkpoint",
           "RUN_FILES"]

#: What a run writes in its folder (besides `rank*_final.pt`); `overwrite=True` deletes these.
RUN_FILES = ("checkpoints", "run.log", "log.csv", "loss.png", "stats.pt")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the run stopped without overwriting good checkpoints."""


class RunFolderError(ValueError):
    """The output folder holds another run; the message says how to proceed."""


def _run_files(out: Path) -> list[Path]:
    """The files and folders of a run present in `out`."""
    return [out / n for n in RUN_FILES if (out / n).exists()] + sorted(out.glob("rank*_final.pt"))


def _claim_run_folder(out: Path, resume: Path | None, overwrite: bool) -> None:
    """Refuse `out` when it holds another run; with `overwrite`, delete that run's files (main process only)."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"run.out {out} exists and is not a folder")
    present = _run_files(out) if out.is_dir() else []
    if not present:
        return
    if resume is not None and Path(resume).resolve().parent == (out / "checkpoints").resolve():
        if overwrite:
            raise RunFolderError(f"--overwrite would delete {out}, which holds the checkpoint {resume} being resumed")
        newer = [p.name for p in sorted((out / "checkpoints").glob("step_*.pt")) if p.name > Path(resume).name]
        if newer:
            raise RunFolderError(f"{resume} is not the newest checkpoint of {out} (newer: {', '.join(newer)}); "
                                 "resuming it there would mix two continuations of the run. Resume the newest, "
                                 "or resume into another --out.")
        return  # continuing this folder's own run
    if not overwrite:
        what = "resume into" if resume is not None else "start a new run in"
        raise RunFolderError(
            f"cannot {what} {out}: it holds another run ({', '.join(p.name for p in present)}). "
            f"Resume that run with --resume {out}, choose another --out, or pass --overwrite to delete it.")
    for p in present:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def _check_resume_config(cfg: TrainConfig, stored: dict, resume: Path) -> list[str]:
    """The accepted changes from the checkpoint's config to `cfg`; refused ones raise ConfigError."""
    accepted, refused = config_changes(config_from_dict(stored), cfg)
    if refused:
        raise ConfigError(
            f"cannot resume {resume} with these changes, they would mix the saved state with new settings: "
            f"{'; '.join(refused)}. A resumed run may change only {', '.join(RESUMABLE_KEYS)}; "
            "start a new run (another --out) to change the others.")
    return accepted


def latest_checkpoint(out: str | Path) -> Path:
    """The newest `step_*.pt` in `out/checkpoints`."""
    found = sorted((Path(out) / "checkpoints").glob("step_*.pt"))
    if not found:
        raise FileNotFoundError(f"no checkpoint to resume from in {Path(out) / 'checkpoints'}")
    return found[-1]


def two_views(x: torch.Tensor, augment: AugmentPipeline) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's two views and the augmentation memories' update.

    x: (B, V, F, T) normalised log-mels of V crops per clip. view_a augments crop 0 and
    view_b the last crop: two augmentations of one crop when V = 1, of two independent
    crops of the same file when V = 2. Then crop 0 of every clip (B, F, T) is pushed into
    the mixup/k-mix memories, so memories advance the same way for every objective.
    Returns (view_a, view_b), (B, F, T) each.
    """
    with torch.no_grad():
        view_a, view_b = augment(x[:, 0]), augment(x[:, -1])
        augment.remember(x[:, 0])
    return view_a, view_b


def config_of_checkpoint(path: str | Path) -> TrainConfig:
    """The typed config a checkpoint was trained with."""
    return config_from_dict(load_checkpoint(path).train_config)


def _resolve_device(name: str, ctx: DistContext) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("run.device asks for CUDA but torch sees no GPU; use run.device=cpu")
        if device.index is None:
            device = torch.device("cuda", ctx.local_rank)
    return device


def _broadcast_object(obj, ctx: DistContext):
    """Rank 0's `obj` on every process."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather_objects(obj, ctx: DistContext) -> list:
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def train(cfg: TrainConfig, resume: str | Path | None = None, overwrite: bool = False) -> Path:
    """Run (or resume) pretraining as configured; returns the last checkpoint written.

    `overwrite`: delete another run's files in `cfg.run.out` first (else that is an error).
    """
    # ------------------------------------------------------------------ init
    probe = torch.device("cuda" if (cfg.run.device == "auto" and torch.cuda.is_available())
                         or cfg.run.device.startswith("cuda") else "cpu")
    ctx = init_distributed(probe.type)
    try:
        return _train(cfg, resume, ctx, overwrite)
    finally:
        shutdown_distributed(ctx)


def _train(cfg: TrainConfig, resume: str | Path | None, ctx: DistContext, overwrite: bool = False) -> Path:
    device = _resolve_device(cfg.run.device, ctx)
    if cfg.run.sync_batchnorm and ctx.enabled and device.type != "cuda":
        raise ValueError(f"run.sync_batchnorm=true needs CUDA devices (torch's SyncBatchNorm runs only on GPUs), "
                         f"this run is on {device}; set run.sync_batchnorm=false")
    try:
        amp_dtype = autocast_dtype(cfg.run.precision, device)  # None: float32; checked before any work
    except PrecisionError as e:
        raise ConfigError(str(e)) from e
    out = Path(cfg.run.out)
    accepted: list[str] = []
    state = None
    if resume:
        ckpt = load_checkpoint(resume)
        state = ckpt.training_state
        if not state:
            raise CheckpointError(f"{resume} holds no training state (an exported model?); it cannot be resumed")
        accepted = _check_resume_config(cfg, ckpt.train_config, Path(resume))
    problem = None  # decided by the main process alone: the others would see the files it creates
    if ctx.is_main:
        try:
            _claim_run_folder(out, Path(resume) if resume else None, overwrite)
        except RunFolderError as e:
            problem = str(e)
    problem = _broadcast_object(problem, ctx)
    if problem:
        raise RunFolderError(problem)
    log = RunLog(out, enabled=ctx.is_main)
    if state:
        log.drop_rows_after(int(state["step"]))  # rows logged after the checkpoint, before a kill
    seed_everything(cfg.run.seed)  # same model init on every process
    revision = git_revision()
    log.text(f"pretrain: objective {cfg.objective.name}, code revision {revision}, {ctx.world_size} process(es), "
             f"device {device}" + (f", resuming {resume} at step {state['step']}" if state else ""))
    log.text("config:\n" + cfg.dump())
    if accepted:
        log.text("changes accepted on resume:\n" + "\n".join(f"  {line}" for line in accepted))

    # ------------------------------------------------------------------ data
    skipped: dict[str, str] = dict(state["skipped"]) if state else {}
    crop_samples = round(cfg.data.crop_seconds * cfg.frontend.sample_rate)
    n_frames = cfg.frontend.num_frames(crop_samples)
    crops_per_item = 2 if objective_class(cfg.objective.name).views_from_separate_crops else 1
    if is_store(cfg.data.path):  # prepared by `python -m pretrain.prepare`: no scan, no decoding
        dataset = StoreCrops(cfg.data.path, cfg.frontend.sample_rate, crop_samples, cfg.data.silence_peak,
                             crops_per_item)
        files = dataset.files
    else:
        if ctx.is_main:
            files = find_audio_files(cfg.data.path, cfg.data.extensions)
            if cfg.data.scan_headers:
                files, bad = scan_files(files, cfg.data.scan_workers, out / "header_scan.csv", cfg.run.progress)
                skipped.update(bad)
            if not files:
                raise DatasetError(f"no usable audio under {cfg.data.path}: all {len(skipped)} files were skipped "
                                   f"(first: {list(skipped.items())[:3]})")
        files = _broadcast_object(files if ctx.is_main else None, ctx)
        dataset = AudioCrops(files, cfg.frontend.sample_rate, crop_samples, cfg.data.silence_peak, crops_per_item,
                             cfg.data.max_peak)
    log.text(f"data: {len(files)} files from {cfg.data.path}, crops of {crop_samples} samples ({n_frames} frames)"
             + (", views from two independent crops per file" if crops_per_item == 2 else ""))

    # ------------------------------------------------------------------ statistics
    n_centroids = cfg.augment.kmix.k if cfg.augment.kmix.enabled else 0
    if state:
        stats = DataStats.from_dict(state["stats"])
    elif ctx.is_main:
        s = cfg.stats
        settings = dict(vars(s), k=n_centroids, seed=cfg.run.seed, crop_samples=crop_samples,
                        silence_peak=cfg.data.silence_peak, max_peak=cfg.data.max_peak)
        stats, cached = load_or_compute_stats(out / "stats.pt", files, cfg.frontend, settings, lambda: compute_stats(
            dataset, cfg.frontend, n_centroids, s.fraction, s.min_files, s.max_files, s.kmeans_iters, s.kmeans_init,
            cfg.run.seed, device))
        skipped.update(dict(stats.skipped))
        log.text(f"stats ({'cached' if cached else 'computed'} on {stats.n_files} files): log-mel mean "
                 f"{stats.mean:.4f}, std {stats.std:.4f}" + (f", {n_centroids} k-mix centroids" if n_centroids else ""))
    stats = _broadcast_object(stats if ctx.is_main or state else None, ctx)

    # ------------------------------------------------------------------ model
    frontend = LogMelFrontend(cfg.frontend, stats.mean, stats.std).to(device)
    objective = objective_class(cfg.objective.name)(cfg.encoder, cfg.objective.params, ctx).to(device)
    augment = AugmentPipeline(cfg.augment, cfg.frontend.n_mels, n_frames).to(device)
    if augment.kmix is not None:
        augment.kmix.set_centroids(stats.centroids)
    n_params = sum(p.numel() for p in objective.encoder_for_export().parameters())
    log.text(f"model: {type(objective).__name__}, encoder {n_params / 1e6:.2f} M parameters")

    # ------------------------------------------------------------------ optimiser
    params = objective.trainable_parameters()
    optimizer = build_optimizer(params, cfg.optim)
    scaler = make_grad_scaler(device, amp_dtype)  # enabled for float16 only
    log.text(f"precision: {cfg.run.precision} -> " + (f"autocast {str(amp_dtype).removeprefix('torch.')} on "
             f"{device.type}" if amp_dtype is not None else "float32") + ("; GradScaler" if scaler.is_enabled() else "")
             + "; losses and queue in float32")

    step = 0
    if state:
        objective.load_state_dict(state["objective"])
        augment.load_state_dict(state["augment"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler.is_enabled() and not state["scaler"]:  # written by a run without fp16
            log.text("GradScaler: the checkpoint has no scaler state (written without fp16); starting a fresh one")
        else:
            scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        rng = state["rng"]
        restore_rng(rng[ctx.rank] if ctx.rank < len(rng) else rng[0])
        own = ctx.rank == 0 or load_rank_state(Path(resume), ctx.rank, augment, objective)
        missing = [r for r, found in enumerate(_gather_objects(own, ctx)) if not found]
        if missing:
            log.text(f"no saved state for process(es) {missing} in {rank_state_path(resume, 0).parent}: they start "
                     "from rank 0's augmentation memories and BatchNorm statistics (the resume is not bit-exact)")
    else:
        seed_everything(cfg.run.seed + 1000 * ctx.rank)  # different augmentations per process
    model = objective
    if ctx.enabled and cfg.run.sync_batchnorm:
        objective = sync_batchnorm(objective)
        log.text("BatchNorm: synchronised across processes (run.sync_batchnorm)")
    if ctx.enabled:
        model = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None,
                                        broadcast_buffers=False)

    def checkpoint(step: int) -> Path:
        """Write a checkpoint at `step` (collective: every process takes part)."""
        path = out / "checkpoints" / f"step_{step:08d}.pt"
        if ctx.rank > 0:  # before rank 0 writes the checkpoint: the gathers below wait for it
            save_rank_state(path, ctx.rank, augment, objective)
        rngs = _gather_objects(capture_rng(), ctx)
        all_skipped = {k: v for part in _gather_objects(skipped, ctx) for k, v in part.items()}
        if ctx.is_main:
            teacher = objective.teacher_for_export()
            ckpt = Checkpoint(
                frontend=cfg.frontend, encoder=cfg.encoder, norm_mean=stats.mean, norm_std=stats.std,
                student=objective.encoder_for_export().state_dict(),
                teacher=teacher.state_dict() if teacher is not None else None,
                use=objective.export_use, train_config=cfg.to_dict(),
                provenance={"objective": cfg.objective.name, "data": str(cfg.data.path), "files": len(files),
                            "skipped_files": len(all_skipped), "steps": step, "processes": ctx.world_size,
                            "code_revision": revision, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                training_state={
                    "step": step, "objective": objective.state_dict(), "augment": augment.state_dict(),
                    "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rngs,
                    "stats": stats.to_dict(), "skipped": [list(kv) for kv in all_skipped.items()],
                    "data_position": step * cfg.data.batch_size,
                },
            )
            save_checkpoint(ckpt, path)
            # keep the newest keep_last - 1 others besides the one just written (never that one),
            # and every checkpoint of run.keep_steps
            kept = {f"step_{s:08d}.pt" for s in cfg.run.keep_steps}
            others = sorted(p for p in (out / "checkpoints").glob("step_*.pt") if p != path and p.name not in kept)
            for old in others[:max(0, len(others) - (cfg.run.keep_last - 1))]:
                old.unlink()
                prune_rank_states(old)
            log.text(f"checkpoint: {path}")
        return path

    # ------------------------------------------------------------------ loop
    loader = make_loader(dataset, cfg.data.batch_size, cfg.data.num_workers, ctx.rank, ctx.world_size,
                         cfg.run.seed, start=step * cfg.data.batch_size)
    batches = iter(loader)
    total = cfg.run.steps
    bar = tqdm(total=total, initial=step, disable=not (ctx.is_main and cfg.run.progress), dynamic_ncols=True)
    last_path = latest_checkpoint(out) if (out / "checkpoints").is_dir() and any(
        (out / "checkpoints").glob("step_*.pt")) else None
    t_window, clips_window = time.perf_counter(), 0
    objective.train()
    while step < total:
        batch = next(batches)
        for path, reason in batch.skipped:
            if path not in skipped:
                skipped[path] = reason
                log.text(f"skipped {path}: {reason}")
        lr = lr_at(step, cfg.optim, total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        wave = batch.wave.to(device, non_blocking=True)  # (B, V, N)
        with torch.no_grad():
            x = frontend(wave.flatten(0, 1)).unflatten(0, wave.shape[:2])  # (B, V, F, T) normalised log-mel
        view_a, view_b = two_views(x, augment)  # (B, F, T) each
        with autocast(device, amp_dtype):
            out_step = model(view_a, view_b)
        loss = out_step.loss
        finite = all_reduce_mean(torch.isfinite(loss.detach()).float(), ctx)
        if finite.item() < 1.0:
            message = (f"loss became {loss.item()} at step {step + 1}; stopping. The last good checkpoint is "
                       f"{last_path or 'none (no checkpoint was written yet)'}. Lower optim.lr, raise "
                       "optim.warmup_steps, or set run.precision=fp32, then resume from it.")
            log.text(message)
            raise TrainingDiverged(message)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf)
        scaler.step(optimizer)
        scaler.update()
        objective.after_step(step + 1, total)
        step += 1
        clips_window += cfg.data.batch_size * ctx.world_size
        bar.update(1)

        if step % cfg.run.log_every == 0 or step == total:
            elapsed = time.perf_counter() - t_window
            row = {"step": step, "lr": lr, "loss": float(all_reduce_mean(loss.detach().float(), ctx))}
            row.update({k: float(all_reduce_mean(v.float(), ctx)) for k, v in out_step.metrics.items()})
            row.update({"grad_norm": float(grad_norm), "clips_per_s": clips_window / max(elapsed, 1e-9)})
            log.row(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", clips_s=f"{row['clips_per_s']:.1f}")
            t_window, clips_window = time.perf_counter(), 0
        if step % cfg.run.checkpoint_every == 0 or step == total:
            last_path = checkpoint(step)
    bar.close()

    # ------------------------------------------------------------------ end
    all_skipped = {k: v for part in _gather_objects(skipped, ctx) for k, v in part.items()}
    if all_skipped:
        log.text(f"{len(all_skipped)} file(s) skipped in total:\n" + "\n".join(
            f"  {p}: {r}" for p, r in sorted(all_skipped.items())))
    if cfg.run.save_rank_states:
        out.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.cpu() for k, v in objective.state_dict().items()}, out / f"rank{ctx.rank}_final.pt")
    if ctx.is_main:
        try:
            if plot_loss_curve(out / "log.csv", out / "loss.png"):
                log.text(f"loss curve: {out / 'loss.png'}")
        except OSError as e:  # the checkpoints are written; a missing plot does not fail the run
            log.text(f"could not draw the loss curve {out / 'loss.png'}: {e}")
    if last_path is None:
        raise RuntimeError(f"run.steps={total} but the run was already at step {step}; nothing was trained")
    log.text(f"done: {step} steps; model for hear_slicer.load_model: {last_path}")
    return last_path
