"""The demo's stored reference scores: saved from a run, copied into a later run's results only
while they describe it (same task files, same protocol settings, same default checkpoint),
and the committed ones match the shipped demo manifest."""
from __future__ import annotations

import json

import numpy as np
import pytest

import eval_suites.demo_references as refs
from eval_suites.core.clip_outputs import save_outputs
from eval_suites.core.intervals import FoldOutputs
from eval_suites.core.manifest import load_manifest
from eval_suites.core.report import REFERENCE_KEY, write_report
from eval_suites.core.results import CellResult, MetricScore, cell_dir, collect_results, save_cell


@pytest.fixture
def tasks_root(tmp_path):
    from eval_suites.hear_format.task import TaskMetadata, TaskWriter

    root = tmp_path / "tasks"
    t = np.arange(4000) / 16000
    writer = TaskWriter(root / "tones-v1-full", TaskMetadata(
        task_name="tones", version="v1", split_mode="trainvaltest", splits=["train", "valid", "test"],
        embedding_type="scene", prediction_type="multiclass", sample_duration=0.25, evaluation=["top1_acc"]))
    for split in ("train", "valid", "test"):
        for i in range(4):
            writer.add_clip(split, f"{split}{i}.wav", 0.3 * np.sin(2 * np.pi * (220 + 220 * (i % 2)) * t), 16000,
                            ["low" if i % 2 else "high"])
    writer.finalize()
    return root


def _manifest(tmp_path, tasks_root, epochs=5, task_settings=""):
    path = tmp_path / f"m{epochs}{bool(task_settings)}.yaml"
    own = f", settings: {task_settings}" if task_settings else ""
    path.write_text(f"suite: demo\ntasks_root: {tasks_root}\nmodels:\n  - {{name: slicer, module: hear_slicer}}\n"
                    f"tasks:\n  - {{name: tones, path: tones-v1-full{own}}}\nprotocols:\n  linear: {{epochs: {epochs}}}\n")
    return load_manifest(path)


def _reference_run(out, manifest):
    """What a run of the reference models leaves: ok cells with fingerprints and outputs."""
    settings = refs._protocol_settings(manifest, "linear", manifest.tasks[0])
    for i, model in enumerate(refs.REFERENCES):
        r = CellResult(model=model, task="tones", suite="demo", protocol="linear", status="ok",
                       metrics=[MetricScore(metric="top1_acc", value=0.5 + 0.25 * i)],
                       details={"fingerprint": {"embeddings": "abc", "protocol": settings}, "embeddings": "/tmp/x",
                                "folds": [{"valid_score": 0.5}]})
        save_cell(out, r)
        targets = np.eye(2, dtype=np.uint8)[[0, 1, 0, 1]]
        save_outputs(cell_dir(out, model, "tones", "linear"),
                     {"test": FoldOutputs(np.array(["a", "b", "c", "d"]), targets, targets.astype(np.float32))})


def test_stored_references_are_added_only_while_they_describe_the_run(tmp_path, tasks_root, monkeypatch):
    monkeypatch.setattr(refs, "REFERENCE_ROOT", tmp_path / "stored")
    manifest = _manifest(tmp_path, tasks_root)
    _reference_run(tmp_path / "ref_run", manifest)
    stored = refs.save_references(tmp_path / "ref_run", manifest, "small")
    kept = json.loads((cell_dir(stored, "logmel_stats", "tones", "linear") / "result.json").read_text())
    assert kept["details"][REFERENCE_KEY] == refs.REFERENCES["logmel_stats"]
    assert "embeddings" not in kept["details"]  # no path of the machine that computed them

    out = tmp_path / "demo_results"
    lines = refs.add_references(out, manifest, "small")
    assert "2 stored cell(s)" in lines[0] and len(lines) == 1, lines
    added = {r.model: r for r in collect_results(out)}
    assert set(added) == set(refs.REFERENCES) and all(r.details[REFERENCE_KEY] for r in added.values())
    md = write_report(out)["markdown"].read_text()
    assert "Reference models: " in md and f"`random_init`: {refs.REFERENCES['random_init']}" in md
    assert "*chance* | 0.500" in md

    # other protocol settings: left out, named, and no stale copy stays in the results
    lines = refs.add_references(out, _manifest(tmp_path, tasks_root, epochs=6), "small")
    assert "tones/linear (protocol settings changed)" in lines[-1] and "eval_suites.demo_references" in lines[-1]
    assert collect_results(out) == []
    # the same top-level settings, but the task's own differ: left out too
    lines = refs.add_references(out, _manifest(tmp_path, tasks_root, task_settings="{linear: {epochs: 6}}"), "small")
    assert "tones/linear (protocol settings changed)" in lines[-1] and collect_results(out) == []
    # other task files: left out
    wav = next((tasks_root / "tones-v1-full").rglob("test0.wav"))
    wav.write_bytes(wav.read_bytes()[:-2] + b"\x01\x00")
    assert "tones (task files changed)" in refs.add_references(out, manifest, "small")[-1]
    # another preset has none stored
    assert "no reference scores stored for preset 'tiny'" in refs.add_references(out, manifest, "tiny")[0]


def test_the_committed_references_match_the_shipped_demo_manifest():
    """Every stored cell of the small preset is a reference of a task and protocol of
    eval_suites/manifests/demo.yaml, computed with its current protocol settings and, for
    random_init, the shipped default checkpoint (a changed manifest or checkpoint needs
    `python -m eval_suites.demo_references`)."""
    from eval_suites.demo import DEMO_MANIFEST

    stored = refs.REFERENCE_ROOT / "small"
    manifest = load_manifest(DEMO_MANIFEST, tasks_root=stored)  # the tasks root is not read here
    cells = collect_results(stored)
    expected = {(m, t.name, p) for m in refs.REFERENCES for t in manifest.tasks for p in t.protocols}
    assert {(r.model, r.task, r.protocol) for r in cells} == expected
    for r in cells:
        assert r.ok and r.details[REFERENCE_KEY] == refs.REFERENCES[r.model]
        task = next(t for t in manifest.tasks if t.name == r.task)
        assert r.details["fingerprint"]["protocol"] == refs._protocol_settings(manifest, r.protocol, task), (
            f"{r.model}/{r.task}/{r.protocol}: stored with other settings; run python -m eval_suites.demo_references")
    source = json.loads((stored / refs.SOURCE_FILE).read_text())
    assert source["default_checkpoint_sha256"] == refs._default_checkpoint_sha256(), (
        "random_init was stored with another default checkpoint; run python -m eval_suites.demo_references")
