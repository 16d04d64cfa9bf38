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
frame, for event tasks) over, or use ``hidden_layers: [0]``.

It writes its outputs next to the embeddings it reads, so each cell gets a work folder
``<work>/embeddings/<task>/`` of symbolic links to the cached files: the shared cache
stays clean and read-only for this protocol. The labels pickles heareval reads are not
links: each is checked with ``eval_suites.core.embeddings.load_labels_pickle`` (which refuses
anything but plain lists) and written afresh, so a tampered shared cache cannot run code
in heareval's process. Environment fixes from RECIPE.md:
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (torch >= 2.6 refuses heareval's checkpoint
reload otherwise). The prediction runner does not import TensorFlow.

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

__all__ = ["HearevalConfig", "HEAREVAL_GRIDS", "run_heareval", "parse_predicted_scores",
           "store_outputs", "HearevalError"]

HEAREVAL_GRIDS = ("default", "fast", "faster")
"""Grid names accepted by heareval 2021.1.3's ``--grid`` option."""
PARAM_GRID_KEYS = ("hidden_layers", "hidden_dim", "dropout", "lr", "patience", "max_epochs",
                   "check_val_every_n_epoch", "batch_size")
"""Entries of heareval 2021.1.3's PARAM_GRID that take plain numbers (``param_grid``)."""
_LOG_TAIL_LINES = 25


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
        for key in ("in_memory", "deterministic"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"setting {key!r}: expected true or false, "
                                 f"got {getattr(self, key)!r}")


def _link_embeddings(embed_dir: Path, task_link_dir: Path, param_grid: dict | None = None) -> None:
    """Fill ``task_link_dir`` with symbolic links to the files (not the per-clip split
    folders, which the prediction runner does not read) of ``embed_dir``; with a
    ``param_grid``, task_metadata.json is a copy that carries it."""
    task_link_dir.mkdir(parents=True)
    for f in sorted(embed_dir.iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        if f.name == "task_metadata.json" and param_grid:
            metadata = json.loads(f.read_text())
            params = metadata.setdefault("evaluation_params", {})
            params["task_specific_param_grid"] = {**params.get("task_specific_param_grid", {}), **param_grid}
            (task_link_dir / f.name).write_text(json.dumps(metadata, indent=1))
        elif f.name.endswith(".target-labels.pkl"):  # checked, then re-pickled: never hand heareval the cached file
            labels = load_labels_pickle(f)
            with open(task_link_dir / f.name, "wb") as fh:
                pickle.dump(labels, fh)
        else:
            (task_link_dir / f.name).symlink_to(f.resolve())


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
    _link_embeddings(embed_dir, work / task_rel, cfg.param_grid)
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
               "scores_file": str(scores_path), "grid": cfg.grid, "grid_points": cfg.grid_points,
               "param_grid": cfg.param_grid}
    summary = parse_predicted_scores(scores_path, metadata)
    if outputs_dir is not None:
        store_outputs(work / task_rel, embed_dir, metadata, outputs_dir)
    return summary, details
