"""Bootstrap confidence intervals for test scores: one cell, a mean over tasks, several
pretraining runs, and the paired difference between two models. Pure: arrays in, numbers out.

Legend: M test clips of a fold (files for event tasks), C labels, B bootstrap resamples
(``n_boot``), R pretraining runs of a model, P repeats of a run (e.g. probe seeds).

What is resampled
-----------------
- **Clips.** A resample draws M clips with replacement from the test clips of each fold
  (each fold on its own for k-fold tasks, the cell's score being the mean over folds, as
  reported). The draw is a function of (``seed``, task name, fold, M) only, so every model
  and every run scored on a task sees the *same* resampled test sets: a difference between
  two models is a paired bootstrap, and several runs share the test-set noise they really
  share. The metric is recomputed on each resample from the per-clip outputs.
- **Pretraining runs** (where a model has R > 1): each resample also draws R runs with
  replacement (one draw per model, shared by all tasks, since a run is one pretrained
  encoder used on every task) and averages them; the repeats of a run (probe seeds) are
  averaged, not resampled. With R = 1 this is the clip bootstrap.
- The interval is the percentile interval of the B resampled statistics at ``level``.

Metrics recomputed (heareval's definitions, checked against ``heareval.score`` in the tests):
``top1_acc`` / ``pitch_acc`` (argmax of scores equals argmax of targets), ``chroma_acc``
(the same modulo 12), ``mAP`` (macro average precision, sklearn's step-wise definition; a
class without positives in a resample scores 0, as sklearn does) and event F-measures
(``event_onset_200ms_fms`` and the other ``*_fms``): sed_eval's overall (micro) F-measure is
2 TP / (N_sys + N_ref) summed over files and labels, and sed_eval scores each file on its
own, so the per-file counts give the exact F of any resample of files. Event tasks are
resampled by file (the clip), never by frame.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

__all__ = ["BootstrapConfig", "FoldOutputs", "CellOutputs", "Interval", "SUPPORTED_METRICS",
           "supports", "resample_weights", "metric_on_resamples", "point_value", "cell_replicates",
           "percentile_interval", "bootstrap_cell", "bootstrap_mean", "model_intervals",
           "difference_intervals", "format_interval"]

SUPPORTED_METRICS = ("top1_acc", "pitch_acc", "chroma_acc", "mAP", "*_fms")
"""Metrics that can be recomputed on a resample (``*_fms``: heareval's event F-measures)."""
_CHUNK = 10_000_000  # drawn clips handled at once (B' x M), a few hundred MB at most


@dataclass(frozen=True)
class BootstrapConfig:
    """``n_boot`` resamples, percentile interval at ``level``, fixed ``seed``."""

    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 2:
            raise ValueError(f"bootstrap n_boot: expected an integer >= 2, got {self.n_boot!r}")
        if (isinstance(self.level, bool) or not isinstance(self.level, (int, float))
                or not 0 < self.level < 1):
            raise ValueError(f"bootstrap level: expected a number in (0, 1), e.g. 0.95, got {self.level!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"bootstrap seed: expected an integer >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class FoldOutputs:
    """Per-clip test outputs of one fold.

    ids: (M,) clip (event tasks: file) names. Scene tasks: ``targets`` (M, C) 0/1 and
    ``scores`` (M, C) predicted scores. Event tasks: ``counts`` {metric: (M, 3)} per-file
    (true positives, system events, reference events) of that event metric.
    """

    ids: np.ndarray
    targets: np.ndarray | None = None
    scores: np.ndarray | None = None
    counts: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = len(self.ids)
        if len(set(self.ids.tolist())) != m:
            raise ValueError(f"per-clip outputs: clip ids repeat ({m} ids, {len(set(self.ids.tolist()))} distinct)")
        if (self.targets is None) != (self.scores is None):
            raise ValueError("per-clip outputs: targets and scores go together")
        if self.targets is not None and not (self.targets.shape == self.scores.shape and self.targets.ndim == 2
                                             and self.targets.shape[0] == m):
            raise ValueError(f"per-clip outputs: expected targets and scores of shape ({m}, C), got "
                             f"{self.targets.shape} and {self.scores.shape}")
        for name, c in self.counts.items():
            if c.shape != (m, 3):
                raise ValueError(f"per-clip outputs: counts of {name!r} must have shape ({m}, 3), got {c.shape}")

    def take(self, order: np.ndarray) -> "FoldOutputs":
        """The same outputs with clips in ``order`` (an index array)."""
        return FoldOutputs(self.ids[order], None if self.targets is None else self.targets[order],
                           None if self.scores is None else self.scores[order],
                           {k: v[order] for k, v in self.counts.items()})


@dataclass(frozen=True)
class CellOutputs:
    """Per-clip test outputs of one (model run, task, protocol) cell: one entry per fold."""

    folds: tuple[FoldOutputs, ...]

    def aligned_to(self, other: "CellOutputs") -> "CellOutputs":
        """These outputs in ``other``'s clip order; ValueError unless the clip sets match."""
        if len(self.folds) != len(other.folds):
            raise ValueError(f"cannot pair outputs of {len(self.folds)} and {len(other.folds)} folds")
        out = []
        for i, (mine, ref) in enumerate(zip(self.folds, other.folds)):
            pos = {c: j for j, c in enumerate(mine.ids.tolist())}
            missing = [c for c in ref.ids.tolist() if c not in pos]
            if missing or len(pos) != len(ref.ids):
                raise ValueError(f"fold {i}: the two outputs are not on the same test clips "
                                 f"({len(pos)} vs {len(ref.ids)} clips; e.g. {missing[:3]} missing)")
            out.append(mine.take(np.array([pos[c] for c in ref.ids.tolist()], dtype=np.int64)))
        return CellOutputs(tuple(out))


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval."""

    value: float
    low: float
    high: float
    level: float
    n_boot: int
    runs: int = 1

    def excludes(self, x: float = 0.0) -> bool:
        return not (self.low <= x <= self.high)


def supports(metric: str) -> bool:
    """Whether ``metric`` can be recomputed on a resample."""
    return metric in ("top1_acc", "pitch_acc", "chroma_acc", "mAP") or metric.endswith("_fms")


# ----------------------------------------------------------------------------- resampling
def _stream(*key: int | str) -> np.random.Generator:
    """A generator determined by ``key`` (strings hashed with CRC32, stable across runs)."""
    ints = [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in key]
    return np.random.default_rng(ints)


def resample_weights(idx: np.ndarray, m: int) -> np.ndarray:
    """(B, M) int32: how often each clip is drawn, from (B, M) drawn indices."""
    b = idx.shape[0]
    flat = idx + m * np.arange(b)[:, None]
    return np.bincount(flat.ravel(), minlength=b * m).reshape(b, m).astype(np.int32)


def _draw(cfg: BootstrapConfig, key: str, fold: int, m: int) -> np.ndarray:
    """(B, M) clip indices of the resamples of (task ``key``, fold), the same for every model:
    ``default_rng([seed, crc32(key), fold, M]).integers(0, M, size=(n_boot, M))``."""
    return _stream(cfg.seed, key, fold, m).integers(0, m, size=(cfg.n_boot, m))


def _average_precision(w: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(B,) sklearn's average precision of scores ``s`` (M,) for 0/1 ``y`` (M,) with integer
    sample weights ``w`` (B, M): sum over distinct thresholds t of (recall gained at t) x
    precision at t. Only thresholds that hold a positive gain recall, so precision is read there."""
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order] > 0, s[order]
    if not ys.any():
        return np.zeros(w.shape[0])
    group_end = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])  # (G,) last position of each tie group
    group_of = np.searchsorted(group_end, np.arange(len(ss)))  # (M,) tie group of each position
    pos = np.flatnonzero(ys)  # (P,) sorted positions of the positives
    ws = w[:, order]  # (B, M)
    seen = np.cumsum(ws, axis=1, dtype=np.int64)[:, group_end]  # (B, G) clips drawn at or above each threshold
    tp_pos = np.cumsum(ws[:, pos], axis=1, dtype=np.int64)  # (B, P) positives drawn up to each positive
    groups = group_of[pos]  # (P,) group of each positive
    last = np.r_[groups[1:] != groups[:-1], True]  # the last positive of its group
    tp = tp_pos[:, last]  # (B, G') true positives at each threshold that holds a positive
    gain = np.diff(tp, axis=1, prepend=0)
    n_seen = seen[:, groups[last]]
    precision = np.divide(tp, n_seen, out=np.zeros(tp.shape), where=n_seen > 0)
    total = tp[:, -1]
    return np.divide((gain * precision).sum(1), total, out=np.zeros(total.shape), where=total > 0)


def metric_on_resamples(metric: str, fold: FoldOutputs, idx: np.ndarray) -> np.ndarray:
    """(B,) ``metric`` of ``fold`` on each resample, ``idx`` (B, M) the clips drawn."""
    if metric in ("top1_acc", "pitch_acc", "chroma_acc"):
        if fold.scores is None:
            raise ValueError(f"metric {metric!r} needs per-clip scores and targets")
        pred, true = fold.scores.argmax(1), fold.targets.argmax(1)
        correct = (pred % 12 == true % 12) if metric == "chroma_acc" else (pred == true)
        return correct[idx].mean(1)
    if metric == "mAP":
        if fold.scores is None:
            raise ValueError("metric 'mAP' needs per-clip scores and targets")
        w = resample_weights(idx, len(fold.ids))
        aps = [_average_precision(w, fold.targets[:, c], fold.scores[:, c]) for c in range(fold.targets.shape[1])]
        return np.mean(aps, axis=0)
    if metric.endswith("_fms"):
        if metric not in fold.counts:
            raise ValueError(f"metric {metric!r} needs per-file event counts; have {sorted(fold.counts)}")
        c = fold.counts[metric]
        tp, n_sys, n_ref = (c[:, k][idx].sum(1, dtype=np.int64).astype(np.float64) for k in range(3))  # (B,) each
        den = n_sys + n_ref
        return np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0)
    raise ValueError(f"metric {metric!r} cannot be recomputed on a resample; supported: {SUPPORTED_METRICS}")


def point_value(cell: CellOutputs, metric: str) -> float:
    """The cell's ``metric`` on its full test set (mean over folds)."""
    return float(np.mean([metric_on_resamples(metric, f, np.arange(len(f.ids))[None])[0] for f in cell.folds]))


def cell_replicates(cell: CellOutputs, metric: str, cfg: BootstrapConfig, key: str) -> np.ndarray:
    """(B,) the cell's ``metric`` (mean over folds) on each clip resample of task ``key``."""
    out = np.zeros(cfg.n_boot)
    for i, fold in enumerate(cell.folds):
        m = len(fold.ids)
        if m == 0:  # nothing to resample (e.g. heareval scored no file): no interval
            return np.full(cfg.n_boot, np.nan)
        idx = _draw(cfg, key, i, m)  # (B, M)
        step = max(1, _CHUNK // max(m, 1))
        for start in range(0, cfg.n_boot, step):
            part = idx[start:start + step]
            out[start:start + len(part)] += metric_on_resamples(metric, fold, part)
    return out / len(cell.folds)


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    """(low, high) percentiles of ``replicates`` at ``level``; (NaN, NaN) if any is NaN."""
    if np.isnan(replicates).any():
        return math.nan, math.nan
    lo, hi = np.percentile(replicates, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


# ----------------------------------------------------------------------------- models and runs
Runs = Sequence[Sequence[CellOutputs]]
"""A model's outputs on one task: R runs, each P repeats (e.g. probe seeds)."""


def _task_matrix(runs: Runs, metric: str, cfg: BootstrapConfig, task: str, ref: CellOutputs
                 ) -> tuple[np.ndarray, float]:
    """((R, B) run replicates, point value) of a model on ``task``; every output aligned to ``ref``."""
    rows, points = [], []
    for repeats in runs:
        if not repeats:
            raise ValueError(f"task {task!r}: a run without outputs")
        cells = [c.aligned_to(ref) for c in repeats]
        rows.append(np.mean([cell_replicates(c, metric, cfg, task) for c in cells], axis=0))
        points.append(np.mean([point_value(c, metric) for c in cells]))
    return np.stack(rows), float(np.mean(points))


def _run_draws(r: int, cfg: BootstrapConfig, stream: int) -> np.ndarray:
    """(B, R) which runs each resample takes (all zeros for one run)."""
    if r == 1:
        return np.zeros((cfg.n_boot, 1), dtype=np.int64)
    return _stream(cfg.seed, "runs", stream).integers(0, r, size=(cfg.n_boot, r))


def _combine(matrix: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(B,) mean over the drawn runs: ``matrix`` (R, B), ``draws`` (B, R)."""
    return matrix[draws, np.arange(draws.shape[0])[:, None]].mean(1)


def _intervals(reps: dict[str, np.ndarray], points: dict[str, float], cfg: BootstrapConfig, runs: int
               ) -> dict[str, Interval]:
    out = {}
    for k, r in reps.items():
        lo, hi = percentile_interval(r, cfg.level)
        out[k] = Interval(points[k], lo, hi, cfg.level, cfg.n_boot, runs)
    return out


def _check_model(model: Mapping[str, Runs], metrics: Mapping[str, str], what: str) -> int:
    if not model:
        raise ValueError(f"{what}: no tasks")
    counts = {t: len(runs) for t, runs in model.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise ValueError(f"{what}: every task needs the same runs (runs per task: {counts})")
    missing = [t for t in model if t not in metrics]
    if missing:
        raise ValueError(f"{what}: no metric given for tasks {missing}")
    return next(iter(counts.values()))


def model_intervals(model: Mapping[str, Runs], metrics: Mapping[str, str],
                    cfg: BootstrapConfig = BootstrapConfig()) -> dict[str, Interval]:
    """Intervals of one model: per task and ``"mean"`` (over tasks), hierarchical over its R
    runs (the same runs on every task, in the same order) and the test clips.

    ``model``: {task: runs}, runs[r][p] the outputs of run r, repeat p; ``metrics``: {task: metric}.
    The point value is the mean over runs (and repeats) of the full-test-set metric.
    """
    r = _check_model(model, metrics, "model_intervals")
    draws = _run_draws(r, cfg, 0)
    reps, points = {}, {}
    for task, runs in model.items():
        matrix, points[task] = _task_matrix(runs, metrics[task], cfg, task, runs[0][0])
        reps[task] = _combine(matrix, draws)
    reps["mean"] = np.mean([reps[t] for t in model], axis=0)
    points["mean"] = float(np.mean([points[t] for t in model]))
    return _intervals(reps, points, cfg, r)


def difference_intervals(a: Mapping[str, Runs], b: Mapping[str, Runs], metrics: Mapping[str, str],
                         cfg: BootstrapConfig = BootstrapConfig()) -> dict[str, Interval]:
    """Paired bootstrap of model ``a`` minus model ``b``, per task and ``"mean"`` over the
    tasks both have: the same clip resamples for both (clips matched by id), the runs of
    each model drawn independently (a's seed s has nothing to do with b's seed s)."""
    tasks = [t for t in a if t in b]
    if not tasks:
        raise ValueError("difference_intervals: the two models share no task")
    ra = _check_model({t: a[t] for t in tasks}, metrics, "difference_intervals (first model)")
    rb = _check_model({t: b[t] for t in tasks}, metrics, "difference_intervals (second model)")
    da, db = _run_draws(ra, cfg, 1), _run_draws(rb, cfg, 2)
    reps, points = {}, {}
    for task in tasks:
        ref = a[task][0][0]
        ma, pa = _task_matrix(a[task], metrics[task], cfg, task, ref)
        mb, pb = _task_matrix(b[task], metrics[task], cfg, task, ref)
        reps[task] = _combine(ma, da) - _combine(mb, db)
        points[task] = pa - pb
    reps["mean"] = np.mean([reps[t] for t in tasks], axis=0)
    points["mean"] = float(np.mean([points[t] for t in tasks]))
    return _intervals(reps, points, cfg, max(ra, rb))


def bootstrap_cell(cell: CellOutputs, metric: str, cfg: BootstrapConfig = BootstrapConfig(),
                   key: str = "") -> Interval:
    """Interval of one cell's ``metric`` over resamples of its test clips (task name ``key``)."""
    return model_intervals({key: [[cell]]}, {key: metric}, cfg)[key]


def bootstrap_mean(cells: Mapping[str, CellOutputs], metrics: Mapping[str, str],
                   cfg: BootstrapConfig = BootstrapConfig()) -> Interval:
    """Interval of the mean over tasks of one model's cells ({task: cell}), clips resampled
    within each task."""
    return model_intervals({t: [[c]] for t, c in cells.items()}, metrics, cfg)["mean"]


def format_interval(iv: Interval | None, digits: int = 3) -> str:
    """``value [low, high]``; ``n/a`` for the interval when there is none."""
    if iv is None:
        return "n/a"
    if math.isnan(iv.low):
        return f"{iv.value:.{digits}f} [n/a]"
    return f"{iv.value:.{digits}f} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"
