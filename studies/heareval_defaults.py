"""Choose the heareval protocol's settings for the shipped small manifests, on validation data.

    python -m studies.heareval_defaults            # every candidate, then the table
    python -m studies.heareval_defaults --candidates today lr1e-3_std     # some of them

Each candidate (a ``protocols.heareval`` setting, :data:`CANDIDATES`) runs heareval's MLP,
one grid point, on the demo tasks (``small`` preset, built if missing; the events task is
left out: its frame-level MLP takes most of the time and the other five tasks are scene
tasks of the same size as the study's) for three models: the default model, the same
architecture at random init, and log-mel statistics. The choice is the candidate with
the best mean **validation** score (heareval's own: the selected epoch's score on the
valid split, ``details.validation`` of each cell) over models and tasks; test scores are
written beside it for the report only, never for the choice.

Writes ``<table>/cells.csv`` (one row per candidate, model and task) and ``<table>/table.md``
(means per candidate and model); the cells and embeddings go to ``--out``. The figures in docs/eval.md came from

    python -m studies.heareval_defaults --no-progress
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import pandas as pd

from eval_suites import quiet_heareval_imports
from eval_suites.core.manifest import ModelSpec, load_manifest
from eval_suites.core.protocols.heareval import HearevalConfig
from eval_suites.core.results import cell_dir, load_cell
from eval_suites.errors import run_command
from eval_suites.synthetic.demo_data import build_demo

from .mini_lape import DEMO_MANIFEST

__all__ = ["CANDIDATES", "MODELS", "main"]

_FIXED = {"batch_size": [32], "hidden_layers": [1], "hidden_dim": [1024], "check_val_every_n_epoch": [1]}
CANDIDATES: dict[str, dict] = {
    # the manifests' setting before this study: heareval's "faster" grid drew lr 1e-4,
    # patience 3, one hidden layer of 64, for every task (its seed is fixed)
    "today": dict(grid="faster", grid_points=1, param_grid={"batch_size": [32], "max_epochs": [30]}),
    "lr1e-3": dict(grid="faster", grid_points=1,
                   param_grid={**_FIXED, "lr": [1e-3], "patience": [10], "max_epochs": [100]}),
    "lr1e-3_std": dict(grid="faster", grid_points=1, standardize=True,
                       param_grid={**_FIXED, "lr": [1e-3], "patience": [10], "max_epochs": [100]}),
}
"""Candidate ``protocols.heareval`` settings; the fixed ones pin heareval's grid to one point
(its ``initialization`` alone stays drawn, by heareval's fixed seed)."""

MODELS = [
    ModelSpec(name="slicer", module="hear_slicer", checkpoint=None, options={}),
    ModelSpec(name="random_init", module="hear_slicer", checkpoint=None, options={"random_init": True}),
    ModelSpec(name="logmel_stats", module="eval_suites.references.logmel_stats", checkpoint=None, options={}),
]
"""The default model and its two references, as the demo shows them."""

LEFT_OUT = ("events",)


def run_candidate(name: str, tasks_root: Path, out: Path, cache: Path, progress: bool) -> list[str]:
    """Run one candidate's cells into ``<out>/<name>``; returns the task names."""
    from eval_suites.core.runner import run_manifest

    manifest = load_manifest(DEMO_MANIFEST, tasks_root=tasks_root)
    manifest.models = list(MODELS)
    manifest.tasks = [dataclasses.replace(t, protocols=("heareval",)) for t in manifest.tasks
                      if t.name not in LEFT_OUT]
    manifest.heareval = HearevalConfig(**CANDIDATES[name])
    manifest.cache_dir = cache
    print(f"candidate {name}: {CANDIDATES[name]}", flush=True)
    run_manifest(manifest, out / name, progress=progress)
    return [t.name for t in manifest.tasks]


def scores(out: Path, candidates: list[str], tasks: list[str]) -> pd.DataFrame:
    """One row per (candidate, model, task): heareval's validation score (``valid``) and test
    score (``test``) of the task's first metric, the epoch and hyper-parameters it selected."""
    rows = []
    for cand in candidates:
        for model in (m.name for m in MODELS):
            for task in tasks:
                path = cell_dir(out / cand, model, task, "heareval") / "result.json"
                r = load_cell(path) if path.is_file() else None
                p = r.primary if r else None
                v = (r.details.get("validation") or {}) if r and r.ok else {}
                h = (r.details.get("hparams") or {}) if r and r.ok else {}
                rows.append(dict(candidate=cand, model=model, task=task, metric=p.metric if p else "",
                                 valid=v.get("value", math.nan), test=p.value if p else math.nan,
                                 epoch=(v.get("folds") or [{}])[0].get("epoch"), lr=h.get("lr"),
                                 patience=h.get("patience"), hidden_dim=h.get("hidden_dim"),
                                 standardize=bool(r.details.get("standardize")) if r and r.ok else None,
                                 status=r.status if r else "missing"))
    return pd.DataFrame(rows)


def _setting(candidate: dict) -> str:
    """'grid faster, lr 0.001, patience 10, ..., standardize': a candidate in one line."""
    pinned = [f"{k} {v[0] if len(v) == 1 else v}" for k, v in (candidate.get("param_grid") or {}).items()]
    return ", ".join([f"grid {candidate['grid']}", *pinned] + (["standardize"] if candidate.get("standardize") else []))


def markdown(long: pd.DataFrame, tasks: list[str]) -> tuple[str, str]:
    """(the table, the chosen candidate): mean validation / test per candidate and model."""
    ok = long[long.status == "ok"]
    overall = ok.groupby("candidate")[["valid", "test"]].mean()
    chosen = overall["valid"].idxmax()
    per_model = ok.groupby(["candidate", "model"])[["valid", "test"]].mean()
    models = [m.name for m in MODELS]
    lines = ["| candidate | setting | mean validation | mean test | "
             + " | ".join(f"{m} (valid / test)" for m in models) + " |",
             "|---|---|---|---|" + "---|" * len(models)]
    for cand in dict.fromkeys(long.candidate):
        cells = [f"{per_model.loc[(cand, m), 'valid']:.3f} / {per_model.loc[(cand, m), 'test']:.3f}"
                 if (cand, m) in per_model.index else "n/a" for m in models]
        mark = " (chosen)" if cand == chosen else ""
        setting = _setting(CANDIDATES[cand])
        lines.append(f"| {cand}{mark} | {setting} | {overall.loc[cand, 'valid']:.3f} | "
                     f"{overall.loc[cand, 'test']:.3f} | " + " | ".join(cells) + " |")
    per_task = ok.set_index(["candidate", "model", "task"])[["valid", "test"]]
    detail = ["| candidate | model | " + " | ".join(f"{t} (valid / test)" for t in tasks) + " |",
              "|---|---|" + "---|" * len(tasks)]
    for cand in dict.fromkeys(long.candidate):
        for m in models:
            cells = [f"{per_task.loc[(cand, m, t), 'valid']:.3f} / {per_task.loc[(cand, m, t), 'test']:.3f}"
                     if (cand, m, t) in per_task.index else "n/a" for t in tasks]
            detail.append(f"| {cand} | {m} | " + " | ".join(cells) + " |")
    text = ("heareval's MLP, one grid point, on the demo tasks (small preset; events left out); "
            "chosen by the mean validation score over models and tasks (test shown for the report "
            "only).\n\n" + "\n".join(lines)
            + "\n\nPer task (the task's first metric):\n\n" + "\n".join(detail) + "\n")
    failed = long[long.status != "ok"]
    if len(failed):
        text += f"\n{len(failed)} cell(s) not ok: " + ", ".join(
            f"{r.candidate}/{r.model}/{r.task} ({r.status})" for r in failed.itertuples()) + "\n"
    return text, chosen


def main(argv: list[str] | None = None) -> int:
    quiet_heareval_imports()
    ap = argparse.ArgumentParser(prog="python -m studies.heareval_defaults", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES),
                    help="candidates to run (default: all); the table lists every candidate with cells")
    ap.add_argument("--root", type=Path, default=Path("demo_data"), help="demo data (small preset; built if missing)")
    ap.add_argument("--out", type=Path, default=Path("results/heareval_defaults"), help="cells and embeddings")
    ap.add_argument("--cache", type=Path, default=None, help="embeddings cache (default: <out>/embeddings)")
    ap.add_argument("--table", type=Path, default=Path("studies/results/heareval_defaults"),
                    help="folder of cells.csv and table.md")
    ap.add_argument("--table-only", action="store_true", help="write the table from the cells already run")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = ap.parse_args(argv)
    return run_command(lambda: _study(args), debug=args.debug)


def _study(args: argparse.Namespace) -> int:
    build_demo(args.root, preset="small", progress=not args.no_progress)
    tasks = [t.name for t in load_manifest(DEMO_MANIFEST, tasks_root=args.root / "tasks").tasks
             if t.name not in LEFT_OUT]
    if not args.table_only:
        for name in args.candidates:
            run_candidate(name, args.root / "tasks", args.out, args.cache or args.out / "embeddings",
                          not args.no_progress)
    ran = [c for c in CANDIDATES if (args.out / c / "cells").is_dir()]
    long = scores(args.out, ran, tasks)
    text, chosen = markdown(long, tasks)
    args.table.mkdir(parents=True, exist_ok=True)
    long.to_csv(args.table / "cells.csv", index=False)
    (args.table / "table.md").write_text(text)
    print(text)
    print(f"chosen: {chosen}")
    return 0 if (long.status == "ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
