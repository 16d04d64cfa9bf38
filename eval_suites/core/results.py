"""Results of (model, task, protocol) cells: one JSON file per cell, one long CSV.

A cell's result lives at ``<out>/cells/<model>/<task>/<protocol>/result.json`` and is
written atomically once the cell has finished, successfully or not; its presence with
``status == "ok"`` is what makes a rerun skip the cell. ``results.csv`` is rebuilt from
those files and has one row per (model, task, protocol, metric)::

    model, task, suite, protocol, metric, value, std, folds, ci_low, ci_high, seconds, status, error

``std`` is the standard deviation over folds (k-fold tasks; empty otherwise), ``folds``
the number of folds scored (1 for train/valid/test), ``ci_low``/``ci_high`` the bootstrap
interval over test clips (:mod:`eval_suites.core.intervals`; empty when the cell has no per-clip
outputs, e.g. results written before they were kept, or the metric cannot be resampled). A failed cell has one row with
``status == "failed"``, an empty metric and value, and its error message.

A ``result.json`` that cannot be read back (truncated, not JSON, not UTF-8, nested too
deeply for the JSON reader, wrong fields: a crash of another tool, a full disk, a hand
edit) is a :class:`CorruptResult`; ``collect_results`` leaves that cell out with a :class:`CorruptResultWarning` naming the file, and the runner
computes the cell again. A failed write (disk full, read-only folder) is an OSError naming
the file; the previous ``result.json`` of the cell, if any, is left as it was.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from eval_suites.core.atomic_files import write_atomically
from eval_suites.errors import DataError

__all__ = ["MetricScore", "CellResult", "cell_dir", "save_cell", "load_cell", "CorruptResult",
           "CorruptResultWarning", "collect_results", "results_frame", "write_csv", "CSV_COLUMNS"]

CSV_COLUMNS = ["model", "task", "suite", "protocol", "metric", "value", "std", "folds",
               "ci_low", "ci_high", "seconds", "status", "error"]
RESULT_FILE = "result.json"


class CorruptResult(DataError):
    """A result.json that cannot be read back as a cell result; the message names the file."""


class CorruptResultWarning(UserWarning):
    """A corrupt result.json was left out (report) or will be computed again (run)."""


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
    """Write ``result.json`` of the cell atomically (a temporary file renamed over it)."""
    d = cell_dir(out_dir, result.model, result.task, result.protocol)
    path = d / RESULT_FILE
    try:
        d.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda fh: fh.write(json.dumps(asdict(result), indent=1, default=_json_default)))
    except OSError as e:
        reason = e.__cause__ if isinstance(e.__cause__, OSError) else e  # the OS's own words
        raise OSError(e.errno, f"cannot write the cell result {path}: {reason.strerror or reason}; "
                               "results already written are intact") from e
    return path


def _json_default(x):
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def load_cell(path: str | Path) -> CellResult:
    """Read one ``result.json``; :class:`CorruptResult` (naming it) when it cannot be read back."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(d, dict):
            raise TypeError(f"expected a JSON object, got {type(d).__name__}")
        d["metrics"] = [MetricScore(**m) for m in d.get("metrics", [])]
        result = CellResult(**d)
        if result.status not in ("ok", "failed") or not all(
                isinstance(m.value, (int, float)) and not isinstance(m.value, bool) for m in result.metrics):
            raise ValueError(f"status {result.status!r} or metric values {[m.value for m in result.metrics]} "
                             "are not those of a cell result")
        if not isinstance(result.details, dict):
            raise TypeError("'details' is not a JSON object")
    except (ValueError, TypeError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        raise CorruptResult(f"{path} is not a readable cell result ({type(e).__name__}: {e})") from e
    return result


def collect_results(out_dir: str | Path) -> list[CellResult]:
    """Every finished cell under ``<out>/cells`` (sorted by model, task, protocol); a corrupt
    ``result.json`` is left out with a :class:`CorruptResultWarning` naming it."""
    results = []
    for p in sorted(Path(out_dir).glob(f"cells/*/*/*/{RESULT_FILE}")):
        try:
            results.append(load_cell(p))
        except CorruptResult as e:
            warnings.warn(f"{e}; the cell is left out (a run computes it again)", CorruptResultWarning,
                          stacklevel=2)
    return sorted(results, key=lambda r: (r.model, r.task, r.protocol))


def results_frame(results: list[CellResult], intervals: dict | None = None) -> pd.DataFrame:
    """The long table of ``results.csv`` (columns :data:`CSV_COLUMNS`); ``intervals``:
    {(model, task, protocol, metric): (low, high)}, NaN where absent."""
    intervals = intervals or {}
    rows = []
    for r in results:
        base = dict(model=r.model, task=r.task, suite=r.suite, protocol=r.protocol,
                    seconds=round(r.seconds, 3), status=r.status, error=r.error or "")
        if not r.ok:
            rows.append({**base, "metric": "", "value": math.nan, "std": math.nan, "folds": 0,
                         "ci_low": math.nan, "ci_high": math.nan})
            continue
        for m in r.metrics:
            lo, hi = intervals.get((r.model, r.task, r.protocol, m.metric), (math.nan, math.nan))
            rows.append({**base, "metric": m.metric, "value": m.value,
                         "std": math.nan if m.std is None else m.std, "folds": m.folds,
                         "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def write_csv(results: list[CellResult], path: str | Path, intervals: dict | None = None) -> Path:
    """Write ``results.csv`` atomically (``intervals`` as in :func:`results_frame`)."""
    frame = results_frame(results, intervals)
    return write_atomically(path, lambda fh: frame.to_csv(fh, index=False))
