"""The chance level of a task: what predicting the same thing for every test clip scores.

Legend: M test clips of a fold, C labels.

The level of a metric is the score of the best constant prediction read off the test
labels: the most frequent test label for every clip (``top1_acc``, ``pitch_acc``,
``chroma_acc``: the majority-class rate) or each label's test frequency as its score
(``mAP``: the mean label frequency). Computed from a cell's stored per-clip targets with the
same metric code as the scores (:func:`eval_suites.core.intervals.point_value`), the mean
over folds for k-fold tasks. Since it uses the test labels it is an upper bound of what a
model that learned nothing reaches; a score near it means the embedding carried nothing the
probe could use. Event metrics have no such constant prediction: None.
"""
from __future__ import annotations

import numpy as np

from eval_suites.core.intervals import CellOutputs, FoldOutputs, point_value

__all__ = ["CHANCE_METRICS", "chance_level"]

CHANCE_METRICS = ("top1_acc", "pitch_acc", "chroma_acc", "mAP")


def _constant_scores(targets: np.ndarray, metric: str) -> np.ndarray:
    """(M, C) the same row for every clip: the majority label one-hot, or (mAP) the frequencies."""
    counts = targets.sum(0)  # (C,)
    if metric == "mAP":
        row = counts / max(1, targets.shape[0])
    else:
        row = np.zeros(targets.shape[1])
        row[int(np.argmax(counts))] = 1.0
    return np.broadcast_to(row, targets.shape).astype(np.float32)


def chance_level(outputs: CellOutputs | None, metric: str) -> float | None:
    """``metric`` of the constant prediction on the test clips of ``outputs``; None where
    there are no per-clip targets or the metric has no constant prediction (events)."""
    if outputs is None or metric not in CHANCE_METRICS or any(f.targets is None for f in outputs.folds):
        return None
    constant = CellOutputs(tuple(FoldOutputs(f.ids, f.targets, _constant_scores(f.targets, metric))
                                 for f in outputs.folds))
    return point_value(constant, metric)
