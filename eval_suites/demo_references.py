"""The reference scores `make demo` shows beside the default model, kept with the package.

Two models that learn nothing, scored on the demo tasks with the demo's protocols:

- ``random_init``: the default architecture with fixed-seed random weights and the default
  model's input normalisation (``hear_slicer.load_model(random_init=True)``), so only the
  learned weights differ from the default model;
- ``logmel_stats``: per-band log-mel mean and standard deviation
  (:mod:`eval_suites.references.logmel_stats`).

Computing them would double the demo's time, so their finished cells (``result.json`` and
per-clip test outputs, so the report draws their intervals) are committed under
``eval_suites/references/demo_scores/<preset>/``, written by::

    python -m eval_suites.demo_references [--preset small] [--root demo_data] [--work runs/demo_references]

(builds the demo data if missing, runs the demo manifest's tasks and protocols on the two
models, stores their cells; commit them). :func:`add_references` copies them into the
demo's results folder. A cell is copied only when it still describes the run: its task's
files (labels and audio, by content) and its protocol's settings must equal those it was
computed with (and, for ``random_init``, the default checkpoint too); any other is left out
and named, with the command that recomputes them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from eval_suites.core.clip_outputs import EVENTS_FILE, OUTPUTS_FILE
from eval_suites.core.embeddings import file_sha256
from eval_suites.core.manifest import Manifest, ModelSpec, TaskSpec
from eval_suites.core.report import REFERENCE_KEY
from eval_suites.core.results import RESULT_FILE, CellResult, cell_dir, collect_results, load_cell, save_cell

__all__ = ["DEMO_MANIFEST", "REFERENCES", "REFERENCE_ROOT", "RECOMPUTE", "reference_models", "task_digest", "save_references",
           "add_references", "main"]

REFERENCES = {
    "random_init": "no training: the default architecture at fixed-seed random init, with the default "
                   "model's input normalisation",
    "logmel_stats": "no learning: per-band log-mel mean and std",
}
"""Reference model name -> what it is (shown under the demo's table)."""

DEMO_MANIFEST = Path(__file__).resolve().parent / "manifests" / "demo.yaml"
"""The demo's tasks and protocols (``eval_suites.demo`` evaluates on it too)."""
REFERENCE_ROOT = Path(__file__).resolve().parent / "references" / "demo_scores"
RECOMPUTE = "python -m eval_suites.demo_references"
SOURCE_FILE = "source.json"
_CELL_FILES = (RESULT_FILE, OUTPUTS_FILE, EVENTS_FILE)


def reference_models() -> list[ModelSpec]:
    """The reference models as manifest entries."""
    return [ModelSpec(name="random_init", module="hear_slicer", options={"random_init": True}),
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


def _protocol_settings(manifest: Manifest, protocol: str, task: TaskSpec) -> dict:
    """The settings a cell's fingerprint records for ``protocol`` on ``task`` (the task's own
    over the manifest's; ``device`` aside), as JSON."""
    settings = {k: v for k, v in asdict(manifest.protocol_config(protocol, task)).items() if k != "device"}
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
                elif cell.details.get("fingerprint", {}).get("protocol") != _protocol_settings(manifest, protocol, task):
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


def main(argv: list[str] | None = None) -> int:
    from eval_suites import quiet_heareval_imports
    from eval_suites.errors import run_command

    quiet_heareval_imports()
    ap = argparse.ArgumentParser(prog="python -m eval_suites.demo_references",
                                 description="Recompute the reference scores the demo shows (see the module's docs).")
    ap.add_argument("--preset", default="small", help="demo data preset (default: small)")
    ap.add_argument("--root", type=Path, default=Path("demo_data"), help="where the demo data is built (cached)")
    ap.add_argument("--work", type=Path, default=Path("runs/demo_references"),
                    help="the embeddings and results of the run (default: runs/demo_references)")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = ap.parse_args(argv)
    return run_command(lambda: _recompute(args), debug=args.debug)  # exit 2/3 with one error line


def _recompute(args: argparse.Namespace) -> int:
    from eval_suites.core.manifest import load_manifest
    from eval_suites.core.runner import run_manifest
    from eval_suites.synthetic.demo_data import build_demo

    build_demo(args.root, preset=args.preset, progress=not args.no_progress)
    manifest = load_manifest(DEMO_MANIFEST, tasks_root=args.root / "tasks")
    manifest.models = reference_models()
    results_dir = args.work / f"results_{args.preset}"
    results = run_manifest(manifest, results_dir, progress=not args.no_progress)
    failed = [f"{r.model}/{r.task}/{r.protocol}: {r.error}" for r in results if not r.ok]
    if failed:
        print("failed cells, nothing stored:\n" + "\n".join(failed), file=sys.stderr)
        return 1
    print(f"stored in {save_references(results_dir, manifest, args.preset)}; commit it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
