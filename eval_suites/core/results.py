"""Results of (model, task, protocol) cells: one JSON file per cell, one long CSV.

A cell's result lives at ``<out>/cells/<model>/<task>/<protocol>/result.json`` and is
written atomically once the cell has finished, successfully or not; its presence with
``status == "ok"`` is what makes a rerun skip the cell. ``results.csv`` is rebuilt from
those files and has one row per (model, task, protocol, metric)::

    model, task, suite, protocol, metric, value, std, folds, seconds, status, error

``std`` is the standard deviation over folds (k-fold tasks; empty otherwise), ``folds``
the number of folds scored (1 for train/valid/test). A failed cell has one row with
``status == "failed"``, an empty metric and value, and its error message.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["MetricScore", "CellResult", "cell_dir", "save_cell", "load_cell",
           "collect_results", "results_frame", "write_csv", "CSV_COLUMNS"]

CSV_COLUMNS = ["model", "task", "suite", "protocol", "metric", "value", "std", "folds",
               "seconds", "status", "error"]
RESULT_FILE = "result.json"


@dataclass
class MetricScore:
    """One test metric: mean over folds ``value``, ``std`` over folds (None for 1 fold)."""

    metric: str
    value: float
    std: float | None = None
    folds: int = 1


@dataclass
class CellResult:
    """The outcome of one (model, task, protocol) cell; ``metrics[0]`` is the primary
    metric (the task's first evaluation metric, the one used for model selection)."""

    model: str
    task: str
    suite: str
    protocol: str
    status: str  # "ok" | "failed"
    metrics: list[MetricScore] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def primary(self) -> MetricScore | None:
        return self.metrics[0] if self.ok and self.metrics else None


def cell_dir(out_dir: str | Path, model: str, task: str, protocol: str) -> Path:
    """``<out>/cells/<model>/<task>/<protocol>``."""
    return Path(out_dir) / "cells" / model / task / protocol


def save_cell(out_dir: str | Path, result: CellResult) -> Path:
    """Write ``result.json`` of the cell atomically (temp file + rename)."""
    d = cell_dir(out_dir, result.model, result.task, result.protocol)
    d.mkdir(parents=True, exist_ok=True)
    path = d / RESULT_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1, default=_json_default))
    os.replace(tmp, path)
    return path


def _json_default(x):
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def load_cell(path: str | Path) -> CellResult:
    """Read one ``result.json``."""
    d = json.loads(Path(path).read_text())
    d["metrics"] = [MetricScore(**m) for m in d.get("metrics", [])]
    return CellResult(**d)


def collect_results(out_dir: str | Path) -> list[CellResult]:
    """Every finished cell under ``<out>/cells`` (sorted by model, task, protocol)."""
    paths = sorted(Path(out_dir).glob(f"cells/*/*/*/{RESULT_FILE}"))
    return sorted((load_cell(p) for p in paths), key=lambda r: (r.model, r.task, r.protocol))


def results_frame(results: list[CellResult]) -> pd.DataFrame:
    """The long table of ``results.csv`` (columns :data:`CSV_COLUMNS`)."""
    rows = []
    for r in results:
        base = dict(model=r.model, task=r.task, suite=r.suite, protocol=r.protocol,
                    seconds=round(r.seconds, 3), status=r.status, error=r.error or "")
        if not r.ok:
            rows.append({**base, "metric": "", "value": math.nan, "std": math.nan, "folds": 0})
            continue
        for m in r.metrics:
            rows.append({**base, "metric": m.metric, "value": m.value,
                         "std": math.nan if m.std is None else m.std, "folds": m.folds})
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def write_csv(results: list[CellResult], path: str | Path) -> Path:
    """Write ``results.csv``."""
    results_frame(results).to_csv(path, index=False)
    return Path(path)
