"""The embedding writer against heareval's own embedding runner, the cache key, event
labels against heareval's interval tree, and clip names that try to leave the task."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eval_suites.synthetic.demo_tasks import build_event_task, build_keyword_task
from eval_suites.core.embeddings import (DONE_FILE, cache_key, ensure_embeddings, labels_at_timestamps,
                                    load_hear_model, read_split, write_embeddings)
from eval_suites.core.manifest import ModelSpec
from eval_suites.core.protocols.linear import data_splits

TESTS = Path(__file__).resolve().parent
TOY = ModelSpec(name="toy", module="hear_toy_module")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tasks")
    scene = build_keyword_task(root, words=("yes", "no"), clips_per_word_per_split=3)
    event = build_event_task(root, n_clips_per_split=3, clip_seconds=3.0)
    return root, scene, event


def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_writer_matches_heareval_embedding_runner(tasks, tmp_path):
    root, scene, event = tasks
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": ""}
    ref_root = tmp_path / "ref"
    subprocess.run([sys.executable, "-m", "heareval.embeddings.runner", "hear_toy_module",
                    "--tasks-dir", str(root), "--embeddings-dir", str(ref_root)],
                   check=True, env=env, capture_output=True, cwd=tmp_path)
    model = load_hear_model(TOY, device="cpu")
    for task in (scene, event):
        ref = ref_root / "hear_toy_module" / task.name
        ours = ensure_embeddings(TOY, task, tmp_path / "ours", lambda: model, progress=False)
        assert _files(ours) == _files(ref) | {"cache_key.json"}
        meta = json.loads((ref / "task_metadata.json").read_text())
        for name in sorted(_files(ref)):
            a, b = ref / name, ours / name
            if name.endswith(".embedding.npy"):
                np.testing.assert_allclose(np.load(b), np.load(a), rtol=1e-5, atol=1e-5)
            elif name.endswith(".embeddings.npy"):  # raw memmaps, same row order
                dims = json.loads((ref / name.replace("embeddings.npy", "embedding-dimensions.json")).read_text())
                ra = np.memmap(a, dtype=np.float32, mode="r", shape=tuple(dims))
                rb = np.memmap(b, dtype=np.float32, mode="r", shape=tuple(dims))
                np.testing.assert_allclose(rb, ra, rtol=1e-5, atol=1e-5)
                assert a.stat().st_size == b.stat().st_size
            elif name.endswith(".pkl"):
                la, lb = pickle.loads(a.read_bytes()), pickle.loads(b.read_bytes())
                assert [sorted(x) for x in lb] == [sorted(x) for x in la]
            elif name.endswith("filename-timestamps.json"):  # paths name each cache
                fa, fb = json.loads(a.read_text()), json.loads(b.read_text())
                assert [(Path(s).name, t) for s, t in fb] == [(Path(s).name, t) for s, t in fa]
                assert all(Path(s).parent == ours / name.split(".")[0] for s, _ in fb)
            elif name.endswith("target-labels.json") and meta["embedding_type"] == "event":
                ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
                assert [sorted(x) for x in jb] == [sorted(x) for x in ja]
            elif name == "profile.embeddings.json":
                assert "time_elapsed" in json.loads(b.read_text())
            elif name.endswith(".json") or name.endswith(".csv") or name == DONE_FILE:
                assert b.read_bytes() == a.read_bytes(), name
            else:
                raise AssertionError(f"unexpected file {name}")
        if meta["embedding_type"] == "event":  # the event task really has active frames
            assert any(read_split(ours, "train").labels)


def test_event_labels_match_interval_tree():
    from intervaltree import IntervalTree

    rng = np.random.default_rng(0)
    events = []
    for _ in range(12):
        start = float(rng.uniform(0, 3000))
        events.append({"label": str(rng.choice(["a", "b", "c"])), "start": start,
                       "end": start + float(rng.uniform(1, 800))})
    events.append(dict(events[0]))  # an exact duplicate counts once
    ts = np.float32(np.arange(0, 4000, 20.0))
    ts = np.concatenate([ts, np.float32([events[1]["end"], events[2]["start"]])])
    tree = IntervalTree()
    for e in events:
        tree.addi(e["start"], e["end"] + 0.0001, e["label"])
    expected = [sorted(i.data for i in tree[t]) for t in ts]
    assert [sorted(x) for x in labels_at_timestamps(events, ts)] == expected
    assert any(len(x) > 1 for x in expected)  # overlaps were exercised


@pytest.mark.slow  # make test-fast: over 10 s
def test_fold_rotation_matches_heareval():
    from heareval.predictions.task_predictions import get_splits_from_metadata

    for meta in ({"split_mode": "trainvaltest", "splits": ["train", "valid", "test"]},
                 {"split_mode": "presplit_kfold", "splits": [f"fold{i:02d}" for i in range(5)]},
                 {"split_mode": "new_split_kfold", "splits": ["fold02", "fold00", "fold01"]}):
        ours = data_splits(meta)
        theirs = get_splits_from_metadata(meta)
        assert [{k: sorted(v) for k, v in s.items()} for s in ours] == \
               [{k: sorted(v) for k, v in s.items()} for s in theirs]


def test_cache_key_follows_checkpoint_content_options_and_task(tasks, tmp_path):
    _, scene, event = tasks
    ck = tmp_path / "a.pt"
    ck.write_bytes(b"weights-1")
    spec = ModelSpec(name="m", module="hear_toy_module", checkpoint=ck)
    k1 = cache_key(spec, scene)["digest"]
    assert cache_key(spec, scene)["digest"] == k1
    ck.write_bytes(b"weights-2")
    assert cache_key(spec, scene)["digest"] != k1
    k2 = cache_key(spec, scene)["digest"]
    assert cache_key(ModelSpec("m", "hear_toy_module", ck, {"n_mels": 16}), scene)["digest"] != k2
    assert cache_key(spec, event)["digest"] != k2
    assert cache_key(ModelSpec("m", "other_module", ck), scene)["digest"] != k2


def test_cache_key_follows_the_task_audio_and_labels(tasks, tmp_path):
    """Same names and sizes, other content: a rewritten clip or relabelled split must not
    be served the old embeddings."""
    _, scene, _ = tasks
    task = tmp_path / scene.name
    shutil.copytree(scene, task)
    spec = ModelSpec(name="m", module="hear_toy_module")
    k0 = cache_key(spec, task)["digest"]
    assert cache_key(spec, task)["digest"] == k0  # stable when nothing changes
    wav = sorted(task.glob("*/*/*.wav"))[0]
    data = bytearray(wav.read_bytes())
    data[-2:] = bytes([data[-2] ^ 0xFF, data[-1] ^ 0xFF])  # same size, other samples
    stat = wav.stat()
    wav.write_bytes(bytes(data))
    os.utime(wav, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    k1 = cache_key(spec, task)["digest"]
    assert k1 != k0
    labels = json.loads((task / "train.json").read_text())
    first = sorted(labels)[0]
    second = next(n for n in sorted(labels) if labels[n] != labels[first])
    labels[first], labels[second] = labels[second], labels[first]  # same bytes, other labels
    (task / "train.json").write_text(json.dumps(labels))
    assert cache_key(spec, task)["digest"] != k1


def test_cache_is_reused_and_options_reach_load_model(tasks, tmp_path):
    _, scene, _ = tasks
    calls = []

    def get():
        calls.append(1)
        return load_hear_model(ModelSpec("t", "hear_toy_module", options={"n_mels": 8}), "cpu")

    spec = ModelSpec("t", "hear_toy_module", options={"n_mels": 8})
    d1 = ensure_embeddings(spec, scene, tmp_path, get, progress=False)
    d2 = ensure_embeddings(spec, scene, tmp_path, get, progress=False)
    assert d1 == d2 and len(calls) == 1
    assert read_split(d1, "train").x.shape[1] == 16  # 2 * n_mels
    assert not list(tmp_path.rglob("*.partial"))


def test_clip_name_leaving_the_task_is_refused(tasks, tmp_path):
    _, scene, _ = tasks
    evil = tmp_path / "evil-v1-full"
    shutil.copytree(scene, evil)
    secret = tmp_path / "secret.wav"
    shutil.copy(next((evil / "16000" / "train").iterdir()), secret)
    data = json.loads((evil / "train.json").read_text())
    data["../../../secret.wav"] = ["yes"]
    (evil / "train.json").write_text(json.dumps(data))
    model = load_hear_model(TOY, "cpu")
    with pytest.raises(ValueError, match="secret.wav"):
        write_embeddings(model, evil, tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").rglob("*secret*"))
