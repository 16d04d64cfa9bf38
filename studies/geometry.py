"""The geometry of the learning-curve models' embeddings, measured without a probe.

    python -m studies.geometry --runs /data/runs/lc          # after studies.learning_curves

For each recorded curve point of ``studies/results/learning_curves/points.json`` (and the
random-init and log-mel references) and each study task, on the task's **validation** split:

- **effective rank** (Roy & Vetterli, "The effective rank: a measure of effective
  dimensionality", EUSIPCO 2007): ``exp(H(p))`` with ``p_k = s_k / sum(s)`` the normalised
  singular values of the centred embeddings; how many directions the clips really use.
- **uniformity** (Wang & Isola, "Understanding contrastive representation learning through
  alignment and uniformity on the hypersphere", ICML 2020, t = 2): ``log E exp(-2 ||z_i - z_j||^2)``
  over pairs of L2-normalised embeddings; lower is more uniform on the sphere.
- **class alignment**: Wang & Isola's alignment (alpha = 2), ``E ||z_i - z_j||^2``, over pairs
  of clips **of the same label** instead of the paper's augmented views of one clip (those
  pairs need the training augmentations; label pairs ask what a task needs); lower is tighter.
- **separation**: mean squared distance of pairs of different labels over that of pairs of
  the same label (> 1: a task's classes sit apart on the sphere; scale-free).

Embeddings come from (and go to) the study's embedding cache (``<runs>/embeddings``), so the
models the study scored are not embedded again. Writes ``<out>/geometry.csv``,
``geometry.md`` and ``geometry.png`` (mean over tasks against steps, references as lines).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from eval_suites import quiet_heareval_imports
from eval_suites.core.manifest import ModelSpec
from eval_suites.errors import run_command

__all__ = ["effective_rank", "uniformity", "class_pairs_sq_dist", "geometry", "main"]

METRICS = ("effective_rank", "uniformity", "class_alignment", "separation")
LOWER_IS_BETTER = {"uniformity", "class_alignment"}


# ----------------------------------------------------------------------------- the measures
def effective_rank(x: np.ndarray) -> float:
    """Roy & Vetterli's effective rank of the centred rows of ``x`` (n, D)."""
    s = np.linalg.svd(x - x.mean(axis=0, keepdims=True), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _sq_dists(z: np.ndarray) -> np.ndarray:
    """(n, n) squared Euclidean distances of unit rows (2 - 2 cos)."""
    return np.clip(2.0 - 2.0 * z @ z.T, 0.0, 4.0)


def uniformity(x: np.ndarray, t: float = 2.0) -> float:
    """Wang & Isola's uniformity loss of the L2-normalised rows of ``x`` over all pairs i < j."""
    d = _sq_dists(_unit(x))
    iu = np.triu_indices(len(x), k=1)
    return float(np.log(np.mean(np.exp(-t * d[iu]))))


def class_pairs_sq_dist(x: np.ndarray, labels: list[str]) -> tuple[float, float]:
    """(mean squared distance of same-label pairs, of different-label pairs) of the unit rows."""
    d = _sq_dists(_unit(x))
    lab = np.asarray(labels)
    same = lab[:, None] == lab[None, :]
    iu = np.triu_indices(len(x), k=1)
    same, d = same[iu], d[iu]
    if not same.any() or same.all():
        return math.nan, math.nan
    return float(d[same].mean()), float(d[~same].mean())


def geometry(x: np.ndarray, labels: list[str]) -> dict[str, float]:
    """The four measures of one model's embeddings ``x`` (n, D) of one task's clips."""
    within, between = class_pairs_sq_dist(x, labels)
    return {"effective_rank": effective_rank(x), "uniformity": uniformity(x), "class_alignment": within,
            "separation": between / within if within > 0 else math.nan}


# ----------------------------------------------------------------------------- the models
def models_of(points: dict[str, dict], runs: Path) -> list[tuple[ModelSpec, str, int]]:
    """(spec, group, step) of every recorded curve point, as studies.learning_curves scored it."""
    from .learning_curves import REFERENCES, point_spec, reference_spec

    out = []
    for key, ident in points.items():
        if not key.startswith("curve:"):
            continue
        name = key.split(":", 1)[1]
        group, step = ident.get("group", name), int(ident.get("step") or 0)
        spec = reference_spec(name, runs) if name in REFERENCES else point_spec(name, group, runs)
        out.append((spec, group, step))
    return out


def measure(models, tasks, cache: Path, progress: bool) -> pd.DataFrame:
    """One row per (model, task) with the four measures on the task's validation split."""
    from eval_suites.core.embeddings import ensure_embeddings, load_hear_model, read_split
    from hear_slicer.progress import Progress

    rows = []
    bar = Progress(total=len(models) * len(tasks), desc="geometry", unit="cell", enabled=progress)
    for spec, group, step in models:
        if spec.checkpoint is not None and not Path(spec.checkpoint).is_file():
            print(f"  {spec.name}: checkpoint {spec.checkpoint} not found, left out", file=sys.stderr)
            bar.update(len(tasks))
            continue
        for task in tasks:
            d = ensure_embeddings(spec, task.path, cache, lambda: load_hear_model(spec, device="cpu"),
                                  progress=False)
            split = read_split(d, "valid")
            labels = [lab[0] if lab else "" for lab in split.labels]
            rows.append({"model": spec.name, "group": group, "step": step, "task": task.name,
                         **geometry(split.x, labels)})
            bar.done(f"{spec.name} / {task.name}")
    bar.close()
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the report
def report(df: pd.DataFrame, out: Path) -> str:
    mean = df.groupby(["group", "step", "model"])[list(METRICS)].mean().reset_index().sort_values(["group", "step"])
    lines = ["Embedding geometry on the study tasks' **validation** splits, mean over tasks "
             "(per task in `geometry.csv`). Effective rank: Roy & Vetterli 2007; uniformity (t = 2, lower "
             "is more uniform) and class alignment (alpha = 2 over same-label pairs, lower is tighter): Wang & "
             "Isola 2020; separation: mean squared distance of different-label pairs over same-label pairs.", "",
             "| model | step | effective rank | uniformity | class alignment | separation |", "|---|---|---|---|---|---|"]
    for _, r in mean.iterrows():
        lines.append(f"| {r.model} | {int(r.step)} | {r.effective_rank:.1f} | {r.uniformity:.3f} | "
                     f"{r.class_alignment:.3f} | {r.separation:.3f} |")
    text = "\n".join(lines) + "\n"
    (out / "geometry.md").write_text(text)
    plot(mean, out / "geometry.png")
    return text


def plot(mean: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .labels import label
    from .learning_curves import _step_axis

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.6 * len(METRICS), 3.8))
    refs = {"random_init": ("black", "--"), "logmel_stats": ("grey", ":")}
    for ax, metric in zip(axes, METRICS):
        for group, g in mean.groupby("group"):
            if group in refs:
                color, style = refs[group]
                ax.axhline(g[metric].iloc[0], color=color, linestyle=style, label=label(group))
            else:
                ax.plot(g.step, g[metric], marker="o", label=label(group))
        _step_axis(ax, sorted(s for s in mean.step.unique() if s > 0))
        if metric == "effective_rank":
            ax.set_ylim(bottom=0)  # a count of directions: from 0, not cut
        ax.set_xlabel("pretraining step (log axis)")
        ax.set_title(metric.replace("_", " ") + (" (lower: more)" if metric in LOWER_IS_BETTER else ""), fontsize=10)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle("Embedding geometry on the study tasks' validation splits (mean over tasks)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    quiet_heareval_imports()
    ap = argparse.ArgumentParser(prog="python -m studies.geometry", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, required=True, help="the learning-curve study's --runs folder")
    ap.add_argument("--root", type=Path, default=Path("demo_data_study"), help="the study's data folder")
    ap.add_argument("--points", type=Path, default=Path("studies/results/learning_curves"),
                    help="folder of the study's points.json")
    ap.add_argument("--out", type=Path, default=None, help="results (default <points>/geometry)")
    ap.add_argument("--manifest", type=Path, default=None, help="the tasks (default the study manifest)")
    ap.add_argument("--tasks", nargs="+", default=None, help="only these tasks (names)")
    ap.add_argument("--models", nargs="+", default=None, help="only these points (names in points.json)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = ap.parse_args(argv)
    return run_command(lambda: _run(args), debug=args.debug)


def _run(args) -> int:
    from eval_suites.core.manifest import load_manifest
    from eval_suites.errors import UsageError

    from .learning_curves import STUDY_MANIFEST, load_points

    manifest = load_manifest(args.manifest or STUDY_MANIFEST, tasks_root=args.root / "tasks")
    manifest = manifest.select(None, args.tasks)
    points = load_points(args.points)
    models = models_of(points, args.runs.resolve())
    if args.models:
        unknown = sorted(set(args.models) - {s.name for s, _, _ in models})
        if unknown:
            raise UsageError(f"--models: no recorded curve point named {unknown}; "
                             f"expected some of {sorted(s.name for s, _, _ in models)}")
        models = [m for m in models if m[0].name in args.models]
    if not models:
        raise UsageError(f"{args.points / 'points.json'}: no curve point recorded; run studies.learning_curves first")
    out = args.out or args.points / "geometry"
    out.mkdir(parents=True, exist_ok=True)
    df = measure(models, manifest.tasks, args.runs / "embeddings", not args.no_progress)
    df.to_csv(out / "geometry.csv", index=False)
    print(report(df, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
