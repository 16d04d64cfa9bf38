"""LAPE's linear evaluation on frozen embeddings, with the epoch chosen on validation.

Legend: M rows (clips for scene tasks, frames for event tasks), D embedding size,
C labels, B batch.

Protocol (LAPE's, except for the selection split): one ``nn.Linear(D, C)`` on the
cached embeddings, Adam (lr 1e-3), batch 32, a fixed seed, ``epochs`` passes. After
every epoch the task's primary metric (its first ``evaluation`` metric) is computed on
the validation split; the weights of the best epoch are kept and scored once on the
test split. The authors' scripts picked the epoch on test; this never looks at test
before the choice is made.

- Features are standardised with the training split's per-dimension mean and std
  (``standardize``; BYOL-A's linear evaluation does the same), a fixed affine map, so
  the classifier is still one linear layer.
- Scene tasks: clip embeddings; softmax + cross-entropy for multiclass, sigmoid + BCE for
  multilabel.
- Event tasks: the same layer on each timestamp embedding (frame-level, sigmoid + BCE),
  frame probabilities turned into events with heareval's post-processing (median filter,
  minimum duration; its grid, chosen on validation with the epoch) and scored with
  heareval's event metrics, so both protocols report the same kind of number.
- Metrics are heareval's (``heareval.score``, no TensorFlow involved).
- k-fold tasks rotate folds as heareval does (test = fold i, valid = fold i+1, train =
  the rest); the result is the mean and standard deviation over the k test folds.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from hear_slicer.progress import Progress

from eval_suites.core.clip_outputs import event_fold_outputs, save_outputs, scene_clip_ids
from eval_suites.core.embeddings import EmbeddingSplit, read_split
from eval_suites.core.intervals import FoldOutputs

__all__ = ["LinearConfig", "data_splits", "run_linear", "LinearFold"]


@dataclass(frozen=True)
class LinearConfig:
    """Settings of the ``linear`` protocol (manifest key ``protocols.linear``)."""

    epochs: int = 50
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    standardize: bool = True
    device: str | None = None  # default: CUDA when available, else CPU

    def __post_init__(self) -> None:
        for key, ok, expected in (
            ("epochs", isinstance(self.epochs, int) and not isinstance(self.epochs, bool)
             and self.epochs >= 1, "an integer >= 1"),
            ("lr", isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool)
             and 0 < self.lr <= 1, "a number > 0 and <= 1 (finite)"),
            ("batch_size", isinstance(self.batch_size, int) and not isinstance(self.batch_size, bool)
             and self.batch_size >= 1, "an integer >= 1"),
            ("seed", isinstance(self.seed, int) and not isinstance(self.seed, bool), "an integer"),
            ("standardize", isinstance(self.standardize, bool), "true or false"),
            ("device", self.device is None or isinstance(self.device, str), "a device name or null"),
        ):
            if not ok:
                raise ValueError(f"setting {key!r}: expected {expected}, got {getattr(self, key)!r}")


@dataclass
class LinearFold:
    """Outcome of one train/valid/test split."""

    test_split: str
    best_epoch: int
    valid_score: float
    test_scores: dict[str, float]
    postprocessing: dict[str, Any] | None


def data_splits(metadata: dict) -> list[dict[str, list[str]]]:
    """Train/valid/test split names per fold, rotated as heareval does for k-fold tasks."""
    if metadata["split_mode"] == "trainvaltest":
        return [{"train": ["train"], "valid": ["valid"], "test": ["test"]}]
    folds = sorted(metadata["splits"])
    k = len(folds)
    return [{"train": [f for f in folds if f not in (folds[i], folds[(i + 1) % k])],
             "valid": [folds[(i + 1) % k]], "test": [folds[i]]} for i in range(k)]


def _heareval_scoring():
    try:
        from heareval.score import available_scores
    except ImportError as e:
        raise RuntimeError(f"the linear protocol scores with heareval's metrics, but "
                           f"heareval cannot be imported ({e}); run scripts/setup_env.sh") from e
    return available_scores


def _event_postprocessing():
    try:
        from heareval.predictions.task_predictions import (
            EVENT_POSTPROCESSING_GRID, get_events_for_all_files)
    except ImportError as e:
        raise RuntimeError(f"event tasks need heareval's post-processing, but it cannot be "
                           f"imported ({e}); run scripts/setup_env.sh") from e
    return EVENT_POSTPROCESSING_GRID, get_events_for_all_files


class _Task:
    """A cached task's metadata, vocabulary and metric objects."""

    def __init__(self, embed_dir: Path):
        self.dir = embed_dir
        self.meta = json.loads((embed_dir / "task_metadata.json").read_text())
        vocab = pd.read_csv(embed_dir / "labelvocabulary.csv")
        self.label_to_idx = {str(lbl): int(i) for i, lbl in zip(vocab["idx"], vocab["label"])}
        self.n_labels = len(self.label_to_idx)
        scores = _heareval_scoring()
        self.scores = [scores[m](label_to_idx=self.label_to_idx) for m in self.meta["evaluation"]]
        self.event = self.meta["embedding_type"] == "event"
        self.multiclass = self.meta["prediction_type"] == "multiclass"

    def load(self, splits: list[str]) -> tuple[EmbeddingSplit, np.ndarray]:
        """Concatenated splits and their multi-hot targets (M, C)."""
        parts = [read_split(self.dir, s) for s in splits]
        x = np.concatenate([p.x for p in parts])  # (M, D)
        labels = [lbl for p in parts for lbl in p.labels]
        ft = None if not self.event else [r for p in parts for r in p.filename_timestamps]
        y = np.zeros((len(labels), self.n_labels), dtype=np.float32)  # (M, C)
        for i, lbls in enumerate(labels):
            for lbl in lbls:
                y[i, self.label_to_idx[str(lbl)]] = 1.0
        return EmbeddingSplit(x=x, labels=labels, filename_timestamps=ft), y

    def target_events(self, splits: list[str]) -> dict:
        events: dict = {}
        for s in splits:
            events.update(json.loads((self.dir / f"{s}.json").read_text()))
        return events


def _score(value) -> float:
    """A heareval score's primary number (tuple scores report their first entry)."""
    v = value[0][1] if isinstance(value, tuple) else value
    return float(v)


def _evaluate(task: _Task, probs: np.ndarray, y: np.ndarray, data: EmbeddingSplit,
              target_events: dict | None, fns: list, postprocessing: dict | None = None
              ) -> tuple[list[float], dict | None, dict | None]:
    """(scores of ``fns``, post-processing, predicted events) on predictions ``probs`` (M, C)
    against ``y`` (M, C).

    Event tasks: every post-processing of the grid is tried and the one giving the best
    first score is used (pass ``postprocessing`` to fix it, as on test).
    """
    if not task.event:
        return [_score(f(probs, y)) for f in fns], None, None
    grid, events_for_files = _event_postprocessing()
    grid = task.meta.get("evaluation_params", {}).get("event_postprocessing_grid", grid)
    idx_to_label = {i: lbl for lbl, i in task.label_to_idx.items()}
    names = [n for n, _ in data.filename_timestamps]
    times = torch.tensor([t for _, t in data.filename_timestamps])
    fixed = tuple(postprocessing.items()) if postprocessing is not None else None
    with contextlib.redirect_stderr(io.StringIO()):  # heareval draws a progress bar here
        by_post = events_for_files(torch.from_numpy(probs), names, times, idx_to_label,
                                   grid, fixed)
    best: tuple[list[float], dict, dict] | None = None
    for post, predicted in by_post.items():
        # Clips without any predicted event still count (as misses).
        predicted = {name: predicted.get(name, []) for name in target_events}
        scores = [_score(f(predicted, target_events)) for f in fns]
        primary = _comparable(scores[0], fns[0])
        if best is None or primary > _comparable(best[0][0], fns[0]):
            best = (scores, dict(post), predicted)
    assert best is not None
    return best


def _comparable(value: float, fn) -> float:
    """Larger is better; NaN is worst."""
    if math.isnan(value):
        return -math.inf
    return value if getattr(fn, "maximize", True) else -value


def _train_fold(task: _Task, split: dict[str, list[str]], cfg: LinearConfig,
                device: torch.device, progress: bool) -> tuple[LinearFold, FoldOutputs, dict | None]:
    """The fold's result, its per-clip test outputs and (event tasks) its test events."""
    train, y_train = task.load(split["train"])
    valid, y_valid = task.load(split["valid"])
    test, y_test = task.load(split["test"])
    mean = train.x.mean(0) if cfg.standardize else 0.0  # (D,)
    std = np.maximum(train.x.std(0), 1e-6) if cfg.standardize else 1.0  # (D,)

    def features(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((x - mean) / std, dtype=torch.float32, device=device)

    x_tr, t_tr = features(train.x), torch.as_tensor(y_train, device=device)  # (M, D), (M, C)
    x_va, x_te = features(valid.x), features(test.x)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    layer = nn.Linear(x_tr.shape[1], task.n_labels).to(device)
    opt = torch.optim.Adam(layer.parameters(), lr=cfg.lr)
    multiclass = task.multiclass and not task.event

    def predict(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            logits = layer(x)  # (M, C)
            return (logits.softmax(-1) if multiclass else logits.sigmoid()).cpu().numpy()

    valid_events = task.target_events(split["valid"]) if task.event else None
    primary = task.scores[0]
    best_score, best_epoch, best_state = -math.inf, -1, None
    bar = Progress(cfg.epochs, f"linear {split['test'][0]}", unit="epoch", enabled=progress, leave=False)
    for epoch in range(cfg.epochs):
        layer.train()
        order = torch.randperm(len(x_tr), generator=gen).to(device)
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start:start + cfg.batch_size]
            logits = layer(x_tr[batch])  # (B, C)
            if multiclass:
                loss = nn.functional.cross_entropy(logits, t_tr[batch].argmax(-1))
            else:
                loss = nn.functional.binary_cross_entropy_with_logits(logits, t_tr[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        layer.eval()
        (score,), _, _ = _evaluate(task, predict(x_va), y_valid, valid, valid_events, [primary])
        if best_state is None or _comparable(score, primary) > _comparable(best_score, primary):
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(layer.state_dict())
        bar.set_postfix(valid=f"{score:.3f}", best=f"{best_score:.3f}@{best_epoch}")
        bar.update(1)
    bar.close()

    layer.load_state_dict(best_state)
    layer.eval()
    post = None
    if task.event:  # the post-processing is chosen on validation, with the epoch
        _, post, _ = _evaluate(task, predict(x_va), y_valid, valid, valid_events, [primary])
    test_events = task.target_events(split["test"]) if task.event else None
    probs = predict(x_te)  # (M, C)
    scores, _, predicted = _evaluate(task, probs, y_test, test, test_events, task.scores, post)
    fold = LinearFold(test_split="|".join(split["test"]), best_epoch=best_epoch,
                      valid_score=best_score,
                      test_scores=dict(zip(task.meta["evaluation"], scores)),
                      postprocessing=post)
    return (fold, *fold_outputs(task, split, test, y_test, probs, predicted, test_events))


def fold_outputs(task: _Task, split: dict[str, list[str]], test: EmbeddingSplit, y_test: np.ndarray,
                 probs: np.ndarray, predicted: dict | None, test_events: dict | None
                 ) -> tuple[FoldOutputs, dict | None]:
    """A fold's per-clip test outputs (kept for the bootstrap intervals) and, for event tasks,
    its predicted and target events. probs: (M, C) test predictions; y_test: (M, C)."""
    if task.event:
        outputs = event_fold_outputs(predicted, test_events, task.meta["evaluation"], task.label_to_idx)
        return outputs, {"predicted": predicted, "target": test_events}
    [test_split] = split["test"]  # one test split per fold (data_splits)
    return FoldOutputs(ids=scene_clip_ids(task.dir, test_split, test.labels), targets=y_test, scores=probs), None


def store_outputs(outputs_dir: str | Path, task: _Task, trained: list[tuple]) -> None:
    """Save the per-clip outputs of [(fold, outputs, events)] into ``outputs_dir``."""
    events = {f.test_split: e for f, _, e in trained} if task.event else None
    save_outputs(outputs_dir, {f.test_split: o for f, o, _ in trained}, events)


def run_linear(embed_dir: str | Path, cfg: LinearConfig, progress: bool = True,
               outputs_dir: str | Path | None = None
               ) -> tuple[list[tuple[str, float, float | None, int]], list[LinearFold]]:
    """Score a cached task; returns ([(metric, mean, std or None, folds)], per-fold results).

    Metrics are in the task's ``evaluation`` order (the first is the primary one). With
    ``outputs_dir`` the per-clip test outputs are stored there (:mod:`eval_suites.core.clip_outputs`).
    """
    embed_dir = Path(embed_dir)
    task = _Task(embed_dir)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trained = [_train_fold(task, s, cfg, device, progress) for s in data_splits(task.meta)]
    folds = [f for f, _, _ in trained]
    if outputs_dir is not None:
        store_outputs(outputs_dir, task, trained)
    return summarize(task, folds), folds


def summarize(task: _Task, folds: list) -> list[tuple[str, float, float | None, int]]:
    """[(metric, mean over folds, sample std or None for one fold, folds)] in the task's
    ``evaluation`` order, from each fold's ``test_scores``."""
    summary = []
    for metric in task.meta["evaluation"]:
        values = np.array([f.test_scores[metric] for f in folds], dtype=float)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        summary.append((metric, float(np.mean(values)), std, len(values)))
    return summary
