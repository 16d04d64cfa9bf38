"""Learning curves: long pretraining runs on recorded audio, evaluated along the way.

    python -m studies.learning_curves                    # the whole study; rerun to resume
    python -m studies.learning_curves --report           # tables and plots from what is recorded
    python -m studies.learning_curves --device cuda      # the same study on one GPU (bf16)
    python -m studies.learning_curves --prepare-only     # the data and corpus store only
    python -m studies.learning_curves --prepare-only --install  # ... installing the Debian packages (root)

1. Data. The study's tasks and corpus (``eval_suites.synthetic.demo_data --preset study``,
   3,200 files) plus recorded audio from Debian packages (``pretrain.debian_corpus``, the
   `real` preset: 3,426 files, 12.6 h), disjoint from the study tasks' sources; both are
   converted once into one prepared store (``pretrain.prepare``) under ``--runs``.
2. Runs. SLICER, DeLoRes-M and BYOL-A (the paper's top three) and SLICER with time-only crops
   (the demo recipe's crop; its final checkpoint is the shipped default), ``--steps`` (6,000) of batch 32 each, under the study's
   budget rule scaled to that length (``studies.mini_lape.budget_overrides``: the same rule
   for every method), in ``--precision`` (bf16 autocast, for every run alike). The checkpoints
   of the curve's steps (``--curve``: 600, 1,500, 3,000, 6,000) are kept (``run.keep_steps``).
   SLICER is also trained to completion at ``--completed`` lengths (600 and 1,500 steps: a
   whole schedule, learning rate decayed to 0), the check that a mid-schedule checkpoint
   (still at a high learning rate) does not misstate what a run of that length gives.
3. Curve. Every curve checkpoint (and each completed run) is scored on the study tasks'
   **validation** splits with the linear probe (probe seed 0; the validation score of the
   epoch it selects) and the kNN probe, as soon as it exists, while the runs go on training.
4. Final. The last checkpoint of each run, random init and log-mel statistics on **test**
   with the linear probe at probe seeds 0-2 (95 % bootstrap intervals; paired differences
   against random init and against SLICER), and heareval's MLP.

Everything lands in ``--out`` (committed; per-cell results and per-clip test outputs,
``points.json``, what each recorded point was, the tables, ``learning_curves.png`` and
``learning_curves_tasks.png`` (validation curves) and ``final.png``, the README's headline
figure: test scores with intervals beside random init, log-mel statistics and chance): a
rerun, on this or a fresh machine, scores only what is missing and trains only runs whose
points are missing. Checkpoints stay in
``--runs``, outside the repository.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from eval_suites import quiet_heareval_imports
from eval_suites.core.atomic_files import write_atomically
from eval_suites.core.manifest import ModelSpec, load_manifest
from eval_suites.core.results import cell_dir, load_cell
from eval_suites.errors import DataError, UsageError, run_command
from eval_suites.synthetic.demo_data import PRESETS

from .labels import label
from .mini_lape import (CONFIGS, MANIFESTS, METHODS, manifest_for, PretrainRun, aggregate, budget_overrides, chance_levels,
                        load_records,
                        differences, launch_run, markdown_differences, markdown_table, normalised_identity,
                        run_state)

__all__ = ["CURVE_STEPS", "LONG_METHODS", "VARIANTS", "plan", "curve_points", "read_points", "main"]

REPO = Path(__file__).resolve().parent.parent
STUDY_MANIFEST = MANIFESTS / "study.yaml"
CURVE_STEPS = (600, 1500, 3000, 6000)
LONG_METHODS = ("slicer", "delores_m", "byol_a")
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "slicer_rrc_time_only": ("slicer", {"augment.rrc.frequency": "false"}),
}
"""Extra runs: name -> (method whose config it starts from, overrides on top of the budget rule)."""
COMPLETED = (600, 1500)
PROBES = ("linear", "knn")
PROBE_TITLES = {"linear": "linear probe", "knn": "kNN probe", "heareval": "heareval's MLP"}
SHIPPED = "slicer_rrc_time_only"
"""The run whose final checkpoint is hear_slicer's default model (``pretrain.export``)."""
REFERENCES = ("random_init", "logmel_stats")
POINTS = "points.json"


# ----------------------------------------------------------------------------- plan
def _run(name: str, method: str, steps: int, store: Path, runs_root: Path, extra: dict[str, str],
         keep: tuple[int, ...], precision: str, device: str) -> PretrainRun:
    config = CONFIGS / METHODS[method]
    overrides = {**budget_overrides(config, steps), "data.path": str(store), **extra,
                 "run.precision": precision, "run.device": device, "run.progress": "false"}
    if keep:
        overrides["run.keep_steps"] = "[" + ", ".join(map(str, keep)) + "]"
    return PretrainRun(name, config, overrides, runs_root / name, group=name)


def plan(runs_root: Path, store: Path, steps: int, curve: tuple[int, ...], methods: list[str],
         variants: list[str], completed: tuple[int, ...], precision: str, device: str) -> list[PretrainRun]:
    """In the order they are trained: the long runs of the methods, SLICER trained to completion
    at each `completed` length (both asked for), the variants (optional), then the precision check."""
    keep = tuple(s for s in curve if s < steps)
    runs = [_run(m, m, steps, store, runs_root, {}, keep, precision, device) for m in methods]
    runs += [_run(f"slicer_full{s}", "slicer", s, store, runs_root, {}, (), precision, device) for s in completed]
    runs += [_run(v, VARIANTS[v][0], steps, store, runs_root, VARIANTS[v][1], keep, precision, device)
             for v in variants]
    if precision != "fp32" and completed:  # the precision check: the shortest completed run again in fp32
        s = min(completed)
        runs.append(_run(f"slicer_full{s}_fp32", "slicer", s, store, runs_root, {}, (), "fp32", device))
    return runs


def run_steps(run: PretrainRun) -> int:
    return int(run.overrides["run.steps"])


def curve_points(run: PretrainRun, curve: tuple[int, ...]) -> list[int]:
    """The steps of `run` that are scored on validation: the curve's steps up to its length
    (a completed run: its last step only)."""
    n = run_steps(run)
    return [n] if run.name.startswith("slicer_full") else [s for s in curve if s <= n]


def point_name(run: PretrainRun, step: int) -> str:
    return f"{run.name}_step{step:05d}"


# ----------------------------------------------------------------------------- data
def build_store(root: Path, runs_root: Path, real: Path, workers: int, progress: bool, preset: str = "study",
                install: bool = False) -> Path:
    """The real corpus listed, the study data (built if missing), and the prepared store of both.

    The real corpus comes first: when its Debian packages are missing and `install` is False
    (`--install`), a UsageError (exit 2) names them and apt-get's download size before
    anything is built or installed."""
    from eval_suites.synthetic.demo_data import build_demo
    from hear_slicer.written import ForeignFileError
    from pretrain.data import find_audio_files
    from pretrain.debian_corpus import AUDIO_EXTENSIONS, PACKAGES, CorpusError, build_corpus, check_disjoint
    from pretrain.prepare import prepare
    from pretrain.store import is_store, read_store_info

    store = runs_root / "corpus_store"
    if is_store(store) and read_store_info(store).get("complete"):
        return store
    check_disjoint(list(PACKAGES))
    if not (real / "files.txt").is_file():
        try:
            build_corpus(real, PACKAGES, install_missing=install)
        except (CorpusError, ForeignFileError) as e:
            raise UsageError(f"the real-audio corpus {real}: {e}") from e
    listed = _listed_files(real / "files.txt")
    build_demo(root, preset=preset, progress=progress)
    files = [str(p) for p in find_audio_files(root / "corpus", AUDIO_EXTENSIONS)] + listed
    runs_root.mkdir(parents=True, exist_ok=True)
    listing = runs_root / "corpus_files.txt"
    listing.write_bytes(("\n".join(files) + "\n").encode("utf-8", "surrogateescape"))
    info = prepare(listing, store, workers=workers, extensions=AUDIO_EXTENSIONS, progress=progress)
    print(f"  corpus store {store}: {info['clips']} clips, {info['hours']:.2f} h", flush=True)
    return store


def _listed_files(path: Path) -> list[str]:
    """The paths of a corpus list (`pretrain.debian_corpus`'s files.txt), names that are not UTF-8 kept as their
    bytes; a DataError (exit 3) for a file that is not such a list (binary: NUL bytes)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read the corpus list {path}: {e.strerror}") from e
    if b"\0" in data:
        raise DataError(f"{path} is not a list of file paths (it holds NUL bytes: a binary file?); delete it and "
                        "list the corpus again (python -m pretrain.debian_corpus)")
    return [line for line in data.decode("utf-8", "surrogateescape").splitlines() if line.strip()]


# ----------------------------------------------------------------------------- scoring
def _identity(run: PretrainRun | None, step: int | None, preset: str = "study") -> dict:
    """What a recorded point must match: its run's config (no paths), its step, the data preset."""
    from .mini_lape import _comparable, _desired_config

    if run is None:
        return {"preset": preset}
    cfg = _comparable(_desired_config(run))
    cfg["data"].pop("path", None)
    return {"config": cfg, "step": step, "preset": preset}


def load_points(out: Path) -> dict[str, dict]:
    return load_records(out / POINTS, "point records", "score every point again")


def save_point(out: Path, name: str, identity: dict) -> None:
    points = load_points(out)  # read afresh: keep what another invocation recorded meanwhile
    points[name] = identity
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / POINTS, lambda fh: fh.write(json.dumps(points, indent=1, sort_keys=True)))


def _cells_ok(out: Path, model: str, tasks: list[str], protocols: tuple[str, ...]) -> bool:
    for task in tasks:
        for protocol in protocols:
            path = cell_dir(out, model, task, protocol) / "result.json"
            if not path.is_file() or load_cell(path).status != "ok":
                return False
    return True


MANIFEST = {"path": STUDY_MANIFEST}
"""The tasks' manifest (``--manifest``; default the study's)."""
TASKS: dict[str, list[str] | None] = {"names": None}
"""The manifest's tasks scored (``--tasks``; None: all)."""


def _manifest(tasks_root: Path, models: list[ModelSpec], protocols: tuple[str, ...], seed: int, cache: Path):
    manifest = load_manifest(MANIFEST["path"], tasks_root=tasks_root).select(None, TASKS["names"])
    manifest.models = models
    manifest.tasks = [dataclasses.replace(t, protocols=protocols) for t in manifest.tasks]
    manifest.linear = dataclasses.replace(manifest.linear, seed=seed)
    manifest.cache_dir = cache
    return manifest


def score_validation(spec: ModelSpec, tasks_root: Path, out: Path, cache: Path) -> None:
    """Linear (probe seed 0) and kNN probes of one model into ``<out>/curve``."""
    from eval_suites.core.runner import run_manifest

    run_manifest(_manifest(tasks_root, [spec], PROBES, 0, cache), out / "curve", progress=False)


def score_final(spec: ModelSpec, tasks_root: Path, out: Path, cache: Path, seeds: list[int], heareval: bool) -> None:
    """Linear probe at each probe seed into ``<out>/final/seed<s>``, and heareval's MLP into ``<out>/final/heareval``."""
    from eval_suites.core.runner import run_manifest

    for seed in seeds:
        run_manifest(_manifest(tasks_root, [spec], ("linear",), seed, cache), out / "final" / f"seed{seed}",
                     progress=False)
    if heareval:
        run_manifest(_manifest(tasks_root, [spec], ("heareval",), 0, cache), out / "final" / "heareval",
                     progress=False)


def _slim(checkpoint: Path, target: Path) -> Path:
    from hear_slicer.checkpoint import load_checkpoint, save_checkpoint
    from pretrain.export import slim

    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(slim(load_checkpoint(checkpoint)), target)
    return target


# ----------------------------------------------------------------------------- reading results
def read_points(out: Path, tasks: list[str]) -> pd.DataFrame:
    """Validation scores of every recorded point: model, group, step, task, protocol, valid."""
    rows = []
    for name, ident in load_points(out).items():
        if not name.startswith("curve:"):
            continue
        model = name.split(":", 1)[1]
        group, step = ident.get("group", model), ident.get("step")
        for task in tasks:
            for protocol in PROBES:
                path = cell_dir(out / "curve", model, task, protocol) / "result.json"
                if not path.is_file():
                    continue
                r = load_cell(path)
                folds = (r.details.get("folds") or []) if r.status == "ok" else []
                valid = [f["valid_score"] for f in folds if isinstance(f, dict) and "valid_score" in f]
                rows.append(dict(model=model, group=group, step=step, task=task, protocol=protocol,
                                 valid=sum(valid) / len(valid) if valid else math.nan))
    return pd.DataFrame(rows, columns=["model", "group", "step", "task", "protocol", "valid"])


def final_scores(out: Path, models: list[str], tasks: list[str], seeds: list[int], groups: dict[str, str],
                 protocol: str = "linear") -> pd.DataFrame:
    """The long table mini_lape's aggregate/differences read: test scores of the final models
    (linear: one folder per probe seed; heareval: its one run, in ``final/heareval``)."""
    rows = []
    for seed in seeds if protocol == "linear" else [0]:
        folder = out / "final" / (f"seed{seed}" if protocol == "linear" else protocol)
        for model in models:
            for task in tasks:
                path = cell_dir(folder, model, task, protocol) / "result.json"
                r = load_cell(path) if path.is_file() else None
                p = r.primary if r else None
                rows.append(dict(group=groups.get(model, model), model=model, task=task, seed=seed,
                                 metric=p.metric if p else "", value=p.value if p else math.nan,
                                 status=r.status if r else "missing", cell=str(path.parent)))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- plots
def _step_axis(ax, steps: list[int]) -> None:
    """A log axis of pretraining steps, ticked at the curve's steps in plain numbers."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(steps, [f"{int(s):,}" for s in steps])
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_curves(points: pd.DataFrame, refs: pd.DataFrame, path: Path, steps: int) -> Path:
    """Validation mean over tasks against pretraining steps (log axis), one panel per probe;
    random init and log-mel statistics as horizontal lines; completed runs as crosses. The
    score axis runs from 0 to 1: one probe seed on validation splits of 150+ clips per task
    has no interval, and a cut axis would make its noise look like a trend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PROBES), figsize=(11, 4.4), squeeze=False)
    long = points[~points.group.str.startswith("slicer_full")]
    done = points[points.group.str.startswith("slicer_full")]
    colors = {g: plt.get_cmap("tab10")(i) for i, g in enumerate(sorted(long.group.unique()))}
    for ax, protocol in zip(axes[0], PROBES):
        sub = long[long.protocol == protocol]
        for group, g in sub.groupby("group"):
            mean = g.groupby("step").valid.mean()
            ax.plot(mean.index, mean.values, marker="o", color=colors[group], label=label(group))
        for fp32, marker in ((False, "x"), (True, "+")):
            sel = done[(done.protocol == protocol) & (done.group.str.endswith("_fp32") == fp32)]
            d = sel.groupby("step").valid.mean()  # one run per step: the mean over its tasks
            if len(d):
                ax.plot(d.index, d.values, marker, color=colors.get("slicer", "black"), markersize=10, mew=2,
                        label="SLICER trained to completion" + (", fp32" if fp32 else ""))
        for ref, style in zip(REFERENCES, ("--", ":")):
            r = refs[(refs.model == ref) & (refs.protocol == protocol)].valid
            if len(r):
                ax.axhline(r.mean(), color="grey", linestyle=style, label=label(ref))
        _step_axis(ax, sorted(points.step.unique()))
        ax.set_ylim(0, 1)
        ax.set_xlabel("pretraining steps (batch 32, log axis)")
        ax.set_ylabel("validation score, mean of the 7 study tasks")
        ax.set_title(PROBE_TITLES[protocol])
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle(f"Checkpoints of {steps:,}-step runs on validation splits (probe seed 0, no intervals: "
                 "differences under about 0.02 are noise)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_task_curves(points: pd.DataFrame, refs: pd.DataFrame, tasks: list[str], path: Path) -> Path:
    """Per task, the linear probe's validation score against steps, with the references; every
    panel's score axis from 0 to 1, as in :func:`plot_curves`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    long = points[(~points.group.str.startswith("slicer_full")) & (points.protocol == "linear")]
    colors = {g: plt.get_cmap("tab10")(i) for i, g in enumerate(sorted(long.group.unique()))}
    for ax, task in zip(axes.flat, tasks):
        for group, g in long[long.task == task].groupby("group"):
            g = g.sort_values("step")
            ax.plot(g.step, g.valid, marker="o", markersize=3, color=colors[group], label=label(group))
        for ref, style in zip(REFERENCES, ("--", ":")):
            r = refs[(refs.model == ref) & (refs.protocol == "linear") & (refs.task == task)].valid
            if len(r):
                ax.axhline(r.mean(), color="grey", linestyle=style, label=label(ref))
        _step_axis(ax, sorted(points.step.unique()))
        ax.set_ylim(0, 1)
        ax.set_title(label(task), fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        ax.legend(handles, labels, fontsize=8, loc="center")
        ax.axis("off")
    fig.supxlabel("pretraining steps (log axis)")
    fig.supylabel("validation score (linear probe, probe seed 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_final(tables: dict[str, pd.DataFrame], diffs: dict[str, pd.DataFrame], chance: float | None,
               path: Path) -> Path:
    """Write :func:`final_figure` to ``path`` (``final.png``, the README's headline figure)."""
    import matplotlib.pyplot as plt

    fig = final_figure(tables, diffs, chance)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def final_figure(tables: dict[str, pd.DataFrame], diffs: dict[str, pd.DataFrame], chance: float | None):
    """The headline figure: each final model's mean **test** score over the tasks with its 95 %
    bootstrap interval, one marker per probe (``tables``: probe -> :func:`aggregate`'s table),
    the references and the ``chance`` level on the same axis, which runs from 0 to 1; beside it
    each model minus random init, paired on the same clips (``diffs``: probe -> the table of
    ``final_differences_random_init*.csv``), with 0 marked. Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = {p: t[t.task == "mean"].set_index("model") for p, t in tables.items()}
    first = next(iter(means.values()))
    models = [m for m in first.sort_values("mean", ascending=False).index if m not in REFERENCES]
    models += [m for m in REFERENCES if m in first.index]
    names = [label(m) + (" — the shipped default" if m == SHIPPED else "") for m in models]
    markers = {"linear": ("o", "tab:blue"), "heareval": ("s", "tab:orange")}
    offsets = {p: ((len(tables) - 1) / 2 - i) * 0.22 for i, p in enumerate(tables)}  # the first probe on top
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(12, 0.55 * len(models) + 2.0), sharey=True,
                                 gridspec_kw={"width_ratios": [3, 2]})
    y = list(range(len(models)))[::-1]  # the first model on top
    for p, table in means.items():
        marker, color = markers.get(p, ("D", "tab:green"))
        for yi, m in zip(y, models):
            if m not in table.index:
                continue
            r = table.loc[m]
            ax.errorbar(r["mean"], yi + offsets[p], xerr=[[r["mean"] - r.ci_low], [r.ci_high - r["mean"]]],
                        fmt=marker, color=color, capsize=3, label=PROBE_TITLES[p] if m == models[0] else None)
        d = diffs.get(p)
        if d is None:
            continue
        d = d[d.task == "mean"].set_index("model")
        for yi, m in zip(y, models):
            if m in d.index:
                r = d.loc[m]
                dx.errorbar(r["diff"], yi + offsets[p], xerr=[[r["diff"] - r.ci_low], [r.ci_high - r["diff"]]],
                            fmt=marker, color=color, capsize=3)
    if chance is not None:
        ax.axvline(chance, color="black", linestyle="--", linewidth=1, label=label("chance"))
    ax.set_xlim(0, 1)
    ax.set_yticks(y, names)
    ax.set_xlabel("test score, mean over the tasks (95 % bootstrap interval)")
    ax.set_title("Test score")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    dx.axvline(0, color="black", linewidth=1)
    dx.set_xlabel("paired on the same test clips (95 % interval)")
    dx.set_title("Model minus random init")
    dx.grid(axis="x", alpha=0.3)
    fig.suptitle("Final checkpoints (one pretraining run each) and references, on the study tasks' test splits",
                 fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    quiet_heareval_imports()
    ap = argparse.ArgumentParser(prog="python -m studies.learning_curves", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None, help="study data folder, built if missing (default demo_data_<preset>)")
    ap.add_argument("--preset", default="study", choices=sorted(PRESETS),
                    help="demo data preset of the tasks and synthetic corpus (tests: tiny)")
    ap.add_argument("--manifest", type=Path, default=None,
                    help="the tasks (default eval_suites/manifests/<preset>.yaml if it exists, else demo.yaml)")
    ap.add_argument("--real", type=Path, default=None,
                    help="real-audio corpus folder (pretrain.debian_corpus; default: <runs>/real)")
    ap.add_argument("--runs", type=Path, default=Path("runs/learning_curves"),
                    help="runs, corpus store and embedding cache (keep it outside the repository)")
    ap.add_argument("--out", type=Path, default=Path("studies/results/learning_curves"), help="results (commit it)")
    ap.add_argument("--steps", type=int, default=CURVE_STEPS[-1], help="length of the long runs (default 6000)")
    ap.add_argument("--curve", type=int, nargs="+", default=list(CURVE_STEPS), help="steps scored on validation")
    ap.add_argument("--methods", nargs="+", default=list(LONG_METHODS), choices=list(METHODS))
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--completed", type=int, nargs="*", default=list(COMPLETED),
                    help="lengths at which SLICER is also trained to completion (default 600 1500)")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"],
                    help="autocast of every run (default bf16, the same for every method: 2.4x faster than fp32 on the CPU "
                         "with native bf16 the study ran on; on a CPU without it, about 23x slower: pass fp32)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (one GPU)")
    ap.add_argument("--parallel", type=int, default=2, help="pretraining processes at a time")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per process (default cores / parallel)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="probe seeds of the final test scores")
    ap.add_argument("--no-heareval", action="store_true", help="skip heareval's MLP on the final models")
    ap.add_argument("--dry-run-steps", type=int, default=None,
                    help="a few steps per run instead (tests and a GPU machine's smoke test)")
    ap.add_argument("--tasks", nargs="+", default=None, help="only these tasks of the manifest (names)")
    ap.add_argument("--no-train", action="store_true",
                    help="start no training: score the points whose checkpoints exist (e.g. while another process "
                         "trains), leave the others for a later run")
    ap.add_argument("--report", action="store_true", help="train and score nothing; tables and plots only")
    ap.add_argument("--prepare-only", action="store_true",
                    help="build the study data and the corpus store (<runs>/corpus_store), then stop: the data "
                         "of pretrain/configs/default_model.yaml")
    ap.add_argument("--install", action="store_true",
                    help="install the real corpus' Debian packages with apt-get when they are missing (root; about "
                         "1.3 GB); without it, missing packages are named with their size and the study stops")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.parallel < 1 or any(s < 1 for s in args.curve + args.completed):
        ap.error("--steps, --parallel, --curve and --completed take integers >= 1")
    if sorted(set(args.curve)) != args.curve or args.curve[-1] != args.steps:
        ap.error(f"--curve must be increasing and end at --steps ({args.steps}), got {args.curve}")
    if (args.threads is not None and args.threads < 1) or (args.dry_run_steps is not None and args.dry_run_steps < 1):
        ap.error(f"--threads and --dry-run-steps take integers >= 1, got {args.threads} and {args.dry_run_steps}")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        ap.error(f"--seeds must be distinct integers >= 0, got {args.seeds}")
    for flag, folder in (("--out", args.out), ("--runs", args.runs)):
        if folder.exists() and not folder.is_dir():
            ap.error(f"{flag} {folder} is a file; expected a folder (created if missing)")
    if args.prepare_only and args.report:
        ap.error("--prepare-only builds the data and --report only reads results: give one of them")
    # exit 2 for bad arguments or a bad manifest, 3 for unreadable records or unwritable outputs:
    # one error line, the traceback with --debug (eval_suites.errors)
    return run_command(lambda: _study(args), debug=args.debug)


def _study(args: argparse.Namespace) -> int:
    args.root = args.root or Path(f"demo_data_{args.preset}")
    MANIFEST["path"] = args.manifest or manifest_for(args.preset)
    runs_root = args.runs.resolve()
    real = args.real or runs_root / "real"
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.parallel)
    store = runs_root / "corpus_store"
    t0 = time.time()

    if not args.report:
        print(f"[1/4] Data: {args.root}/ and the real corpus into {store}", flush=True)
        store = build_store(args.root, runs_root, real, max(1, (os.cpu_count() or 1) - 1), not args.no_progress,
                            args.preset, install=args.install)
        if args.prepare_only:
            print(f"corpus store ready: {store} (train on it: python -m pretrain --config "
                  f"pretrain/configs/default_model.yaml --set data.path={store})", flush=True)
            return 0
    from .mini_lape import task_names

    tasks = task_names(MANIFEST["path"], args.root / "tasks", args.tasks)
    TASKS["names"] = args.tasks
    runs = plan(runs_root, store, args.steps, tuple(args.curve), args.methods, args.variants,
                tuple(args.completed), args.precision, args.device)
    if args.dry_run_steps:
        for r in runs:
            r.overrides.update({"run.steps": str(args.dry_run_steps), "run.checkpoint_every": "1",
                                "run.keep_steps": "[]"})
    cache = runs_root / "embeddings"
    points = load_points(args.out)

    def recorded(name: str, identity: dict, protocols_out: Path, protocols: tuple[str, ...], model: str) -> bool:
        """Recorded with this identity (configs read back through today's config code) and every cell ok."""
        entry = points.get(name)
        return entry is not None and normalised_identity({k: entry.get(k) for k in identity}) == normalised_identity(
            identity) and _cells_ok(protocols_out, model, tasks, protocols)

    todo_points = []  # (run, step)
    for run in runs:
        steps = [args.dry_run_steps] if args.dry_run_steps else curve_points(run, tuple(args.curve))
        for step in steps:
            name = point_name(run, step)
            if not recorded(f"curve:{name}", {**_identity(run, step), "group": run.group}, args.out / "curve",
                            PROBES, name):
                todo_points.append((run, step))
    finals = [r for r in runs if not r.name.startswith("slicer_full")]
    def heareval_done(model: str) -> bool:
        """heareval's cells of a final model are there (any cell scored under other heareval
        settings than the manifest's was removed by hand, so that it is scored again)."""
        return args.no_heareval or _cells_ok(args.out / "final" / "heareval", model, tasks, ("heareval",))

    todo_finals = [r for r in finals if not (recorded(f"final:{r.name}", _identity(r, run_steps(r)), args.out / "final"
                                                      / f"seed{args.seeds[0]}", ("linear",), r.name)
                                             and heareval_done(r.name))]
    todo_refs = [m for m in REFERENCES if f"final:{m}" not in points or f"curve:{m}" not in points
                 or not heareval_done(m)]
    print(f"  {len(runs)} runs; {len(todo_points)} curve point(s), {len(todo_finals)} final model(s) and "
          f"{len(todo_refs)} reference(s) to score", flush=True)

    if not args.report:
        print(f"[2/4] Training ({args.parallel} at a time, {threads} thread(s) each) and scoring as checkpoints land",
              flush=True)
        failed = train_and_score(runs, todo_points, todo_finals, todo_refs, args, tasks, cache, threads)
        if failed:
            print(f"FAILED runs: {', '.join(failed)}", file=sys.stderr)
    print("[4/4] Report", flush=True)
    write_report(args.out, runs, tasks, args)
    print(f"done in {(time.time() - t0) / 60:.1f} min")
    return 0


def train_and_score(runs, todo_points, todo_finals, todo_refs, args, tasks, cache, threads) -> list[str]:
    """Train the runs that have points to score (``--parallel`` at a time) and score each point
    as soon as it can be: a curve point when its checkpoint exists, a run's final scores when
    the run has finished, random init once a SLICER checkpoint gives its normalisation."""
    need = {r.name for r, _ in todo_points} | {r.name for r in todo_finals}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    queue = [] if args.no_train else [r for r in runs if r.name in need]
    active: dict[str, subprocess.Popen] = {}
    failed: list[str] = []
    tasks_root = args.root / "tasks"
    final_step = args.dry_run_steps
    pending = [("ref", None, 0, name) for name in todo_refs] + [("curve", r, s, point_name(r, s)) for r, s in todo_points]
    pending += [("final", r, final_step or run_steps(r), r.name) for r in todo_finals]
    slicer = next((r for r in runs if r.group == "slicer"), None)
    scorer = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    scoring: concurrent.futures.Future | None = None

    def score_item(item) -> None:
        _score_item(item, args, tasks, tasks_root, cache, slicer)

    def start(run: PretrainRun) -> None:
        state, ckpt = run_state(run, run_steps(run))
        if state != "done":
            active[run.name] = launch_run(run, ckpt, env)

    def is_ready(item) -> bool:
        kind, run, step, name = item
        if kind == "ref":
            return name == "logmel_stats" or _random_init_source(slicer) is not None
        ckpt = run.out / "checkpoints" / f"step_{step:08d}.pt"
        return ckpt.is_file() and (kind == "curve" or run.name not in active)

    while queue or active or pending or scoring is not None:
        while queue and len(active) < args.parallel:
            start(queue.pop(0))
        for name, proc in list(active.items()):
            if proc.poll() is not None:
                del active[name]
                if proc.returncode != 0:
                    print(f"  {name}: FAILED (exit {proc.returncode})", flush=True)
                    failed.append(name)
                    pending = [p for p in pending if p[1] is None or p[1].name != name]
                else:
                    print(f"  {name}: finished", flush=True)
        if scoring is not None:
            if not scoring.done():
                time.sleep(5)
                continue
            scoring.result()  # an error in scoring stops the study here
            scoring = None
        ready = [p for p in pending if is_ready(p)]
        if not ready and not active and not queue:
            if args.no_train:
                print(f"  --no-train: {len(pending)} point(s) wait for checkpoints: "
                      + ", ".join(name for _, _, _, name in pending), flush=True)
                break
            for kind, run, step, name in pending:
                print(f"  {name}: cannot be scored: {run.out if run else 'no SLICER checkpoint'} has no checkpoint "
                      f"of step {step} (trained before run.keep_steps kept it?)", file=sys.stderr)
            break
        if not ready:
            time.sleep(5)
            continue
        item = ready[0]  # one at a time, in a thread, so that a free slot starts the next run meanwhile
        pending.remove(item)
        scoring = scorer.submit(score_item, item)
    scorer.shutdown()
    return failed


def _score_item(item, args, tasks, tasks_root: Path, cache: Path, slicer: PretrainRun | None) -> None:
    """Score one pending item: a reference, a curve point on validation or a final model on test."""
    kind, run, step, name = item
    if kind == "ref":
        score_reference(name, slicer, args, tasks_root, cache)
        return
    ckpt_path = run.out / "checkpoints" / f"step_{step:08d}.pt"
    if kind == "curve":
        spec = point_spec(name, run.group, run.out.parent)
        _slim(ckpt_path, spec.checkpoint)
        print(f"  scoring {name} on validation", flush=True)
        score_validation(spec, tasks_root, args.out, cache)
        if _cells_ok(args.out / "curve", name, tasks, PROBES):
            save_point(args.out, f"curve:{name}", {**_identity(run, step), "group": run.group})
    else:
        ckpt = _slim(ckpt_path, run.out / f"{run.name}.pt")
        print(f"  scoring {run.name} on test (probe seeds {args.seeds})", flush=True)
        score_final(ModelSpec(name=run.name, module="hear_slicer", checkpoint=ckpt, options={}), tasks_root,
                    args.out, cache, args.seeds, not args.no_heareval)
        if _cells_ok(args.out / "final" / f"seed{args.seeds[0]}", run.name, tasks, ("linear",)):
            save_point(args.out, f"final:{run.name}", _identity(run, step))


def _random_init_source(slicer: PretrainRun | None) -> Path | None:
    """A checkpoint of the SLICER run (any step: the normalisation is computed once per run)."""
    if slicer is None:
        return None
    found = sorted((slicer.out / "checkpoints").glob("step_*.pt"))
    return found[0] if found else None


RANDOM_INIT_SOURCE = "random_init_source.pt"
"""In ``--runs``: the SLICER checkpoint whose frontend and normalisation random init uses."""


def reference_spec(name: str, runs_root: Path) -> ModelSpec:
    """How a reference is scored: random init (hear_slicer's one random-init reference, with the
    SLICER run's frontend and normalisation) or log-mel statistics."""
    if name == "random_init":
        return ModelSpec(name=name, module="hear_slicer", checkpoint=runs_root / RANDOM_INIT_SOURCE,
                         options={"random_init": True})
    return ModelSpec(name=name, module="eval_suites.references.logmel_stats", checkpoint=None, options={})


def point_spec(name: str, group: str, runs_root: Path) -> ModelSpec:
    """How a curve point is scored: the slim copy of its run's checkpoint (written by ``_slim``)."""
    return ModelSpec(name=name, module="hear_slicer", checkpoint=runs_root / group / "curve" / f"{name}.pt",
                     options={})


def score_reference(name: str, slicer: PretrainRun | None, args, tasks_root: Path, cache: Path) -> None:
    """Random init (with SLICER's normalisation) or log-mel statistics: validation probes and final test scores."""
    if name == "random_init":  # its source: any checkpoint of the SLICER run, slimmed once
        _slim(_random_init_source(slicer), args.runs.resolve() / RANDOM_INIT_SOURCE)
    spec = reference_spec(name, args.runs.resolve())
    print(f"  scoring reference {name}", flush=True)
    score_validation(spec, tasks_root, args.out, cache)
    score_final(spec, tasks_root, args.out, cache, args.seeds, not args.no_heareval)
    save_point(args.out, f"curve:{name}", {"preset": "study", "group": name, "step": 0})
    save_point(args.out, f"final:{name}", {"preset": "study"})


def _differences_text(out: Path, long: pd.DataFrame, order: list[str], tasks: list[str], protocol: str
                      ) -> tuple[list[str], dict[str, pd.DataFrame]]:
    """Each model minus random init, and minus SLICER: paired differences on the same test clips
    (mini_lape.differences, sign turned so that > 0 means the model is ahead); also written to
    ``final_differences_<ref>[_heareval].csv``. Returns the text and {ref: its table}."""
    text, frames = [], {}
    for ref in ("random_init", "slicer"):
        if ref not in order:
            continue
        d = differences(long, ref, [m for m in order if m != ref])
        d = d.assign(diff=-d["diff"], ci_low=-d["ci_high"], ci_high=-d["ci_low"])
        suffix = "" if protocol == "linear" else f"_{protocol}"
        d.to_csv(out / f"final_differences_{ref}{suffix}.csv", index=False)
        frames[ref] = d
        text += ["", f"{protocol}: each model minus {ref} (paired bootstrap on the same test clips; > 0: the model "
                 "is ahead; **bold**: the 95 % interval excludes 0):", "",
                 markdown_differences(d, ref, tasks, header=f"model minus {ref}")]
    return text, frames


def write_report(out: Path, runs: list[PretrainRun], tasks: list[str], args) -> None:
    points = read_points(out, tasks)
    if points.empty:
        print(f"nothing recorded in {out / POINTS} yet", file=sys.stderr)
        return
    refs = points[points.group.isin(REFERENCES)]
    curve = points[~points.group.isin(REFERENCES)]
    out.mkdir(parents=True, exist_ok=True)
    points.sort_values(["group", "step", "protocol", "task"]).to_csv(out / "curves.csv", index=False)
    plot_curves(curve, refs, out / "learning_curves.png", args.steps)
    plot_task_curves(curve, refs, tasks, out / "learning_curves_tasks.png")
    means = (points.groupby(["group", "step", "protocol"]).valid.mean().unstack("protocol").reset_index())
    text = [f"Validation score, mean of the {len(tasks)} study tasks (linear: probe seed 0, the validation "
            "score of the epoch it selects; knn: k chosen on validation):", "",
            "| model | step | " + " | ".join(PROBES) + " |", "|---|---:|" + "---:|" * len(PROBES)]
    for _, r in means.sort_values(["group", "step"]).iterrows():
        text.append(f"| {r.group} | {int(r.step)} | " + " | ".join(
            f"{r[p]:.3f}" if p in r and not math.isnan(r[p]) else "—" for p in PROBES) + " |")
    recorded = load_points(out)
    finals = [n.split(":", 1)[1] for n in recorded if n.startswith("final:")]
    tables, diffs, chance = {}, {}, None
    if finals:
        order = [r.name for r in runs if r.name in finals] + [m for m in REFERENCES if m in finals]
        long = final_scores(out, order, tasks, args.seeds, {})
        long = long[long.status == "ok"]
        if not long.empty:
            tables["linear"] = aggregate(long, order)
            text += ["", f"Final checkpoints on **test**: linear probe, probe seeds {args.seeds}, mean with its 95 % "
                     "bootstrap interval (test clips resampled):", "", markdown_table(tables["linear"], order, tasks, {})]
            more, frames = _differences_text(out, long, order, tasks, "linear")
            text += more
            diffs["linear"] = frames.get("random_init")
            chance = chance_levels(long, tasks).get("mean")
            long.to_csv(out / "final.csv", index=False)
        he = final_scores(out, order, tasks, [0], {}, protocol="heareval")
        he = he[he.status == "ok"]
        if not he.empty:
            he_order = [m for m in order if m in set(he.model)]
            tables["heareval"] = aggregate(he, he_order)
            text += ["", "heareval's MLP on the final checkpoints (test; one run of the manifest's grid point), mean "
                     "with its 95 % bootstrap interval (test clips resampled):", "",
                     markdown_table(tables["heareval"], he_order, tasks, {})]
            more, frames = _differences_text(out, he, he_order, tasks, "heareval")
            text += more
            diffs["heareval"] = frames.get("random_init")
            he.to_csv(out / "final_heareval.csv", index=False)
    if tables:
        plot_final(tables, {p: d for p, d in diffs.items() if d is not None}, chance, out / "final.png")
    (out / "learning_curves.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    sys.exit(main())
