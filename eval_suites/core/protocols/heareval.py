"""heareval's own downstream evaluation: ``python -m heareval.predictions.runner`` on the
cached embeddings, in a subprocess.

The runner trains heareval's MLP over a random subset (``grid_points``) of one of its
hyper-parameter grids (``grid``: "default", "fast" or "faster", heareval's names),
selects on validation and writes ``test.predicted-scores.json``, which is parsed here.
``param_grid`` overrides grid entries for every task of the manifest through heareval's
own ``evaluation_params.task_specific_param_grid`` metadata key: heareval's grids assume
thousands of clips (batch 1024, at most 10-500 epochs), so a small task gets only a handful
of optimiser steps unless, e.g., ``param_grid: {batch_size: [32], max_epochs: [50]}``.
Beware: heareval keeps the last, partial batch, and its hidden layers use BatchNorm, which
fails on a batch of one; with a small batch size, pick one that leaves no single clip (or
frame, for event tasks) over, or use ``hidden_layers: [0]``. heareval's "faster" grid also
samples lr (1e-4 ... 3.2e-3) and patience (1 or 3); on small tasks a fixed, larger lr with
more patience trains much further (docs/eval.md, "heareval's defaults on small tasks").

``standardize: true`` is our deviation from heareval, which has no such option reachable
from task metadata (its ``embedding_norm`` grid entry is a torch class): every split's
embeddings are handed to heareval standardised per dimension with the mean and std of the
train split alone (valid and test use the train statistics), as the linear protocol does.
The standardised copies are written into the cell's work folder and removed after a
successful run. k-fold tasks are refused: heareval trains one model per fold rotation on
one set of files, so no split is the train split of every rotation.

It writes its outputs next to the embeddings it reads, so each cell gets a work folder
``<work>/embeddings/<task>/`` of symbolic links to the cached files: the shared cache
stays clean and read-only for this protocol. The labels pickles heareval reads are not
links: each is checked with ``eval_suites.core.embeddings.load_labels_pickle`` (which refuses
anything but plain lists) and written afresh, so a tampered shared cache cannot run code
in heareval's process. Environment fixes from RECIPE.md:
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (torch >= 2.6 refuses heareval's checkpoint
reload otherwise). The prediction runner does not import TensorFlow.

The cell's details carry, besides the test metrics, the validation score heareval selected
on (``validation``: the best epoch's score on the valid split, per fold and their mean, of
the task's first metric, or of the loss when the task sets
``use_scoring_for_early_stopping: false``); :mod:`studies.heareval_defaults` chooses the
shipped settings on it.

heareval pickles each test fold's predictions (``<fold>.predictions.pkl``, written by the
runner we just ran in the cell's own work folder); with ``outputs_dir`` they are converted to
the project's per-clip outputs (:mod:`eval_suites.core.clip_outputs`: scene scores and targets with
their clip names, or per-file event lists and counts), so the cell's intervals can be computed.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eval_suites.core.clip_outputs import event_fold_outputs, save_outputs, scene_clip_ids
from eval_suites.core.intervals import FoldOutputs
from eval_suites.core.embeddings import load_labels_pickle
from eval_suites.errors import write_file

__all__ = ["HearevalConfig", "HEAREVAL_GRIDS", "run_heareval", "parse_predicted_scores",
           "parse_validation_scores", "train_statistics", "store_outputs", "HearevalError"]

HEAREVAL_GRIDS = ("default", "fast", "faster")
"""Grid names accepted by heareval 2021.1.3's ``--grid`` option."""
PARAM_GRID_KEYS = ("hidden_layers", "hidden_dim", "dropout", "lr", "patience", "max_epochs",
                   "check_val_every_n_epoch", "batch_size")
"""Entries of heareval 2021.1.3's PARAM_GRID that take plain numbers (``param_grid``)."""
_INTEGER_ENTRIES = {"hidden_layers": 0, "hidden_dim": 1, "patience": 0, "max_epochs": 1,
                    "check_val_every_n_epoch": 1, "batch_size": 1}
"""The entries that are counts (PyTorch Lightning and torch take integers), with their least value."""
_LOG_TAIL_LINES = 25
_STD_FLOOR = 1e-6  # as the linear protocol: a constant dimension is centred, not divided by 0
_CHUNK_ROWS = 65536  # rows of a split read at a time when standardising (event tasks: GBs)


class HearevalError(RuntimeError):
    """heareval's prediction runner failed; the message holds the end of its log."""


@dataclass(frozen=True)
class HearevalConfig:
    """Settings of the ``heareval`` protocol (manifest key ``protocols.heareval``)."""

    grid: str = "fast"
    grid_points: int = 8
    timeout_s: float | None = None
    in_memory: bool = True
    deterministic: bool = True
    param_grid: dict | None = None
    standardize: bool = False

    def __post_init__(self) -> None:
        if self.param_grid is not None:
            if not isinstance(self.param_grid, dict):
                raise ValueError(f"setting 'param_grid': expected a mapping of grid entries to lists, "
                                 f"got {self.param_grid!r}")
            for key, values in self.param_grid.items():
                if key not in PARAM_GRID_KEYS:
                    raise ValueError(f"setting 'param_grid.{key}': not a heareval grid entry; "
                                     f"expected one of {PARAM_GRID_KEYS}")
                if (not isinstance(values, list) or not values or not all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf
                        for v in values)):
                    raise ValueError(f"setting 'param_grid.{key}': expected a non-empty list of numbers >= 0 "
                                     f"(finite), got {values!r}")
                least = _INTEGER_ENTRIES.get(key)
                if least is not None and not all(isinstance(v, int) and v >= least for v in values):
                    raise ValueError(f"setting 'param_grid.{key}': expected a list of integers >= {least}, "
                                     f"got {values!r}")
        if self.grid not in HEAREVAL_GRIDS:
            raise ValueError(f"setting 'grid': expected one of {HEAREVAL_GRIDS} (heareval's "
                             f"--grid names), got {self.grid!r}")
        if (not isinstance(self.grid_points, int) or isinstance(self.grid_points, bool)
                or self.grid_points < 1):
            raise ValueError(f"setting 'grid_points': expected an integer >= 1, "
                             f"got {self.grid_points!r}")
        if self.timeout_s is not None and (not isinstance(self.timeout_s, (int, float))
                                           or isinstance(self.timeout_s, bool)
                                           or not 0 < self.timeout_s < math.inf):
            raise ValueError(f"setting 'timeout_s': expected seconds > 0 (finite) or null, "
                             f"got {self.timeout_s!r}")
        for key in ("in_memory", "deterministic", "standardize"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"setting {key!r}: expected true or false, "
                                 f"got {getattr(self, key)!r}")


def _split_rows(embed_dir: Path, split: str) -> tuple[int, int]:
    rows, dim = json.loads((embed_dir / f"{split}.embedding-dimensions.json").read_text())
    size = (embed_dir / f"{split}.embeddings.npy").stat().st_size
    if size != rows * dim * 4:
        raise HearevalError(f"{embed_dir / f'{split}.embeddings.npy'} holds {size} bytes, expected "
                            f"{rows} x {dim} float32; the cache is corrupt, delete the folder to recompute it")
    return rows, dim


def _chunks(path: Path, rows: int, dim: int):
    """The (<= _CHUNK_ROWS, D) float64 blocks of a raw float32 memmap (M, D)."""
    x = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, dim))  # (M, D)
    for start in range(0, rows, _CHUNK_ROWS):
        yield np.asarray(x[start:start + _CHUNK_ROWS], dtype=np.float64)


def train_statistics(embed_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension (mean (D,), std (D,)) of a cached train/valid/test task's ``train``
    split, std floored at 1e-6; read in blocks, so an event task's frames need not fit."""
    d = Path(embed_dir)
    rows, dim = _split_rows(d, "train")
    if rows < 1:
        raise HearevalError(f"{d}: the train split has no embeddings to standardise with")
    total = np.zeros(dim)
    for block in _chunks(d / "train.embeddings.npy", rows, dim):
        total += block.sum(0)
    mean = total / rows  # (D,)
    squares = np.zeros(dim)
    for block in _chunks(d / "train.embeddings.npy", rows, dim):
        squares += ((block - mean) ** 2).sum(0)
    return mean, np.maximum(np.sqrt(squares / rows), _STD_FLOOR)


def _write_standardized(src: Path, dst: Path, rows: int, dim: int, mean: np.ndarray, std: np.ndarray) -> None:
    def write_rows(fh) -> None:  # raw float32 rows, the layout heareval's np.memmap reads
        for block in _chunks(src, rows, dim):
            fh.write(((block - mean) / std).astype(np.float32).tobytes())
    write_file(dst, write_rows)


def _link_embeddings(embed_dir: Path, task_link_dir: Path, param_grid: dict | None = None,
                     standardize: bool = False) -> list[Path]:
    """Fill ``task_link_dir`` with symbolic links to the files (not the per-clip split
    folders, which the prediction runner does not read) of ``embed_dir``; with a
    ``param_grid``, task_metadata.json is a copy that carries it; with ``standardize``, each
    ``<split>.embeddings.npy`` is a copy standardised with the train split's statistics.
    Returns the standardised copies written."""
    metadata = json.loads((embed_dir / "task_metadata.json").read_text())
    if standardize:
        if metadata.get("split_mode") != "trainvaltest":
            raise HearevalError(f"{embed_dir.name}: setting 'standardize': true needs a train/valid/test "
                                f"task, this one has split_mode {metadata.get('split_mode')!r}; heareval "
                                f"rotates k folds over one set of files, so no train-only statistics "
                                f"exist: set standardize: false or leave the task out of heareval")
        mean, std = train_statistics(embed_dir)  # (D,), (D,)
    task_link_dir.mkdir(parents=True)
    standardized = []
    for f in sorted(embed_dir.iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        if f.name == "task_metadata.json" and param_grid:
            params = metadata.setdefault("evaluation_params", {})
            params["task_specific_param_grid"] = {**params.get("task_specific_param_grid", {}), **param_grid}
            (task_link_dir / f.name).write_text(json.dumps(metadata, indent=1))
        elif f.name.endswith(".target-labels.pkl"):  # checked, then re-pickled: never hand heareval the cached file
            labels = load_labels_pickle(f)
            with open(task_link_dir / f.name, "wb") as fh:
                pickle.dump(labels, fh)
        elif standardize and f.name.endswith(".embeddings.npy"):
            rows, dim = _split_rows(embed_dir, f.name[:-len(".embeddings.npy")])
            _write_standardized(f, task_link_dir / f.name, rows, dim, mean, std)
            standardized.append(task_link_dir / f.name)
        else:
            (task_link_dir / f.name).symlink_to(f.resolve())
    return standardized


def parse_predicted_scores(path: str | Path, metadata: dict
                           ) -> list[tuple[str, float, float | None, int]]:
    """[(metric, mean over folds, std over folds or None, folds)] from heareval's
    ``test.predicted-scores.json``, in the task's ``evaluation`` order."""
    scores = json.loads(Path(path).read_text())
    fold_keys = _fold_keys(metadata)
    missing = [k for k in fold_keys if k not in scores]
    if missing:
        raise HearevalError(f"{path}: no test results for {missing}; keys are {sorted(scores)}")
    out = []
    for metric in metadata["evaluation"]:
        values = [float(scores[k][f"test_{metric}"]) for k in fold_keys]
        mean = sum(values) / len(values)
        std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
               if len(values) > 1 else None)
        out.append((metric, mean, std, len(values)))
    return out


def parse_validation_scores(path: str | Path, metadata: dict) -> dict:
    """The validation score heareval chose each fold's epoch on, from its
    ``test.predicted-scores.json``: ``{"metric", "value" (mean over folds), "folds":
    [{"fold", "score", "epoch"}]}``. The metric is the task's first one, or ``loss``
    when the task sets ``use_scoring_for_early_stopping: false`` (as heareval does)."""
    scores = json.loads(Path(path).read_text())
    folds = []
    for key in _fold_keys(metadata):
        if "validation_score" not in scores.get(key, {}):
            raise HearevalError(f"{path}: no validation score for {key!r}")
        folds.append({"fold": key, "score": float(scores[key]["validation_score"]),
                      "epoch": scores[key].get("epoch")})
    metric = (metadata["evaluation"][0] if metadata.get("use_scoring_for_early_stopping", True)
              else "loss")
    return {"metric": metric, "value": sum(f["score"] for f in folds) / len(folds), "folds": folds}


def _fold_keys(metadata: dict) -> list[str]:
    return ["test"] if metadata["split_mode"] == "trainvaltest" else sorted(metadata["splits"])


def store_outputs(task_dir: Path, embed_dir: Path, metadata: dict, outputs_dir: str | Path) -> Path:
    """Convert heareval's ``<fold>.predictions.pkl`` in ``task_dir`` (its working copy of the
    task) into per-clip outputs in ``outputs_dir``. Test rows are in the cached split's order
    (heareval never shuffles the test loader). Labels come from ``task_dir``'s checked copy
    (read again with :func:`load_labels_pickle`): nothing of the shared cache in ``embed_dir``
    is unpickled here."""
    vocab = pd.read_csv(embed_dir / "labelvocabulary.csv")
    label_to_idx = {str(lbl): int(i) for i, lbl in zip(vocab["idx"], vocab["label"])}
    folds, events = {}, {}
    for key in _fold_keys(metadata):
        path = task_dir / f"{key}.predictions.pkl"
        if not path.is_file():
            raise HearevalError(f"heareval's prediction runner wrote no {path.name} in {task_dir}")
        with open(path, "rb") as fh:  # heareval's own output, written by the run above
            pred = pickle.load(fh)
        if metadata["embedding_type"] == "event":
            folds[key] = event_fold_outputs(pred["predicted_events"], pred["target_events"],
                                            metadata["evaluation"], label_to_idx)
            events[key] = {"predicted": pred["predicted_events"], "target": pred["target_events"]}
        else:  # the work folder's copy: checked and re-pickled by _link_embeddings, never the cache's file
            labels = load_labels_pickle(task_dir / f"{key}.target-labels.pkl")
            folds[key] = FoldOutputs(ids=scene_clip_ids(embed_dir, key, labels),
                                     targets=np.asarray(pred["target"]), scores=np.asarray(pred["prediction"]))
    return save_outputs(outputs_dir, folds, events or None)


def run_heareval(embed_dir: str | Path, work_dir: str | Path, cfg: HearevalConfig,
                 python: str | None = None, outputs_dir: str | Path | None = None
                 ) -> tuple[list[tuple[str, float, float | None, int]], dict]:
    """Run heareval's prediction runner on a cached task; returns (metrics, details).

    ``work_dir`` is emptied first. The runner's output goes to ``work_dir/heareval.log``.
    With ``outputs_dir`` the per-clip test outputs are stored there (:func:`store_outputs`).
    Raises :class:`HearevalError` when it fails or times out.
    """
    embed_dir = Path(embed_dir).resolve()
    work = Path(work_dir).resolve()
    if work.exists():
        shutil.rmtree(work)
    task_rel = Path("embeddings") / embed_dir.name
    standardized = _link_embeddings(embed_dir, work / task_rel, cfg.param_grid, cfg.standardize)
    cmd = [python or sys.executable, "-m", "heareval.predictions.runner", str(task_rel),
           "--grid", cfg.grid, "--grid-points", str(cfg.grid_points),
           "--in-memory", str(cfg.in_memory), "--deterministic", str(cfg.deterministic)]
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONUNBUFFERED": "1"}
    log = work / "heareval.log"
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        try:
            proc = subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=cfg.timeout_s)
        except subprocess.TimeoutExpired:
            raise HearevalError(f"heareval's prediction runner ran past timeout_s="
                                f"{cfg.timeout_s} s; log: {log}") from None
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
        raise HearevalError(f"heareval's prediction runner exited with {proc.returncode}; "
                            f"log {log} ends with:\n{tail}")
    scores_path = work / task_rel / "test.predicted-scores.json"
    if not scores_path.is_file():
        raise HearevalError(f"heareval's prediction runner wrote no {scores_path.name}; log: {log}")
    metadata = json.loads((embed_dir / "task_metadata.json").read_text())
    raw = json.loads(scores_path.read_text())
    details = {"hparams": raw.get("hparams"), "postprocessing": raw.get("postprocessing"),
               "validation": parse_validation_scores(scores_path, metadata),
               "scores_file": str(scores_path), "grid": cfg.grid, "grid_points": cfg.grid_points,
               "param_grid": cfg.param_grid, "standardize": cfg.standardize}
    summary = parse_predicted_scores(scores_path, metadata)
    if outputs_dir is not None:
        store_outputs(work / task_rel, embed_dir, metadata, outputs_dir)
    for f in standardized:  # copies of the cache, now used: the cell keeps its log and scores
        f.unlink()
    return summary, details
