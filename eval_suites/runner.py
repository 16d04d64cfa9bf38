"""Running a manifest: every (model, task, protocol) cell, resumable, failure-tolerant.

For each model and task the embeddings are computed once (or found in the cache) and
every protocol of the task scores them. Each cell ends with its ``result.json``
(:mod:`eval_suites.results`), written atomically:

- a rerun skips cells whose result is ``ok``; failed cells and cells never finished
  (an interrupted run) are run again;
- an exception in a cell (model that does not load, broken task, heareval crash) is
  recorded in that cell as ``failed`` with its message, and the run goes on;
  ``KeyboardInterrupt`` stops the run without recording the cell in progress;
- ``results.csv`` and ``results.md`` are rewritten after every cell, so what is
  finished is always on disk; ``results.png`` is drawn at the end (and by ``report``).
"""
from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from eval_suites.embeddings import HearModel, ensure_embeddings, load_hear_model
from eval_suites.manifest import Manifest, ManifestError, ModelSpec, TaskSpec, check_inputs
from eval_suites.protocols.heareval import run_heareval
from eval_suites.protocols.linear import run_linear
from eval_suites.report import write_report
from eval_suites.results import (CellResult, MetricScore, cell_dir, collect_results,
                                 load_cell, save_cell)

__all__ = ["run_manifest", "pending_cells"]


def _done(out_dir: Path, model: str, task: str, protocol: str) -> bool:
    path = cell_dir(out_dir, model, task, protocol) / "result.json"
    return path.is_file() and load_cell(path).ok


def pending_cells(manifest: Manifest, out_dir: str | Path) -> list[tuple[ModelSpec, TaskSpec, str]]:
    """Cells of ``manifest`` without an ``ok`` result under ``out_dir``."""
    out = Path(out_dir)
    return [(m, t, p) for m in manifest.models for t in manifest.tasks for p in t.protocols
            if not _done(out, m.name, t.name, p)]


class _ModelLoader:
    """Loads each model at most once, on first need; remembers a load failure."""

    def __init__(self, device: str | None):
        self.device = device
        self.loaded: dict[str, HearModel] = {}
        self.errors: dict[str, BaseException] = {}

    def get(self, spec: ModelSpec) -> HearModel:
        if spec.name in self.errors:
            raise self.errors[spec.name]
        if spec.name not in self.loaded:
            try:
                self.loaded[spec.name] = load_hear_model(spec, self.device)
            except Exception as e:  # recorded in every cell of this model
                self.errors[spec.name] = e
                raise
        return self.loaded[spec.name]

    def release(self, spec: ModelSpec) -> None:
        self.loaded.pop(spec.name, None)


def _score(protocol: str, manifest: Manifest, embed_dir: Path, work: Path, progress: bool):
    if protocol == "linear":
        summary, folds = run_linear(embed_dir, manifest.linear, progress=progress)
        return summary, {"folds": [asdict(f) for f in folds]}
    if protocol == "heareval":
        return run_heareval(embed_dir, work / "work", manifest.heareval)
    raise ValueError(f"unknown protocol {protocol!r}")


def run_manifest(manifest: Manifest, out_dir: str | Path, progress: bool = True,
                 device: str | None = None,
                 on_cell: Callable[[CellResult], None] | None = None) -> list[CellResult]:
    """Run every unfinished cell of ``manifest`` into ``out_dir``; returns all results.

    Raises :class:`ManifestError` before any work when a model module, checkpoint or
    task folder is unusable. ``on_cell`` is called after each finished cell.
    """
    problems = check_inputs(manifest)
    if problems:
        raise ManifestError(f"manifest {manifest.source}", problems)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache_root = manifest.cache_dir or (out / "embeddings")
    (out / "run.json").write_text(json.dumps({
        "manifest": str(manifest.source), "tasks_root": str(manifest.tasks_root),
        "cache_dir": str(cache_root), "models": [asdict(m) for m in manifest.models],
        "tasks": [asdict(t) for t in manifest.tasks],
        "linear": asdict(manifest.linear), "heareval": asdict(manifest.heareval),
    }, indent=1, default=str))
    todo = pending_cells(manifest, out)
    loader = _ModelLoader(device)
    overall = tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress)
    for model in manifest.models:
        for task in manifest.tasks:
            protocols = [p for (m, t, p) in todo if m is model and t is task]
            if not protocols:
                continue
            overall.set_description(f"{model.name} / {task.name}")
            start = time.time()
            embed_error: BaseException | None = None
            try:
                embed_dir = ensure_embeddings(model, task.path, cache_root,
                                              lambda: loader.get(model), progress=progress)
            except Exception as e:
                embed_error = e
            embed_seconds = time.time() - start
            for protocol in protocols:
                work = cell_dir(out, model.name, task.name, protocol)
                t0 = time.time()
                result = CellResult(model=model.name, task=task.name, suite=task.suite,
                                    protocol=protocol, status="ok")
                try:
                    if embed_error is not None:
                        raise embed_error
                    summary, details = _score(protocol, manifest, embed_dir, work, progress)
                    result.metrics = [MetricScore(metric=m, value=v, std=s, folds=k)
                                      for m, v, s, k in summary]
                    result.details = {**details, "embeddings": str(embed_dir),
                                      "embedding_seconds": round(embed_seconds, 3)}
                except Exception as e:
                    result.status = "failed"
                    result.error = f"{type(e).__name__}: {e}"
                    result.details = {"traceback": traceback.format_exc()}
                result.seconds = time.time() - t0 + (embed_seconds if protocol == protocols[0] else 0.0)
                save_cell(out, result)
                write_report(out, plot=False)
                if on_cell is not None:
                    on_cell(result)
                overall.update(1)
        loader.release(model)
    overall.close()
    write_report(out)
    return collect_results(out)
