"""A k-nearest-neighbour probe on frozen embeddings: cosine similarity, k chosen on validation.

Legend: M query rows (clips for scene tasks, frames for event tasks), N training rows,
D embedding size, C labels, K the largest candidate k.

Protocol (as X-ARES's kNN evaluation; no training, so it reads a model in seconds):

- Rows are L2-normalised, so the nearest neighbours by Euclidean distance are the most
  cosine-similar ones (``standardize: true`` first standardises each dimension with the
  training split's mean and std).
- For each validation and test row the ``max(ks)`` most cosine-similar training rows are
  found once (scikit-learn's brute-force ``NearestNeighbors``, cosine metric). For every
  candidate ``k`` the prediction of a row is the share of its k nearest neighbours that
  carry each label: an (M, C) matrix of class frequencies, i.e. a majority vote for
  multiclass tasks and a per-label vote for multilabel and event (frame) tasks.
- ``k`` is the candidate with the best primary metric (the task's first ``evaluation``
  metric) on validation; ties go to the smaller k. Test is scored once, with that k.
- Event tasks: frame votes become events with heareval's post-processing (its grid,
  chosen on validation with k), as the linear protocol does.
- k-fold tasks rotate folds as heareval does (test = fold i, valid = fold i+1); the result
  is the mean and standard deviation over the k test folds.
- A candidate k larger than the training split is skipped; when none is left the smallest
  usable k (the training split's size) is used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from hear_slicer.progress import Progress

from eval_suites.core.protocols.linear import (_comparable, _evaluate, _Task, data_splits, fold_outputs, store_outputs,
                                              summarize)

__all__ = ["KnnConfig", "KnnFold", "neighbour_votes", "run_knn"]


@dataclass(frozen=True)
class KnnConfig:
    """Settings of the ``knn`` protocol (manifest key ``protocols.knn``)."""

    ks: tuple[int, ...] = (1, 3, 5, 10, 20, 50)
    standardize: bool = False

    def __post_init__(self) -> None:
        ks = self.ks
        ok = (isinstance(ks, (list, tuple)) and len(ks) > 0
              and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks))
        if not ok:
            raise ValueError(f"setting 'ks': expected a non-empty list of integers >= 1, got {ks!r}")
        if len(set(ks)) != len(ks):
            raise ValueError(f"setting 'ks': expected distinct values, got {list(ks)}")
        if not isinstance(self.standardize, bool):
            raise ValueError(f"setting 'standardize': expected true or false, got {self.standardize!r}")
        object.__setattr__(self, "ks", tuple(sorted(ks)))


@dataclass
class KnnFold:
    """Outcome of one train/valid/test split."""

    test_split: str
    best_k: int
    valid_score: float
    valid_scores: dict[int, float] = field(default_factory=dict)
    test_scores: dict[str, float] = field(default_factory=dict)
    postprocessing: dict[str, Any] | None = None


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). x: (M, D) -> (M, D)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)  # (M, 1)
    return x / np.maximum(norm, 1e-12)


def neighbour_votes(neighbours: np.ndarray, y_train: np.ndarray, k: int) -> np.ndarray:
    """Share of the k nearest neighbours carrying each label.

    neighbours: (M, K) training-row indices, nearest first; y_train: (N, C) multi-hot.
    Returns (M, C) in [0, 1].
    """
    return y_train[neighbours[:, :k]].mean(axis=1)  # (M, k, C) -> (M, C)


def _fold(task: _Task, split: dict[str, list[str]], cfg: KnnConfig, outputs: bool = False
          ) -> tuple[KnnFold, object, dict | None]:
    """The fold's result and, with `outputs`, its per-clip test outputs and (event tasks) its
    test events (else None, None)."""
    train, y_train = task.load(split["train"])  # (N, D), (N, C)
    valid, y_valid = task.load(split["valid"])
    test, y_test = task.load(split["test"])
    mean = train.x.mean(0) if cfg.standardize else 0.0  # (D,)
    std = np.maximum(train.x.std(0), 1e-6) if cfg.standardize else 1.0  # (D,)

    def rows(x: np.ndarray) -> np.ndarray:
        return _unit_rows(((x - mean) / std).astype(np.float32))

    ks = [k for k in cfg.ks if k <= len(train.x)] or [len(train.x)]
    index = NearestNeighbors(n_neighbors=max(ks), metric="cosine", algorithm="brute")
    index.fit(rows(train.x))
    nn_valid = index.kneighbors(rows(valid.x), return_distance=False)  # (M, K)
    nn_test = index.kneighbors(rows(test.x), return_distance=False)  # (M, K)

    valid_events = task.target_events(split["valid"]) if task.event else None
    primary = task.scores[0]
    scores: dict[int, float] = {}
    best_k, best_post = ks[0], None
    for k in ks:
        (score,), post, _ = _evaluate(task, neighbour_votes(nn_valid, y_train, k), y_valid, valid,
                                   valid_events, [primary])
        scores[k] = score
        if k == ks[0] or _comparable(score, primary) > _comparable(scores[best_k], primary):
            best_k, best_post = k, post
    test_events = task.target_events(split["test"]) if task.event else None
    probs = neighbour_votes(nn_test, y_train, best_k)  # (M, C)
    final, _, predicted = _evaluate(task, probs, y_test, test, test_events, task.scores, best_post)
    fold = KnnFold(test_split="|".join(split["test"]), best_k=best_k, valid_score=scores[best_k],
                   valid_scores=scores, test_scores=dict(zip(task.meta["evaluation"], final)),
                   postprocessing=best_post)
    if not outputs:
        return fold, None, None
    return (fold, *fold_outputs(task, split, test, y_test, probs, predicted, test_events))


def run_knn(embed_dir: str | Path, cfg: KnnConfig, progress: bool = True, outputs_dir: str | Path | None = None
            ) -> tuple[list[tuple[str, float, float | None, int]], list[KnnFold]]:
    """Score a cached task; returns ([(metric, mean, std or None, folds)], per-fold results).

    Metrics are in the task's ``evaluation`` order (the first is the primary one). With
    ``outputs_dir`` the per-clip test outputs are stored there, as the linear protocol does.
    """
    task = _Task(Path(embed_dir))
    splits = data_splits(task.meta)
    bar = Progress(len(splits), "knn", unit="fold", enabled=progress and len(splits) > 1, leave=False)
    trained = []
    for split in splits:
        trained.append(_fold(task, split, cfg, outputs_dir is not None))
        bar.update(1)
    bar.close()
    folds = [f for f, _, _ in trained]
    if outputs_dir is not None:
        store_outputs(outputs_dir, task, trained)
    return summarize(task, folds), folds
