"""Mini-LAPE: the paper's comparison, at a small equal budget, on the offline demo data.

    python -m studies.mini_lape                      # 5 methods + 2 references
    python -m studies.mini_lape --ablations          # ... and SLICER's ablations
    python -m studies.mini_lape --methods slicer byol_a --pretrain-seeds 0 1 --out results/mini_lape_seeds
    python -m studies.mini_lape --steps 1200 --runs runs/mini_lape_1200 --out results/mini_lape_1200

1. builds the demo data if missing (``eval_suites.synthetic.demo_data``, cached);
2. pretrains SLICER, BYOL-A, DeLoRes-S, DeLoRes-M and COLA on the demo corpus with the same
   budget: the sizes of ``pretrain/configs/demo.yaml`` (batch 32, 600 steps, warm-up 50,
   augmentation memories 512, a 512-key queue where a method has one) applied to each
   method's own config (``pretrain/configs/<method>.yaml``), each run a real
   ``python -m pretrain`` process (``--parallel`` at a time; an unfinished run is resumed, a
   finished one reused after its config is checked);
3. adds two references that learn nothing: the encoder at random init (seed 0, with the
   SLICER run's normalisation statistics) and plain log-mel statistics
   (``eval_suites.references.logmel_stats``);
4. scores every model on the demo tasks (``eval_suites/manifests/demo.yaml``) with the linear
   protocol, once per probe seed (embeddings computed once, cached);
5. writes ``<out>/mini_lape.csv`` (one row per run, task and probe seed), ``mini_lape.md``
   (per method: mean and standard deviation over its pretraining seeds x probe seeds, methods
   ranked by their mean over tasks) and ``mini_lape.png``.

Each method is pretrained once per ``--pretrain-seeds`` (default: 0 only; the seed sets the
initialisation, the data order and the augmentations); the ablations once, with the first.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from eval_suites import quiet_heareval_imports
from eval_suites.synthetic.demo_data import PRESETS, build_demo
from eval_suites.core.manifest import ManifestError, ModelSpec, load_manifest

__all__ = ["METHODS", "ABLATIONS", "BUDGET", "PretrainRun", "plan_runs", "run_state",
           "aggregate", "markdown_table", "plot_table", "main"]

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "pretrain" / "configs"
DEMO_MANIFEST = REPO / "eval_suites" / "manifests" / "demo.yaml"

BUDGET: dict[str, str] = {
    "data.batch_size": "32",
    "data.num_workers": "1",
    "augment.mixup.memory": "512",
    "augment.kmix.memory": "512",
    "augment.kmix.r": "32",
    "stats.fraction": "0.25",
    "optim.warmup_steps": "50",
    "run.steps": "600",
    "run.checkpoint_every": "100",
    "run.keep_last": "2",
}
"""Overrides giving every method the budget and sizes of pretrain/configs/demo.yaml."""

METHODS: dict[str, tuple[str, dict[str, str]]] = {
    "slicer": ("slicer.yaml", {"objective.params.queue_size": "512"}),
    "byol_a": ("byol_a.yaml", {}),
    "delores_s": ("delores_s.yaml", {}),
    "delores_m": ("delores_m.yaml", {"objective.params.queue_size": "512"}),  # as SLICER's queue
    "cola": ("cola.yaml", {}),
}
"""Method -> (its config in pretrain/configs, overrides beyond BUDGET)."""

ABLATIONS: dict[str, dict[str, str]] = {
    "slicer_no_kmix": {"augment.kmix.enabled": "false"},
    "slicer_no_cluster": {"objective.params.cluster_weight": "0"},
    "slicer_no_entropy": {"objective.params.entropy_term": "false"},
    "slicer_queue128": {"objective.params.queue_size": "128"},
    "slicer_rrc_time_only": {"augment.rrc.frequency": "false"},
}
"""SLICER ablations (each on top of SLICER's demo config): one component changed."""

REFERENCES = ("random_init", "logmel_stats")


@dataclass
class PretrainRun:
    name: str
    config: Path
    overrides: dict[str, str]
    out: Path
    group: str = ""  # the method or ablation; runs differing only in their seed share it
    seed: int = 0

    def set_args(self) -> list[str]:
        return [f"{k}={v}" for k, v in {**self.overrides, "run.out": str(self.out)}.items()]


def plan_runs(runs_root: Path, corpus: Path, steps: int, methods: list[str], ablations: list[str],
              seeds: list[int] = (0,), overrides: dict[str, str] | None = None, tag: str = ""
              ) -> list[PretrainRun]:
    """The pretraining runs to have: each method once per pretraining seed, then each
    ablation with the first seed. A run is named after its method or ablation, then
    ``_<tag>`` when `overrides` (applied to every run) are tagged, then ``_seed<s>`` for
    seeds other than 0; results are grouped under the name without the seed."""
    common = {**BUDGET, "data.path": str(corpus), "run.steps": str(steps)}
    suffix = f"_{tag}" if tag else ""
    plan = [(m, METHODS[m][1]) for m in methods] + [(a, {**METHODS["slicer"][1], **ABLATIONS[a]}) for a in ablations]
    runs = []
    for label, extra in plan:
        config = METHODS[label][0] if label in METHODS else METHODS["slicer"][0]
        for s in (seeds if label in METHODS else seeds[:1]):
            group = label + suffix
            name = group if s == 0 else f"{group}_seed{s}"
            seed = {} if s == 0 else {"run.seed": str(s)}
            runs.append(PretrainRun(name, CONFIGS / config, {**common, **extra, **(overrides or {}), **seed},
                                    runs_root / name, group=group, seed=s))
    return runs


def _desired_config(run: PretrainRun) -> dict:
    from pretrain.config import load_config

    return load_config(str(run.config), run.set_args()).to_dict()


def _comparable(cfg: dict) -> dict:
    cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
    for key in ("out", "progress", "steps"):  # where it is written, how it shows, how far it has got
        cfg.get("run", {}).pop(key, None)
    if "data" in cfg and cfg["data"].get("path"):
        cfg["data"]["path"] = str(Path(cfg["data"]["path"]).resolve())
    return cfg


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} (run) vs {vb!r} (wanted)")
    return out


def run_state(run: PretrainRun, steps: int) -> tuple[str, Path | None]:
    """("done" | "partial" | "new", newest checkpoint). Raises ValueError when the run folder
    holds a run of another config (it is never overwritten)."""
    from pretrain.train import config_of_checkpoint

    found = sorted((run.out / "checkpoints").glob("step_*.pt"))
    if not found:
        return "new", None
    have = _comparable(config_of_checkpoint(found[-1]).to_dict())
    want = _comparable(_desired_config(run))
    diffs = _diff(have, want)
    if diffs:
        raise ValueError(f"{run.out} holds a run with another config; move it away or pick another --runs "
                         "folder. Differences: " + "; ".join(diffs))
    step = int(re.search(r"step_(\d+)", found[-1].name).group(1))
    if step > steps:
        raise ValueError(f"{run.out} holds a run of {step} steps, more than the {steps} asked for; "
                         "move it away or pick another --runs folder")
    return ("done" if step >= steps else "partial"), found[-1]


def _log_span_minutes(run_dir: Path) -> float:
    """Wall minutes from the first to the last line of the run's run.log (NaN if unknown)."""
    log = run_dir / "run.log"
    if not log.is_file():
        return math.nan
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\]", log.read_text(), flags=re.M)
    if len(stamps) < 2:
        return math.nan
    first, last = (datetime.strptime(s, "%Y-%m-%d %H:%M:%S") for s in (stamps[0], stamps[-1]))
    return (last - first).total_seconds() / 60


def pretrain_all(runs: list[PretrainRun], steps: int, parallel: int, threads: int | None,
                 train: bool = True) -> list[str]:
    """Train every run not yet done, `parallel` processes at a time; returns the names of the
    runs that failed (or, with ``train=False``, that are not finished)."""
    todo = []
    for run in runs:
        state, ckpt = run_state(run, steps)
        if state == "done":
            print(f"  {run.name}: done ({ckpt.name}), reused")
        else:
            todo.append((run, ckpt))
    if not train:
        for run, ckpt in todo:
            print(f"  {run.name}: not finished ({ckpt.name if ckpt else 'not started'}), left out (--no-train)")
        return [run.name for run, _ in todo]
    env = {**os.environ}
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    active: list[tuple[PretrainRun, subprocess.Popen, float]] = []
    failed = []
    while todo or active:
        while todo and len(active) < parallel:
            run, ckpt = todo.pop(0)
            run.out.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "pretrain"]
            cmd += ["--resume", str(ckpt)] if ckpt else ["--config", str(run.config)]
            cmd += ["--set", *run.set_args()]
            log = open(run.out.parent / f"{run.name}.out", "a")
            verb = f"resuming from {ckpt.name}" if ckpt else "training"
            print(f"  {run.name}: {verb} (log: {log.name})", flush=True)
            active.append((run, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO),
                           time.time()))
            log.close()
        time.sleep(2)
        for item in list(active):
            run, proc, t0 = item
            if proc.poll() is None:
                continue
            active.remove(item)
            took = (time.time() - t0) / 60
            if proc.returncode == 0:
                print(f"  {run.name}: finished in {took:.1f} min", flush=True)
            else:
                print(f"  {run.name}: FAILED (exit {proc.returncode}); see {run.out.parent / (run.name + '.out')}",
                      flush=True)
                failed.append(run.name)
    return failed


def export_run(run: PretrainRun) -> Path:
    """The slim embedding checkpoint of the run's final step (written once)."""
    from hear_slicer.checkpoint import load_checkpoint, save_checkpoint
    from pretrain.export import slim

    target = run.out / f"{run.name}.pt"
    final = sorted((run.out / "checkpoints").glob("step_*.pt"))[-1]
    if not target.is_file() or target.stat().st_mtime < final.stat().st_mtime:
        save_checkpoint(slim(load_checkpoint(final)), target)
    return target


def random_init_checkpoint(like: Path, target: Path) -> Path:
    """A checkpoint of the encoder at random init (seed 0, as hear_slicer's fallback) carrying
    `like`'s frontend and normalisation statistics, so only the learned weights differ."""
    import torch

    from hear_slicer.api import RANDOM_INIT_SEED
    from hear_slicer.checkpoint import load_checkpoint, save_checkpoint
    from hear_slicer.encoder import AudioNTT2020

    ckpt = load_checkpoint(like)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        encoder = AudioNTT2020(ckpt.encoder)
    ref = dataclasses.replace(ckpt, student=encoder.state_dict(), teacher=None, use="student",
                              training_state=None, train_config={},
                              provenance={"objective": "none (random init)", "seed": RANDOM_INIT_SEED,
                                          "norm_stats_from": str(like)})
    save_checkpoint(ref, target)
    return target


def evaluate(models: list[ModelSpec], tasks_root: Path, out: Path, seeds: list[int],
             tasks: list[str] | None, progress: bool, cache: Path | None = None) -> pd.DataFrame:
    """Linear protocol on the demo tasks, once per probe seed; the long table of test scores."""
    from eval_suites.core.runner import run_manifest

    rows = []
    for seed in seeds:
        manifest = load_manifest(DEMO_MANIFEST, tasks_root=tasks_root).select(None, tasks)
        manifest.models = models
        manifest.tasks = [dataclasses.replace(t, protocols=("linear",)) for t in manifest.tasks]
        manifest.linear = dataclasses.replace(manifest.linear, seed=seed)
        manifest.cache_dir = cache or out / "embeddings"
        print(f"  probe seed {seed}: {len(models)} models x {len(manifest.tasks)} tasks", flush=True)
        for r in run_manifest(manifest, out / f"seed{seed}", progress=progress):
            if r.model not in {m.name for m in models}:
                continue
            p = r.primary
            rows.append(dict(model=r.model, task=r.task, seed=seed, metric=p.metric if p else "",
                             value=p.value if p else math.nan, status=r.status, error=r.error or ""))
    return pd.DataFrame(rows, columns=["model", "task", "seed", "metric", "value", "status", "error"])



def aggregate(long: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per group (method, ablation or reference; column ``group``, default ``model``) and task:
    mean, std and count over its scores (every pretraining run x probe seed); plus the
    group's mean over tasks, averaged per (run, probe seed) first, so that its std is the
    spread of those means. Column ``model`` of the result holds the group."""
    ok = long[long.status == "ok"].copy()
    ok["group"] = ok["group"] if "group" in ok else ok["model"]
    per_task = ok.groupby(["group", "task"]).value.agg(["mean", "std", "count"]).reset_index()
    per_seed_mean = ok.groupby(["group", "model", "seed"]).value.mean().reset_index()
    overall = per_seed_mean.groupby("group").value.agg(["mean", "std", "count"]).reset_index()
    overall["task"] = "mean"
    table = pd.concat([per_task, overall], ignore_index=True).rename(columns={"group": "model"})
    table["model"] = pd.Categorical(table.model, categories=[m for m in order if m in set(table.model)],
                                    ordered=True)
    return table.sort_values(["model", "task"]).reset_index(drop=True)


def _fmt(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")


def markdown_table(table: pd.DataFrame, models: list[str], tasks: list[str], notes: dict[str, str]) -> str:
    """Models ranked by their mean; cells "mean ± std over probe seeds"."""
    means = table[table.task == "mean"].set_index("model")["mean"]
    ranked = sorted((m for m in models if m in means.index), key=lambda m: -means[m])
    ranked += [m for m in models if m not in means.index]
    cols = tasks + ["mean"]
    lines = ["| rank | model | " + " | ".join(cols) + " | notes |",
             "|---|---|" + "---|" * len(cols) + "---|"]
    cell = {(r.model, r.task): _fmt(r["mean"], r["std"]) for _, r in table.iterrows()}
    for i, m in enumerate(ranked, 1):
        vals = [cell.get((m, t), "—") for t in cols]
        vals[-1] = f"**{vals[-1]}**"
        lines.append(f"| {i} | {m} | " + " | ".join(vals) + f" | {notes.get(m, '')} |")
    return "\n".join(lines)


def plot_table(table: pd.DataFrame, groups: list[tuple[str, list[str]]], tasks: list[str], path: Path) -> Path:
    """Grouped bars (task x model) with the std over probe seeds, one panel per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = tasks + ["mean"]
    groups = [(title, [m for m in ms if m in set(table.model)]) for title, ms in groups]
    groups = [(title, ms) for title, ms in groups if ms]
    every = list(dict.fromkeys(m for _, ms in groups for m in ms))
    colors = {m: plt.get_cmap("tab20" if len(every) > 10 else "tab10")(i) for i, m in enumerate(every)}
    fig, axes = plt.subplots(len(groups), 1, figsize=(max(9, 1.7 * len(cols) + 2), 3.6 * len(groups)), squeeze=False)
    for ax, (title, ms) in zip(axes[:, 0], groups):
        width = 0.8 / len(ms)
        x = np.arange(len(cols))
        for i, m in enumerate(ms):
            sub = table[table.model == m].set_index("task")
            means = [sub["mean"].get(t, np.nan) for t in cols]
            stds = [sub["std"].get(t, np.nan) for t in cols]
            hatch = "//" if m in REFERENCES else None
            ax.bar(x + (i - (len(ms) - 1) / 2) * width, means, width, yerr=np.nan_to_num(stds),
                   label=m, hatch=hatch, capsize=2, edgecolor="black", linewidth=0.4, color=colors[m])
        ax.set_xticks(x, cols)
        ax.set_ylim(0, 1)
        ax.set_ylabel("test score (linear probe)")
        ax.set_title(title)
        ax.axvline(len(tasks) - 0.5, color="grey", linewidth=0.8)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    quiet_heareval_imports()
    ap = argparse.ArgumentParser(prog="python -m studies.mini_lape", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("demo_data"), help="demo data folder (built if missing)")
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS), help="demo data size (default: small)")
    ap.add_argument("--runs", type=Path, default=Path("runs/mini_lape"), help="pretraining runs folder")
    ap.add_argument("--out", type=Path, default=Path("results/mini_lape"), help="results folder")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--ablations", nargs="*", default=None, choices=list(ABLATIONS),
                    help="also run SLICER ablations (no names: all of them)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                    help="config overrides applied to every run (e.g. augment.rrc.frequency=false); needs --tag")
    ap.add_argument("--tag", default="", help="suffix of the run names (<method>_<tag>) for --set variants")
    ap.add_argument("--no-train", action="store_true",
                    help="train nothing: evaluate the runs already finished, leave the others out")
    ap.add_argument("--no-references", action="store_true", help="skip the random-init and log-mel references")
    ap.add_argument("--steps", type=int, default=int(BUDGET["run.steps"]), help="pretraining steps per method")
    ap.add_argument("--pretrain-seeds", type=int, nargs="+", default=[0],
                    help="pretraining seeds of each method (ablations: the first only); default 0")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="linear-probe seeds (default 0 1 2)")
    ap.add_argument("--tasks", nargs="+", default=None, help="only these demo tasks (names in demo.yaml)")
    ap.add_argument("--parallel", type=int, default=2,
                    help="pretraining processes at a time (default 2: on a 2-core CPU two 1-thread runs "
                         "train about 1.4x faster together than one after the other)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per pretraining process (default: CPU cores / --parallel)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="embeddings cache (default: <out>/embeddings); share one between result folders")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.parallel < 1 or (args.threads is not None and args.threads < 1):
        ap.error("--steps, --parallel and --threads must be >= 1")
    if len(set(args.pretrain_seeds)) != len(args.pretrain_seeds) or min(args.pretrain_seeds) < 0:
        ap.error("--pretrain-seeds must be distinct integers >= 0")
    if bool(args.overrides) != bool(args.tag) or not re.fullmatch(r"[A-Za-z0-9_.-]*", args.tag):
        ap.error("--set and --tag go together (the tag names the variant's runs: letters, digits, _ . -)")
    bad = [o for o in args.overrides if "=" not in o or o.split("=", 1)[0] in ("run.out", "run.steps", "run.seed")]
    if bad:
        ap.error(f"--set takes KEY=VALUE pairs other than run.out/run.steps/run.seed (use --runs, --steps, "
                 f"--pretrain-seeds): {bad}")
    overrides = dict(o.split("=", 1) for o in args.overrides)
    ablations = list(ABLATIONS) if args.ablations == [] else (args.ablations or [])
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.parallel)
    t0 = time.time()

    print(f"[1/4] Demo data ({args.preset}) in {args.root}/")
    build_demo(args.root, preset=args.preset, progress=not args.no_progress)

    runs = plan_runs(args.runs, args.root / "corpus", args.steps, args.methods, ablations, args.pretrain_seeds,
                     overrides, args.tag)
    print(f"[2/4] Pretraining {len(runs)} run(s), {args.steps} steps each, in {args.runs}/ "
          f"({args.parallel} at a time, {threads} thread(s) each)")
    try:
        failed = pretrain_all(runs, args.steps, args.parallel, threads, train=not args.no_train)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = [r for r in runs if r.name not in failed]

    print("[3/4] Models: exported checkpoints and references")
    models, group_of, minutes, exported = [], {}, {}, {}
    for run in done:
        exported[run.name] = export_run(run)
        models.append(ModelSpec(name=run.name, module="hear_slicer", checkpoint=exported[run.name].resolve(),
                                options={}))
        group_of[run.name] = run.group
        minutes.setdefault(run.group, {})[run.seed] = _log_span_minutes(run.out)
    notes = {g: f"seed{'s' if len(m) > 1 else ''} {', '.join(map(str, m))}; "
                + " / ".join("?" if math.isnan(v) else f"{v:.0f}" for v in m.values()) + " min"
             for g, m in minutes.items()}
    if not args.no_references:
        like = next((r for r in done if r.group.startswith("slicer") and r.seed == args.pretrain_seeds[0]),
                    done[0] if done else None)
        if like is not None:
            ref = random_init_checkpoint(exported[like.name], args.runs / f"random_init_{like.name}.pt")
            models.append(ModelSpec(name="random_init", module="hear_slicer", checkpoint=ref.resolve(), options={}))
            notes["random_init"] = f"no training (init seed 0); {like.name}'s normalisation"
        models.append(ModelSpec(name="logmel_stats", module="eval_suites.references.logmel_stats",
                                checkpoint=None, options={}))
        notes["logmel_stats"] = "no training; log-mel mean + std"
    for m in models:
        print(f"  {m.name}: {m.checkpoint or m.module}")

    print(f"[4/4] Linear protocol on the demo tasks, probe seeds {args.seeds}")
    try:
        long = evaluate(models, args.root / "tasks", args.out, args.seeds, args.tasks, not args.no_progress,
                        args.cache)
    except ManifestError as e:
        print(e, file=sys.stderr)
        return 2
    long.insert(0, "group", [group_of.get(m, m) for m in long.model])
    order = list(dict.fromkeys(group_of.get(m.name, m.name) for m in models))
    table = aggregate(long, order)
    tasks = [t for t in dict.fromkeys(long.task)]
    args.out.mkdir(parents=True, exist_ok=True)
    long.to_csv(args.out / "mini_lape.csv", index=False)
    suffix = f"_{args.tag}" if args.tag else ""
    slicer = "slicer" + suffix
    main_models = [g for g in order if g in {m + suffix for m in METHODS} or g in REFERENCES]
    ablation_models = [g for g in order if g in {a + suffix for a in ablations}]
    variant = f" with {' '.join(args.overrides)} for every run" if args.overrides else ""
    text = [f"Linear probe on the demo tasks ({args.steps} pretraining steps per run{variant}): test score, "
            f"mean ± std over every pretraining run x probe seed {args.seeds}; models ranked by their mean "
            "over tasks.", "", markdown_table(table, main_models, tasks, notes)]
    if ablation_models:
        text += ["", f"SLICER ablations (one component changed each; pretraining seed {args.pretrain_seeds[0]}):", "",
                 markdown_table(table, [slicer] + ablation_models + ["random_init"], tasks, notes)]
    (args.out / "mini_lape.md").write_text("\n".join(text) + "\n")
    groups = [(f"Mini-LAPE: five methods, same budget{variant}, and two references", main_models)]
    if ablation_models:
        groups.append(("SLICER ablations", [slicer] + ablation_models + ["random_init"]))
    plot_table(table, groups, tasks, args.out / "mini_lape.png")
    print("\n".join(text))
    bad = long[long.status != "ok"]
    for _, r in bad.iterrows():
        print(f"FAILED cell {r.model}/{r.task} seed {r.seed}: {r.error}", file=sys.stderr)
    print(f"\nwrote {args.out / 'mini_lape.md'}, {args.out / 'mini_lape.csv'}, {args.out / 'mini_lape.png'} "
          f"({(time.time() - t0) / 60:.1f} min)")
    return 1 if (failed and not args.no_train) or len(bad) else 0


if __name__ == "__main__":
    sys.exit(main())
