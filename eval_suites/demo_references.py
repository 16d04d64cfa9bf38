"""The reference scores `make demo` shows beside the default model, kept with the package.

Two models that learn nothing, scored on the demo tasks with the demo's protocols:

- ``random_init``: the default architecture with fixed-seed random weights and the default
  model's input normalisation (so only the learned weights differ from the default model);
- ``logmel_stats``: per-band log-mel mean and standard deviation
  (:mod:`eval_suites.references.logmel_stats`).

Computing them would double the demo's time, so their finished cells (``result.json`` and
per-clip test outputs, so the report draws their intervals) are committed under
``eval_suites/references/demo_scores/<preset>/`` by ``python -m studies.demo_references``, and
:func:`add_references` copies them into the demo's results folder. A cell is copied only
when it still describes the run: its task's files (labels and audio, by content) and its
protocol's settings must equal those it was computed with (and, for ``random_init``, the
default checkpoint too); any other is left out and named, with the command that recomputes
them.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from eval_suites.core.clip_outputs import EVENTS_FILE, OUTPUTS_FILE
from eval_suites.core.embeddings import file_sha256
from eval_suites.core.manifest import Manifest, ModelSpec
from eval_suites.core.report import REFERENCE_KEY
from eval_suites.core.results import RESULT_FILE, CellResult, cell_dir, collect_results, load_cell, save_cell

__all__ = ["REFERENCES", "REFERENCE_ROOT", "RECOMPUTE", "reference_models", "task_digest", "save_references",
           "add_references"]

REFERENCES = {
    "random_init": "no training: the default architecture at fixed-seed random init, with the default "
                   "model's input normalisation",
    "logmel_stats": "no learning: per-band log-mel mean and std",
}
"""Reference model name -> what it is (shown under the demo's table)."""

REFERENCE_ROOT = Path(__file__).resolve().parent / "references" / "demo_scores"
RECOMPUTE = "python -m studies.demo_references"
SOURCE_FILE = "source.json"
_CELL_FILES = (RESULT_FILE, OUTPUTS_FILE, EVENTS_FILE)


def reference_models(random_init_checkpoint: Path) -> list[ModelSpec]:
    """The reference models as manifest entries. ``random_init_checkpoint``: the default
    model's checkpoint with its encoder weights replaced by the fixed-seed random init
    (``studies.mini_lape.random_init_checkpoint``)."""
    return [ModelSpec(name="random_init", module="hear_slicer", checkpoint=random_init_checkpoint),
            ModelSpec(name="logmel_stats", module="eval_suites.references.logmel_stats")]


def task_digest(task_dir: Path) -> str:
    """sha256 over the names and contents of every file of a task folder (labels and audio)."""
    h = hashlib.sha256()
    files = [p for p in task_dir.rglob("*") if p.is_file()]
    for f in sorted(f for f in files if not f.relative_to(task_dir).parts[0].startswith(".")):  # not .taskwriter/
        h.update(str(f.relative_to(task_dir)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _default_checkpoint_sha256() -> str | None:
    """Content hash of hear_slicer's default checkpoint (random_init takes its normalisation)."""
    from hear_slicer.api import DEFAULT_CHECKPOINT

    return file_sha256(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT.is_file() else None


def _protocol_settings(manifest: Manifest, protocol: str) -> dict:
    """The settings a cell's fingerprint records for ``protocol`` (``device`` aside), as JSON."""
    settings = {k: v for k, v in asdict(getattr(manifest, protocol)).items() if k != "device"}
    return json.loads(json.dumps(settings, default=str))


def save_references(results_dir: Path, manifest: Manifest, preset: str) -> Path:
    """Copy the reference cells of a finished run (``results_dir``, the models of
    :data:`REFERENCES`, on ``manifest``'s tasks) to ``REFERENCE_ROOT/<preset>``, each marked
    as a reference, with ``source.json``: each task's digest."""
    target = REFERENCE_ROOT / preset
    if target.exists():
        shutil.rmtree(target)
    for r in collect_results(results_dir):
        if r.model not in REFERENCES or not r.ok:
            continue
        fingerprint = r.details.get("fingerprint", {})
        r.details = {REFERENCE_KEY: REFERENCES[r.model], "fingerprint": {"protocol": fingerprint.get("protocol")},
                     **{k: v for k, v in r.details.items() if k == "folds"}}
        save_cell(target, r)
        for name in (OUTPUTS_FILE, EVENTS_FILE):
            src = cell_dir(results_dir, r.model, r.task, r.protocol) / name
            if src.is_file():
                shutil.copy(src, cell_dir(target, r.model, r.task, r.protocol) / name)
    source = {"preset": preset, "recompute": f"{RECOMPUTE} --preset {preset}",
              "default_checkpoint_sha256": _default_checkpoint_sha256(),
              "tasks": {t.name: {"folder": t.path.name, "sha256": task_digest(t.path)} for t in manifest.tasks}}
    (target / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n")
    return target


def add_references(out: Path, manifest: Manifest, preset: str) -> list[str]:
    """Copy the committed reference cells that describe this run (``manifest``'s tasks and
    protocols, same task files, same protocol settings) into ``out``; returns the lines to
    print: what was added and what was left out, and why."""
    stored = REFERENCE_ROOT / preset
    for model in REFERENCES:  # no stale reference from an earlier demo run stays
        if (out / "cells" / model).is_dir():
            shutil.rmtree(out / "cells" / model)
    if not (stored / SOURCE_FILE).is_file():
        return [f"no reference scores stored for preset {preset!r} (compute them: {RECOMPUTE} --preset {preset})"]
    stored_source = json.loads((stored / SOURCE_FILE).read_text())
    source = stored_source["tasks"]
    same_default = stored_source.get("default_checkpoint_sha256") == _default_checkpoint_sha256()
    added, stale = [], set()
    for task in manifest.tasks:
        same_data = task.name in source and source[task.name]["sha256"] == task_digest(task.path)
        for protocol in task.protocols:
            for model in REFERENCES:
                path = cell_dir(stored, model, task.name, protocol) / RESULT_FILE
                if not path.is_file():
                    stale.add(f"{task.name}/{protocol} (not computed)")
                    continue
                cell: CellResult = load_cell(path)
                if not same_data:
                    stale.add(f"{task.name} (task files changed)")
                elif model == "random_init" and not same_default:
                    stale.add("random_init (the default checkpoint changed)")
                elif cell.details.get("fingerprint", {}).get("protocol") != _protocol_settings(manifest, protocol):
                    stale.add(f"{task.name}/{protocol} (protocol settings changed)")
                else:
                    dest = cell_dir(out, model, task.name, protocol)
                    dest.mkdir(parents=True, exist_ok=True)
                    for name in _CELL_FILES:
                        if (path.parent / name).is_file():
                            shutil.copy(path.parent / name, dest / name)
                    added.append(f"{model}/{task.name}/{protocol}")
    lines = [f"references: {', '.join(REFERENCES)} — {len(added)} stored cell(s) from {stored} (not recomputed)"]
    if stale:
        lines.append(f"references left out, computed on other data or settings: {', '.join(sorted(stale))}; "
                     f"recompute them with `{RECOMPUTE} --preset {preset}`")
    return lines
