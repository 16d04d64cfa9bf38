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

The output folder belongs to one run, marked by `run.json`. Every file the run writes there
(checkpoints, rank files, run.log, log.csv, TensorBoard events, statistics, the header scan,
loss.png) goes through its record, `.hear-slicer-written.jsonl` (`hear_slicer.written`: name
and content hash of each version, written before the file appears), and the run deletes or
replaces only files that record proves it wrote, never by name: `overwrite=True` deletes the
previous run's files only when every file in the run's places (`RUN_FILES` at the top,
`checkpoints/`, `tensorboard/`, `rank*_final.pt`) is proven; anything else there (another
tool's `checkpoints/step_1000.pt`, a user's `log.csv`, `run.json` or copy of a checkpoint, a
file put into `tensorboard/`) is refused with one line naming it, nothing touched. Pruning
old checkpoints (`run.keep_last`) and removing a kill's temporary files touch only recorded
files. A fresh run refuses a folder that holds any of those files; a resumed run refuses
config changes that would mix state (`pretrain.config.RESUMABLE_KEYS` lists those it
accepts; they are logged). A run folder written before the record existed resumes (its logs
are adopted into the record, said in run.log) but is never deleted by `overwrite`.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hear_slicer.checkpoint import Checkpoint, CheckpointError, load_checkpoint, non_finite_entries, save_checkpoint
from hear_slicer.frontend import LogMelFrontend
from hear_slicer.progress import Progress
from hear_slicer.written import RECORD_NAME, ForeignFileError, WrittenFiles

from .augment import AugmentPipeline
from .config import RESUMABLE_KEYS, ConfigError, TrainConfig, config_changes, config_from_dict
from .data import AudioCrops, DatasetError, find_audio_files, make_loader, scan_files
from .distributed import DistContext, all_reduce_mean, init_distributed, shutdown_distributed, sync_batchnorm
from .errors import Diverged, UsageError
from .objectives import objective_class
from .optim import build_optimizer, lr_at
from .rank_state import load_rank_state, prune_rank_states, rank_state_path, save_rank_state
from .precision import PrecisionError, autocast, autocast_dtype, cpu_bf16_note, make_grad_scaler
from .rng import capture_rng, restore_rng, seed_everything
from .runlog import RunLog, git_revision, plot_loss_curve
from .store import StoreCrops, is_store
from .stats import DataStats, compute_stats, load_or_compute_stats

__all__ = ["TrainingDiverged", "RunFolderError", "train", "two_views", "latest_checkpoint", "config_of_checkpoint",
           "RUN_MARKER", "RUN_FILES"]

#: The marker a run writes first in its folder.
RUN_MARKER = "run.json"
#: The names a run writes at the top of its folder (besides `rank*_final.pt`): a file of one of these names
#: is in the way of a new run, and `overwrite=True` deletes it only when the run's record proves it ours.
RUN_FILES = (RUN_MARKER, "run.log", "log.csv", "loss.png", "stats.pt", "header_scan.csv")
#: The folders a run writes into; every file in them is in the way of a new run.
RUN_FOLDERS = ("checkpoints", "tensorboard")
#: A checkpoint's name, step_XXXXXXXX.pt (a user's step_best.pt is none).
CHECKPOINT_NAME = re.compile(r"step_\d{8}\.pt")


class TrainingDiverged(Diverged):
    """The loss or the training state became NaN or Inf; the run stopped without overwriting good checkpoints."""


class RunFolderError(UsageError):
    """The output folder holds another run, or files that are not a run's; the message says how to proceed."""


def _run_files(out: Path) -> list[Path]:
    """The files in the run's places in `out`, whoever wrote them: `RUN_FILES`, `rank*_final.pt`, and every
    file under `checkpoints/` and `tensorboard/` (links included, not followed)."""
    if not out.is_dir():
        return []
    top = [out / n for n in RUN_FILES if (out / n).exists() or (out / n).is_symlink()]
    top += sorted(p for p in out.glob("rank*_final.pt"))
    below = sorted(p for folder in RUN_FOLDERS for p in (out / folder).rglob("*") if not p.is_dir() or p.is_symlink())
    return top + below


def _checkpoints(out: Path) -> list[Path]:
    """The checkpoints in `out/checkpoints` (step_XXXXXXXX.pt), oldest first."""
    folder = out / "checkpoints"
    return sorted(p for p in folder.iterdir() if CHECKPOINT_NAME.fullmatch(p.name) and p.is_file()) \
        if folder.is_dir() else []


def _claim_run_folder(out: Path, resume: Path | None, overwrite: bool, written: WrittenFiles) -> list[str]:
    """Refuse `out` when it holds another run or files in a run's places; with `overwrite`, delete the
    previous run's files when its record proves every one of them (main process only) and return their
    paths relative to `out`. Nothing is deleted by name: one unproven file refuses the whole folder."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"run.out {out} exists and is not a folder")
    present = _run_files(out)
    if not present:
        return []
    if resume is not None and Path(resume).resolve().parent == (out / "checkpoints").resolve():
        if overwrite:
            raise RunFolderError(f"--overwrite would delete {out}, which holds the checkpoint {resume} being resumed")
        newer = [p.name for p in _checkpoints(out) if p.name > Path(resume).name]
        if newer:
            raise RunFolderError(f"{resume} is not the newest checkpoint of {out} (newer: {', '.join(newer)}); "
                                 "resuming it there would mix two continuations of the run. Resume the newest, "
                                 "or resume into another --out.")
        return []  # continuing this folder's own run
    names = [written.name(p) for p in present]
    if not overwrite:
        what = "resume into" if resume is not None else "start a new run in"
        theirs = "another run" if written.path.is_file() else "files a run writes"
        raise RunFolderError(
            f"cannot {what} {out}: it holds {theirs} ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}). "
            f"Resume that run with --resume {out}, choose another --out, or pass --overwrite to delete it (only "
            f"files the run's record {RECORD_NAME} proves it wrote are ever deleted).")
    removed = written.remove(present, f"delete the previous run in {out} (--overwrite)")
    for folder in (out / "checkpoints" / "ranks", out / "checkpoints", out / "tensorboard"):  # only when empty
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    written.compact()
    return removed


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
    """The newest `step_*.pt` in `out/checkpoints`; RunFolderError when there is none."""
    out = Path(out)
    if not out.is_dir():
        raise RunFolderError(f"run folder not found: {out}" if not out.exists() else
                             f"{out} is a file, not a run folder; give it as the checkpoint to resume")
    found = _checkpoints(out)
    if not found:
        raise RunFolderError(f"no checkpoint to resume from in {out / 'checkpoints'}: the run stopped before its "
                             "first checkpoint; start it again with the same --out and --overwrite"
                             if (out / "checkpoints").is_dir() or (out / RUN_MARKER).is_file() else
                             f"{out} is a directory, neither a checkpoint file nor a run folder (it holds no "
                             "checkpoints/step_*.pt); give a run folder or a checkpoint file")
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
            raise ConfigError("run.device asks for CUDA but torch sees no GPU; use run.device=cpu")
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


def _moved_run_folder(cfg: TrainConfig, stored: dict, resume: Path) -> TrainConfig:
    """`cfg` with run.out set to the folder `resume` lies in, when run.out was left as the checkpoint says
    and the run folder has moved since (`mv`): the run continues where its checkpoints are now."""
    folder = resume.resolve().parent.parent
    if resume.resolve().parent.name != "checkpoints" or cfg.run.out != stored.get("run", {}).get("out"):
        return cfg
    if Path(cfg.run.out).resolve() == folder:
        return cfg
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out=str(folder)))


def _check_resume_state(cfg: TrainConfig, ckpt: Checkpoint, resume: Path, ctx: DistContext) -> list[str]:
    """Refuse a checkpoint that cannot continue as configured; returns lines for run.log."""
    state = ckpt.training_state
    step = int(state["step"])
    if cfg.run.steps <= step:
        raise ConfigError(f"run.steps={cfg.run.steps} but {resume} is already at step {step}: nothing to train. "
                          f"Resume with --set run.steps=N for some N > {step}")
    bad = non_finite_entries(state)
    if bad:
        raise CheckpointError(f"{resume} holds NaN or Inf training state ({', '.join(bad[:5])}"
                              f"{', ...' if len(bad) > 5 else ''}); it cannot be resumed. Resume an earlier checkpoint")
    saved = int(ckpt.provenance.get("processes", len(state.get("rng", [None]))))
    if saved == ctx.world_size:
        return []
    change = (f"{resume} was written by {saved} process(es), this run has {ctx.world_size}: the global batch "
              f"changes from {saved} x to {ctx.world_size} x data.batch_size and the other processes' augmentation "
              "memories and BatchNorm statistics are not carried over")
    if not cfg.run.allow_world_size_change:
        raise ConfigError(f"{change}. Resume with {saved} process(es), or pass --set run.allow_world_size_change=true "
                          "to accept this")
    return [f"world size: {change} (run.allow_world_size_change=true)"]


def _remove_orphans(written: WrittenFiles) -> list[str]:
    """Delete the temporary files a kill mid-write left in the run folder (those its record names); their
    paths relative to the folder."""
    return written.remove([written.folder / n for n in written.temporaries()], "remove temporary files")


def _adopt_legacy_logs(out: Path, written: WrittenFiles) -> list[str]:
    """A run folder written before the record existed, resumed in place: record its logs and marker as they are
    (the resume says the folder is this run's), so that the run can go on appending; its checkpoints stay
    unrecorded (never pruned). Returns what was adopted, relative to `out`."""
    if written.path.exists():
        return []
    return written.adopt([out / n for n in (RUN_MARKER, "run.log", "log.csv") if (out / n).is_file()])


def _train(cfg: TrainConfig, resume: str | Path | None, ctx: DistContext, overwrite: bool = False) -> Path:
    device = _resolve_device(cfg.run.device, ctx)
    if cfg.run.sync_batchnorm and ctx.enabled and device.type != "cuda":
        raise ConfigError(f"run.sync_batchnorm=true needs CUDA devices (torch's SyncBatchNorm runs only on GPUs), "
                          f"this run is on {device}; set run.sync_batchnorm=false")
    try:
        amp_dtype = autocast_dtype(cfg.run.precision, device)  # None: float32; checked before any work
    except PrecisionError as e:
        raise ConfigError(str(e)) from e
    accepted: list[str] = []
    notes: list[str] = []  # written to run.log once it is open
    state = None
    if resume:
        ckpt = load_checkpoint(resume)
        if not ckpt.training_state:
            raise CheckpointError(f"{resume} holds no training state (an exported model?); it cannot be resumed")
        moved = _moved_run_folder(cfg, ckpt.train_config, Path(resume))
        if moved is not cfg:
            notes.append(f"run folder moved: {resume} lies in {moved.run.out}, its config says run.out={cfg.run.out}; "
                         f"the run continues in {moved.run.out}")
            cfg = moved
        accepted = _check_resume_config(cfg, ckpt.train_config, Path(resume))
        notes += _check_resume_state(cfg, ckpt, Path(resume), ctx)
        state = ckpt.training_state
    out = Path(cfg.run.out)
    written = WrittenFiles(out, "the run")  # every file this run writes in `out` goes through it
    problem, removed = None, []  # decided by the main process alone: the others would see the files it creates
    if ctx.is_main:
        try:
            removed = _claim_run_folder(out, Path(resume) if resume else None, overwrite, written)
            if state:
                adopted = _adopt_legacy_logs(out, written)
                if adopted:
                    notes.append(f"{out} was written before runs recorded their files ({RECORD_NAME}): adopted "
                                 f"{', '.join(adopted)} as this run's; its earlier checkpoints are never pruned")
            orphans = _remove_orphans(written)
            if orphans:
                notes.append(f"removed {len(orphans)} temporary file(s) left by an interrupted write: "
                             + ", ".join(orphans))
        except (RunFolderError, ForeignFileError, OSError) as e:  # raised on every process (no one waits forever)
            problem = e
    problem = _broadcast_object(problem, ctx)
    if problem:
        raise problem
    log = RunLog(out, enabled=ctx.is_main, tensorboard=cfg.run.tensorboard, written=written)
    if ctx.is_main and not (out / RUN_MARKER).is_file():
        written.write(out / RUN_MARKER, (json.dumps({"format": "hear-slicer-run"}) + "\n").encode())
    if state:
        log.drop_rows_after(int(state["step"]))  # rows logged after the checkpoint, before a kill
    notes += log.open_tensorboard()  # tensorboard/ = log.csv's rows so far, each step once
    seed_everything(cfg.run.seed)  # same model init on every process
    revision = git_revision()
    log.text(f"pretrain: objective {cfg.objective.name}, code revision {revision}, {ctx.world_size} process(es), "
             f"device {device}" + (f", resuming {resume} at step {state['step']}" if state else ""))
    if removed:
        log.text(f"--overwrite: removed {len(removed)} file(s) of the previous run in {out}: {', '.join(removed)}")
    for note in notes:
        log.text(note)
    log.text("config:\n" + cfg.dump())
    if accepted:
        log.text("changes accepted on resume:\n" + "\n".join(f"  {line}" for line in accepted))
    if log.tensorboard_dir is not None:
        log.text(f"tensorboard: live curves in {log.tensorboard_dir} (watch: tensorboard --logdir {out.parent})")
    elif cfg.run.tensorboard and ctx.is_main:
        log.text("tensorboard: the package is not installed, no live curves (pip install tensorboard); "
                 "log.csv holds the same rows")

    # ------------------------------------------------------------------ data
    skipped: dict[str, str] = dict(state["skipped"]) if state else {}
    crop_samples = round(cfg.data.crop_seconds * cfg.frontend.sample_rate)
    n_frames = cfg.frontend.num_frames(crop_samples)
    crops_per_item = 2 if objective_class(cfg.objective.name).views_from_separate_crops else 1
    if is_store(cfg.data.path):  # prepared by `python -m pretrain.prepare`: no scan, no decoding
        dataset = StoreCrops(cfg.data.path, cfg.frontend.sample_rate, crop_samples, cfg.data.silence_peak,
                             crops_per_item, verify=cfg.data.verify_store)
        files = dataset.files
    else:
        if ctx.is_main:
            unreadable: list[tuple[str, str]] = []
            files = find_audio_files(cfg.data.path, cfg.data.extensions, unreadable)
            for folder, reason in unreadable:
                if folder not in skipped:
                    skipped[folder] = reason
                    log.text(f"skipped {folder}: {reason}")
            if cfg.data.scan_headers:
                files, bad = scan_files(files, cfg.data.scan_workers, out / "header_scan.csv", cfg.run.progress,
                                        write=written.write)
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
            cfg.run.seed, device), write=written.write)
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
    slow_bf16 = cpu_bf16_note(device, amp_dtype)
    if slow_bf16:
        log.text(f"warning: {slow_bf16}")

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

    def stop(reason: str) -> TrainingDiverged:
        """Log why the run stops and name the last good checkpoint."""
        message = (f"{reason}; stopping. The last good checkpoint is "
                   f"{last_path or 'none (no checkpoint was written yet)'}. Lower optim.lr, raise "
                   "optim.warmup_steps, or set run.precision=fp32, then resume from it.")
        log.text(message)
        return TrainingDiverged(message)

    def checkpoint(step: int) -> Path:
        """Write a checkpoint at `step` (collective: every process takes part); a NaN/Inf state is never written."""
        path = out / "checkpoints" / f"step_{step:08d}.pt"
        bad = non_finite_entries({"objective": objective.state_dict(), "augment": augment.state_dict(),
                                  "optimizer": optimizer.state_dict()})
        if all_reduce_mean(torch.tensor(float(bool(bad)), device=device), ctx).item() > 0:
            raise stop(f"the training state holds NaN or Inf values at step {step} "
                       f"({', '.join(bad[:5]) if bad else 'on another process'}), {path.name} is not written")
        if ctx.rank > 0:  # before rank 0 writes the checkpoint: the gathers below wait for it
            save_rank_state(path, ctx.rank, augment, objective, written)
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
            save_checkpoint(ckpt, path, written)
            # keep the newest keep_last - 1 others besides the one just written (never that one),
            # and every checkpoint of run.keep_steps; only checkpoints the record proves this run wrote
            kept = {f"step_{s:08d}.pt" for s in cfg.run.keep_steps}
            ours = set(written.recorded())
            others = [p for p in _checkpoints(out) if p != path and p.name not in kept and written.name(p) in ours]
            for old in others[:max(0, len(others) - (cfg.run.keep_last - 1))]:
                written.remove([old], f"delete the old checkpoint {old}")
                prune_rank_states(old, written)
            log.text(f"checkpoint: {path}; {progress.status()}")
        return path

    # ------------------------------------------------------------------ loop
    loader = make_loader(dataset, cfg.data.batch_size, cfg.data.num_workers, ctx.rank, ctx.world_size,
                         cfg.run.seed, start=step * cfg.data.batch_size)
    batches = iter(loader)
    total = cfg.run.steps
    # a bar on a terminal; in a log, a heartbeat line a minute (checkpoints have their own lines)
    progress = Progress(total, "train", unit="step", initial=step, enabled=ctx.is_main and cfg.run.progress)
    last_path = latest_checkpoint(out) if _checkpoints(out) else None
    t_window, clips_window, wait_window = time.perf_counter(), 0, 0.0
    objective.train()
    while step < total:
        t_wait = time.perf_counter()
        batch = next(batches)
        wait_window += time.perf_counter() - t_wait
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
            peaks = wave.detach().abs().flatten(1).amax(dim=1).tolist()  # (B,) peak |x| of each clip
            clips = sorted((c for part in _gather_objects(list(zip(peaks, batch.paths)), ctx) for c in part),
                           key=lambda c: -c[0] if math.isfinite(c[0]) else -math.inf)
            raise stop(f"loss became {loss.item()} at step {step + 1} on a batch of {len(clips)} clips from "
                       + ", ".join(f"{p} (peak |x| {peak:.3g})" for peak, p in clips[:8])
                       + (f" and {len(clips) - 8} more" if len(clips) > 8 else "") + ", loudest first")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf)
        scaler.step(optimizer)
        scaler.update()
        objective.after_step(step + 1, total)
        step += 1
        clips_window += cfg.data.batch_size * ctx.world_size
        progress.update(1)

        if step % cfg.run.log_every == 0 or step == total:
            elapsed = time.perf_counter() - t_window
            row = {"step": step, "lr": lr, "loss": float(all_reduce_mean(loss.detach().float(), ctx))}
            row.update({k: float(all_reduce_mean(v.float(), ctx)) for k, v in out_step.metrics.items()})
            row.update({"grad_norm": float(grad_norm), "clips_per_s": clips_window / max(elapsed, 1e-9),
                        "loader_wait": wait_window / max(elapsed, 1e-9)})  # share of the time spent waiting
            if objective.ema_momentum is not None:
                row["ema_momentum"] = objective.ema_momentum
            log.row(row)
            progress.set_postfix(loss=f"{row['loss']:.4f}", clips_s=f"{row['clips_per_s']:.1f}")
            t_window, clips_window, wait_window = time.perf_counter(), 0, 0.0
        if step % cfg.run.checkpoint_every == 0 or step == total:
            last_path = checkpoint(step)
    progress.close()
    log.close()

    # ------------------------------------------------------------------ end
    all_skipped = {k: v for part in _gather_objects(skipped, ctx) for k, v in part.items()}
    if all_skipped:
        log.text(f"{len(all_skipped)} file(s) skipped in total:\n" + "\n".join(
            f"  {p}: {r}" for p, r in sorted(all_skipped.items())))
    if cfg.run.save_rank_states:
        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in objective.state_dict().items()}, buf)
        written.write(out / f"rank{ctx.rank}_final.pt", buf.getvalue())
    if ctx.is_main:
        try:
            if plot_loss_curve(out / "log.csv", out / "loss.png", write=written.write):
                log.text(f"loss curve: {out / 'loss.png'}")
        except OSError as e:  # the checkpoints are written; a missing plot does not fail the run
            log.text(f"could not draw the loss curve {out / 'loss.png'}: {e}")
    if last_path is None:
        raise ConfigError(f"run.steps={total} but the run was already at step {step}; nothing was trained")
    log.text(f"done: {step} steps; model for hear_slicer.load_model: {last_path}")
    return last_path
