"""Per-clip test outputs of a cell, stored next to its ``result.json`` so that its metric can
be recomputed on any resample of test clips (:mod:`eval_suites.core.intervals`). No pickle.

Every protocol calls :func:`save_outputs` with one :class:`~eval_suites.core.intervals.FoldOutputs`
per test fold. Files in the cell folder::

    test_predictions.npz   # folds (fold names); per fold i: ids_i (M,) clip names,
                           # scene tasks: targets_i (M, C) 0/1, scores_i (M, C) predicted scores;
                           # event tasks: counts_i__<metric> (M, 3) per-file (TP, N_sys, N_ref)
    test_events.json       # event tasks: {fold: {"predicted": {file: [events]},
                           #                      "target": {file: [events]}}} (ms, heareval's form)

Legend: M test clips (event tasks: files), C labels.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from eval_suites.core.intervals import CellOutputs, FoldOutputs
from eval_suites.core.atomic_files import write_atomically

__all__ = ["OUTPUTS_FILE", "EVENTS_FILE", "save_outputs", "load_outputs", "clear_outputs",
           "scene_clip_ids", "event_counts", "event_fold_outputs"]

OUTPUTS_FILE = "test_predictions.npz"
EVENTS_FILE = "test_events.json"


def clear_outputs(cell_dir: str | Path) -> None:
    """Remove a cell's stored outputs (before it is scored again, so none go stale)."""
    for name in (OUTPUTS_FILE, EVENTS_FILE):
        (Path(cell_dir) / name).unlink(missing_ok=True)


def save_outputs(cell_dir: str | Path, folds: Mapping[str, FoldOutputs],
                 events: Mapping[str, dict] | None = None) -> Path:
    """Write ``test_predictions.npz`` (and ``test_events.json`` with ``events``) atomically.

    ``folds``: {test fold name: outputs}, in the order the cell averages them.
    """
    d = Path(cell_dir)
    d.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"folds": np.array(list(folds), dtype=str)}
    for i, f in enumerate(folds.values()):
        arrays[f"ids_{i}"] = np.asarray(f.ids, dtype=str)
        if f.targets is not None:
            arrays[f"targets_{i}"] = np.asarray(f.targets, dtype=np.uint8)
            arrays[f"scores_{i}"] = np.asarray(f.scores, dtype=np.float32)
        for metric, c in f.counts.items():
            arrays[f"counts_{i}__{metric}"] = np.asarray(c, dtype=np.int64)
    if events is not None:
        text = json.dumps(events)
        write_atomically(d / EVENTS_FILE, lambda fh: fh.write(text))
    return write_atomically(d / OUTPUTS_FILE, lambda fh: np.savez_compressed(fh, **arrays), mode="wb")


def load_outputs(cell_dir: str | Path) -> CellOutputs | None:
    """The cell's stored outputs, or None when it has none (results from before they were kept)."""
    path = Path(cell_dir) / OUTPUTS_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        folds = []
        for i in range(len(z["folds"])):
            counts = {k.split("__", 1)[1]: z[k] for k in z.files if k.startswith(f"counts_{i}__")}
            has_scores = f"scores_{i}" in z.files
            folds.append(FoldOutputs(ids=z[f"ids_{i}"], targets=z[f"targets_{i}"] if has_scores else None,
                                     scores=z[f"scores_{i}"] if has_scores else None, counts=counts))
    return CellOutputs(tuple(folds))


def scene_clip_ids(embed_dir: str | Path, split: str, labels: Sequence[list] | None = None) -> np.ndarray:
    """(M,) clip names of the rows of ``<split>.embeddings.npy`` in a cached scene task.

    The cache (like heareval's embedding runner) stores scene rows in a shuffled order without
    their names; :func:`eval_suites.core.embeddings.write_embeddings` shuffles each split's file list
    in the task's split order with one ``random.Random(0)``. That shuffle is replayed here on the
    names of the cached ``<split>.json`` files and checked: every row's label list (``labels``,
    as read from the cache) and, where the per-clip files are present, every row's embedding must
    match its replayed clip; otherwise ValueError.
    """
    d = Path(embed_dir)
    meta = json.loads((d / "task_metadata.json").read_text())
    prng = random.Random(0)
    order = None
    for s in meta["splits"]:
        names = list(json.loads((d / f"{s}.json").read_text()))
        prng.shuffle(names)
        if s == split:
            order = names
            break
    if order is None:
        raise ValueError(f"{d}: no split {split!r}; the task has {meta['splits']}")
    truth = json.loads((d / f"{split}.json").read_text())
    if labels is not None and (len(labels) != len(order)
                               or any(list(lbl) != list(truth[n]) for lbl, n in zip(labels, order))):
        raise ValueError(f"{d}: split {split!r}: the replayed clip order does not match the cached labels; "
                         "the embedding cache's row order changed (see eval_suites.core.embeddings)")
    rows, dim = json.loads((d / f"{split}.embedding-dimensions.json").read_text())
    per_clip = [d / split / f"{n}.embedding.npy" for n in order]
    if rows == len(order) and all(p.is_file() for p in per_clip):
        x = np.memmap(d / f"{split}.embeddings.npy", dtype=np.float32, mode="r", shape=(rows, dim))
        for i, p in enumerate(per_clip):
            if not np.array_equal(np.load(p).astype(np.float32), x[i]):
                raise ValueError(f"{d}: split {split!r} row {i} is not clip {order[i]!r}; the embedding "
                                 "cache's row order changed (see eval_suites.core.embeddings)")
    return np.array(order, dtype=str)


def event_counts(predicted: Mapping[str, list], target: Mapping[str, list], metric: str,
                 label_to_idx: Mapping[str, int]) -> tuple[list[str], np.ndarray]:
    """(files, (M, 3) counts): per file, sed_eval's (TP, N_sys, N_ref) of heareval's event
    ``metric``, over the files of ``predicted`` (the files heareval scores). Summed over files
    they give heareval's overall F-measure 2 TP / (N_sys + N_ref)."""
    from heareval.score import available_scores

    score = available_scores[metric](label_to_idx=dict(label_to_idx))
    if not metric.endswith("_fms"):
        raise ValueError(f"event_counts: {metric!r} is not an event F-measure")
    ref_all = score.sed_eval_event_container(dict(target))
    est_all = score.sed_eval_event_container(dict(predicted))
    files = list(predicted)
    counts = np.zeros((len(files), 3), dtype=np.int64)
    for i, name in enumerate(files):
        one = score.score_class(event_label_list=list(score.label_to_idx.keys()), **score.params)
        one.evaluate(reference_event_list=ref_all.filter(filename=name),
                     estimated_event_list=est_all.filter(filename=name))
        counts[i] = (one.overall["Ntp"], one.overall["Nsys"], one.overall["Nref"])
    return files, counts


def event_fold_outputs(predicted: Mapping[str, list], target: Mapping[str, list], metrics: Sequence[str],
                       label_to_idx: Mapping[str, int]) -> FoldOutputs:
    """Per-file counts of every event F-measure in ``metrics`` (others cannot be resampled)."""
    counts, files = {}, None
    for m in metrics:
        if m.endswith("_fms"):
            files, counts[m] = event_counts(predicted, target, m, label_to_idx)
    return FoldOutputs(ids=np.array(files if files is not None else list(predicted), dtype=str), counts=counts)
