"""Running a manifest: every (model, task, protocol) cell, resumable, failure-tolerant.

For each model and task the embeddings are computed once (or found in the cache) and
every protocol of the task scores them. Each cell ends with its ``result.json``
(:mod:`eval_suites.core.results`), written atomically:

- a rerun skips cells whose result is ``ok`` and whose fingerprint (the embeddings' cache
  digest: module, checkpoint content, options, task; and the protocol's settings, the
  task's own over the manifest's) is
  unchanged; failed cells, cells never finished (an interrupted run) and cells whose model,
  task or protocol settings changed since are run again;
- an exception in a cell (model that does not load, broken task, heareval crash) is
  recorded in that cell as ``failed`` with its message, and the run goes on;
  ``KeyboardInterrupt`` stops the run without recording the cell in progress;
- ``results.csv`` and ``results.md`` are rewritten after every cell, so what is
  finished is always on disk; ``results.png`` is drawn at the end (and by ``report``);
- each finished cell prints one line (model / task / protocol, its status and main score,
  the count and an ETA), with or without progress bars (``hear_slicer.progress``);
- with ``shard`` (``--shard K/N``, :mod:`eval_suites.core.shards`) only that shard's cells
  are run; shards may share one results folder at once: each writes only its own cells,
  every shared file (``run.json``, the report) is replaced atomically, and the embedding
  cache computes an entry once under a lock; ``python -m eval_suites report`` merges them;
- a corrupt ``result.json`` (truncated, not JSON) is warned about, naming the file, and its
  cell computed again; a failed write (disk full, read-only output) stops the run with an
  OSError naming the file, every result written before it intact.
"""
from __future__ import annotations

import json
import time
import traceback
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from hear_slicer.progress import Progress

from eval_suites.core.atomic_files import write_atomically
from eval_suites.core.clip_outputs import clear_outputs
from eval_suites.core.embeddings import HearModel, cache_key, ensure_embeddings, load_hear_model
from eval_suites.core.manifest import Manifest, ManifestError, ModelSpec, TaskSpec, check_inputs
from eval_suites.core.protocols.heareval import run_heareval
from eval_suites.core.protocols.knn import run_knn
from eval_suites.core.protocols.linear import run_linear
from eval_suites.core.report import write_report
from eval_suites.core.results import (CellResult, CorruptResult, CorruptResultWarning, MetricScore, cell_dir,
                                 collect_results, load_cell, save_cell)
from eval_suites.core.shards import Shard

__all__ = ["run_manifest", "pending_cells", "manifest_cells"]


class _Fingerprints:
    """What a cell's result depends on, computed once per (model, task)."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        self.digests: dict[tuple[str, str], str] = {}

    def __call__(self, model: ModelSpec, task: TaskSpec, protocol: str) -> dict:
        if (model.name, task.name) not in self.digests:
            try:
                digest = cache_key(model, task.path)["digest"]
            except OSError:  # unreadable checkpoint or task: the cell will fail and say why
                digest = None
            self.digests[model.name, task.name] = digest
        settings = {k: v for k, v in asdict(self.manifest.protocol_config(protocol, task)).items() if k != "device"}
        return {"embeddings": self.digests[model.name, task.name], "protocol": settings}


def _done(out_dir: Path, model: ModelSpec, task: TaskSpec, protocol: str, fingerprint: dict) -> bool:
    path = cell_dir(out_dir, model.name, task.name, protocol) / "result.json"
    if not path.is_file():
        return False
    try:
        cell = load_cell(path)
    except CorruptResult as e:
        warnings.warn(f"{e}; computing the cell again", CorruptResultWarning, stacklevel=2)
        return False
    return cell.ok and json.loads(json.dumps(cell.details.get("fingerprint"), default=str)) == \
        json.loads(json.dumps(fingerprint, default=str))


def manifest_cells(manifest: Manifest, shard: Shard | None = None) -> list[tuple[ModelSpec, TaskSpec, str]]:
    """The (model, task, protocol) cells of ``manifest`` in run order (models, then tasks,
    then protocols, as the manifest lists them); with ``shard``, only that shard's share
    (:mod:`eval_suites.core.shards`: a block of the cells sorted by name)."""
    cells = [(m, t, p) for m in manifest.models for t in manifest.tasks for p in t.protocols]
    if shard is None:
        return cells
    mine = set(shard.take([(m.name, t.name, p) for m, t, p in cells]))
    return [(m, t, p) for m, t, p in cells if (m.name, t.name, p) in mine]


def pending_cells(manifest: Manifest, out_dir: str | Path,
                  fingerprints: _Fingerprints | None = None,
                  shard: Shard | None = None) -> list[tuple[ModelSpec, TaskSpec, str]]:
    """Cells of ``manifest`` (of ``shard``, if given) without an up-to-date ``ok`` result
    under ``out_dir``."""
    out = Path(out_dir)
    fingerprints = fingerprints or _Fingerprints(manifest)
    return [(m, t, p) for m, t, p in manifest_cells(manifest, shard)
            if not _done(out, m, t, p, fingerprints(m, t, p))]


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


def _score(protocol: str, manifest: Manifest, task: TaskSpec, embed_dir: Path, work: Path, progress: bool):
    """(metrics, details) of one cell, with the task's own settings of ``protocol``; its per-clip
    test outputs go into ``work``."""
    clear_outputs(work)  # none left from an earlier scoring of the cell
    config = manifest.protocol_config(protocol, task)
    if protocol == "linear":
        summary, folds = run_linear(embed_dir, config, progress=progress, outputs_dir=work)
        return summary, {"folds": [asdict(f) for f in folds]}
    if protocol == "heareval":
        return run_heareval(embed_dir, work / "work", config, outputs_dir=work)
    if protocol == "knn":
        summary, folds = run_knn(embed_dir, config, progress=progress, outputs_dir=work)
        return summary, {"folds": [asdict(f) for f in folds]}
    raise ValueError(f"unknown protocol {protocol!r}")


def _outcome(result: CellResult) -> str:
    """'ok, accuracy 0.712 in 41 s' or 'FAILED (ValueError: ...)'."""
    if not result.ok:
        return f"FAILED ({(result.error or '').splitlines()[0] if result.error else 'no message'})"
    main = f", {result.metrics[0].metric} {result.metrics[0].value:.3f}" if result.metrics else ""
    return f"ok{main} in {result.seconds:.0f} s"


def run_manifest(manifest: Manifest, out_dir: str | Path, progress: bool = True,
                 device: str | None = None,
                 on_cell: Callable[[CellResult], None] | None = None,
                 shard: Shard | None = None) -> list[CellResult]:
    """Run every unfinished cell of ``manifest`` (of ``shard``, if given) into ``out_dir``;
    returns all results found there (every shard's).

    Raises :class:`ManifestError` before any work when a model module, checkpoint or
    task folder is unusable. ``on_cell`` is called after each finished cell.
    """
    problems = check_inputs(manifest)
    if problems:
        raise ManifestError(f"manifest {manifest.source}", problems)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache_root = manifest.cache_dir or (out / "embeddings")
    run_record = json.dumps({
        "manifest": str(manifest.source), "tasks_root": str(manifest.tasks_root),
        "cache_dir": str(cache_root), "models": [asdict(m) for m in manifest.models],
        "tasks": [asdict(t) for t in manifest.tasks],
        "linear": asdict(manifest.linear), "heareval": asdict(manifest.heareval),
        "knn": asdict(manifest.knn),
    }, indent=1, default=str)
    write_atomically(out / "run.json", lambda fh: fh.write(run_record))  # every shard writes the same
    fingerprints = _Fingerprints(manifest)
    todo = pending_cells(manifest, out, fingerprints, shard)
    loader = _ModelLoader(device)
    n_cells = len(manifest_cells(manifest, shard))
    overall = Progress(len(todo), "cells", unit="cell", enabled=progress)
    overall.write(f"cells: {len(todo)} to run, {n_cells - len(todo)} up to date in {out}")
    for model in manifest.models:
        for task in manifest.tasks:
            protocols = [p for (m, t, p) in todo if m is model and t is task]
            if not protocols:
                continue
            overall.set_postfix(now=f"{model.name} / {task.name}")
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
                    summary, details = _score(protocol, manifest, task, embed_dir, work, progress)
                    result.metrics = [MetricScore(metric=m, value=v, std=s, folds=k)
                                      for m, v, s, k in summary]
                    result.details = {**details, "embeddings": str(embed_dir),
                                      "embedding_seconds": round(embed_seconds, 3),
                                      "fingerprint": fingerprints(model, task, protocol)}
                except Exception as e:
                    result.status = "failed"
                    result.error = f"{type(e).__name__}: {e}"
                    result.details = {"traceback": traceback.format_exc()}
                result.seconds = time.time() - t0 + (embed_seconds if protocol == protocols[0] else 0.0)
                save_cell(out, result)
                write_report(out, plot=False)
                if on_cell is not None:
                    on_cell(result)
                overall.done(f"{model.name} / {task.name} / {protocol}: {_outcome(result)}")
        loader.release(model)
    overall.close()
    write_report(out)
    return collect_results(out)
