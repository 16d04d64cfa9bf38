"""Evaluation on a cluster: the shard partition, the embedding cache's lock, and two
concurrent shard processes writing one results folder (identical to an unsharded run)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from eval_suites.core.embeddings import ensure_embeddings, load_hear_model, read_split
from eval_suites.core.manifest import load_manifest
from eval_suites.core.model_spec import ModelSpec
from eval_suites.core.runner import manifest_cells, run_manifest
from eval_suites.core.shards import Shard, parse_shard, shard_from_slurm

TESTS = Path(__file__).resolve().parent

# A HEAR module that appends one line to $EMBED_LOG for every batch it embeds, so a test can
# count how often a task was embedded across processes.
COUNTING_MODULE = '''
import os
import hear_toy_module as toy
from hear_toy_module import load_model, get_timestamp_embeddings


def get_scene_embeddings(audio, model):
    with open(os.environ["EMBED_LOG"], "a") as fh:
        fh.write(f"{os.getpid()} {audio.shape[0]}\\n")
    return toy.get_scene_embeddings(audio, model)
'''


# --------------------------------------------------------------------------- partition


@pytest.mark.parametrize("n_cells", [0, 1, 2, 3, 7, 24, 25])
@pytest.mark.parametrize("n_shards", [1, 2, 3, 8])
def test_shards_are_disjoint_cover_every_cell_and_are_balanced(n_cells, n_shards):
    cells = [(f"m{i % 3}", f"t{i // 3:02d}", "knn" if i % 2 else "linear") for i in range(n_cells)]
    shares = [Shard(k, n_shards).take(cells) for k in range(1, n_shards + 1)]
    flat = [c for share in shares for c in share]
    assert sorted(flat) == sorted(cells) and len(set(flat)) == len(flat)  # covering, disjoint
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced
    # deterministic: the same share from any order of the cells (every job lists them itself)
    rng = np.random.default_rng(n_cells)
    shuffled = [cells[i] for i in rng.permutation(n_cells)]
    assert [Shard(k, n_shards).take(shuffled) for k in range(1, n_shards + 1)] == shares


def test_a_shard_is_a_contiguous_block_of_the_sorted_cells():
    cells = [("b", "t", "knn"), ("a", "t", "linear"), ("a", "t", "knn")]
    assert Shard(1, 2).take(cells) == [("a", "t", "knn")]
    assert Shard(2, 2).take(cells) == [("a", "t", "linear"), ("b", "t", "knn")]


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "2", "a/b", "-1/2", "1/2/3"])
def test_a_bad_shard_is_a_clear_error(text):
    with pytest.raises(ValueError, match="K/N"):
        parse_shard(text)


def test_shard_from_slurm_array_variables():
    assert shard_from_slurm({}) is None
    assert parse_shard(" 2 / 8 ") == Shard(2, 8)
    env = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0"}
    assert shard_from_slurm(env) == Shard(1, 8, source=shard_from_slurm(env).source)
    assert "SLURM_ARRAY_TASK_ID=0" in shard_from_slurm(env).source
    ids = {"SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "1"}  # --array=1-8
    assert [shard_from_slurm({**ids, "SLURM_ARRAY_TASK_ID": str(i)}).index for i in range(1, 9)] == list(range(1, 9))
    stepped = {"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"}
    assert shard_from_slurm({**stepped, "SLURM_ARRAY_TASK_ID": "6"}).index == 4  # --array=0-6:2
    for bad in ({**ids, "SLURM_ARRAY_TASK_ID": "9"},  # beyond the array
                {**stepped, "SLURM_ARRAY_TASK_ID": "3"},  # not on the step
                {"SLURM_ARRAY_TASK_ID": "0"},  # no count
                {**ids, "SLURM_ARRAY_TASK_ID": "x"}):
        with pytest.raises(ValueError, match="--shard K/N"):
            shard_from_slurm(bad)


# --------------------------------------------------------------------------- tasks


@pytest.fixture(scope="module")
def tasks_root(tmp_path_factory) -> Path:
    """Two 2-class scene tasks of tones in noise written with TaskWriter (numpy only)."""
    from eval_suites.hear_format.task import TaskMetadata, TaskWriter

    root = tmp_path_factory.mktemp("shard_tasks")
    splits = ["train", "valid", "test"]
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    for name, (f_low, f_high) in {"alto": (330.0, 660.0), "bass": (110.0, 220.0)}.items():
        writer = TaskWriter(root / f"{name}-v1-full", TaskMetadata(
            task_name=name, version="v1", split_mode="trainvaltest", splits=splits, embedding_type="scene",
            prediction_type="multiclass", sample_duration=0.5, evaluation=["top1_acc"]))
        for split in splits:
            for i in range(6):
                f0 = f_low if i % 2 else f_high
                y = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.02 * rng.normal()) * t) + 0.05 * rng.normal(size=t.size)
                writer.add_clip(split, f"{split}{i}.wav", y, 16000, ["low" if i % 2 else "high"])
        writer.finalize()
    return root


@pytest.fixture
def counting_module(tmp_path, monkeypatch) -> Path:
    """A folder holding ``counting_toy`` (see COUNTING_MODULE), on sys.path; returns the log file."""
    mod_dir = tmp_path / "modules"
    mod_dir.mkdir()
    (mod_dir / "counting_toy.py").write_text(COUNTING_MODULE)
    log = tmp_path / "embed.log"
    log.write_text("")
    monkeypatch.syspath_prepend(str(mod_dir))
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("EMBED_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(mod_dir), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return log


# --------------------------------------------------------------------------- embedding cache lock


@pytest.mark.slow  # make test-fast: over 1.5 s
def test_concurrent_callers_compute_an_embedding_entry_once(tasks_root, tmp_path, counting_module):
    """Two threads ask for the same missing entry; the first holds the lock while it loads
    the model (slowly), the second must wait and read the first's entry, never compute it
    (without the lock it removed the first's .partial folder and computed its own)."""
    spec = ModelSpec(name="count", module="counting_toy")
    task = tasks_root / "alto-v1-full"
    model = load_hear_model(spec, "cpu")
    first_inside, calls, found = threading.Event(), [], {}

    def slow_model():
        calls.append("first")
        first_inside.set()
        time.sleep(1.5)  # the second caller reaches the lock meanwhile
        return model

    def second_model():
        calls.append("second")
        return model

    def ask(name, get_model):
        found[name] = ensure_embeddings(spec, task, tmp_path / "cache", get_model, progress=False)

    a = threading.Thread(target=ask, args=("a", slow_model))
    a.start()
    assert first_inside.wait(30)
    b = threading.Thread(target=ask, args=("b", second_model))
    b.start()
    a.join(60)
    b.join(60)
    assert calls == ["first"]
    assert found["a"] == found["b"] and read_split(found["a"], "test").x.shape == (6, model.model.scene_embedding_size)
    entries = sorted(p.name for p in found["a"].parent.iterdir())
    assert entries == ["alto-v1-full", "alto-v1-full.lock"]  # no .partial left, one entry


# --------------------------------------------------------------------------- concurrent shards


def _manifest(tasks_root: Path, path: Path) -> Path:
    path.write_text(
        f"suite: tones\ntasks_root: {tasks_root}\n"
        "models:\n  - {name: count, module: counting_toy}\n"
        "tasks:\n  - {name: alto, path: alto-v1-full, protocols: [knn, linear]}\n"
        "  - {name: bass, path: bass-v1-full, protocols: [knn]}\n"
        "protocols:\n  linear: {epochs: 5, batch_size: 8}\n  knn: {ks: [1, 3]}\n")
    return path


def _comparable(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").drop(columns="seconds")


@pytest.mark.slow  # a subprocess end to end (make test-fast skips it)
def test_two_concurrent_shards_give_the_results_of_one_run(tasks_root, tmp_path, counting_module):
    """Shard 1/2 (from --shard) and shard 2/2 (from SLURM's array variables) run at the same
    time into one folder. The cells sorted by name are (count, alto, knn) | (count, alto,
    linear), (count, bass, knn): both shards need alto's embeddings, computed once. After
    `report`, the table equals an unsharded run's (seconds aside), every cell's stored test
    outputs are the same, and each task was embedded exactly once."""
    manifest = _manifest(tasks_root, tmp_path / "m.yaml")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    for k in list(env):
        if k.startswith("SLURM_"):
            del env[k]
    sharded = tmp_path / "sharded"
    cmd = [sys.executable, "-m", "eval_suites", "run", str(manifest), "--out", str(sharded), "--no-progress"]
    slurm = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "0"}
    t0 = time.time()
    procs = [subprocess.Popen(cmd + ["--shard", "1/2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True),
             subprocess.Popen(cmd, env={**env, **slurm}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    assert "shard 1/2 (--shard): 1 of 3 cells" in outputs[0][0]
    assert "shard 2/2 (SLURM_ARRAY_TASK_ID=1, SLURM_ARRAY_TASK_COUNT=2, SLURM_ARRAY_TASK_MIN=0): 2 of 3 cells" \
        in outputs[1][0]
    sharded_seconds = time.time() - t0
    from eval_suites.__main__ import main
    assert main(["report", str(sharded)]) == 0
    batches = counting_module.read_text().splitlines()
    pids = {line.split()[0] for line in batches}
    assert sum(int(line.split()[1]) for line in batches) == 2 * 18  # 2 tasks x 18 clips, each embedded once
    assert len(pids) <= 2

    torch.set_num_threads(1)
    single = tmp_path / "single"
    run_manifest(load_manifest(manifest), single, progress=False, device="cpu")
    assert len(_comparable(single)) == 3 and (_comparable(single).status == "ok").all()
    pd.testing.assert_frame_equal(_comparable(sharded), _comparable(single))
    for cell in sorted((single / "cells").rglob("test_predictions.npz")):
        twin = sharded / cell.relative_to(single)
        a, b = np.load(cell), np.load(twin)
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{twin} {key}")
    assert not list(sharded.rglob("*.tmp")) and not list(sharded.rglob("*.partial"))
    assert json.loads((sharded / "run.json").read_text())["manifest"] == str(manifest)
    print(f"two concurrent shards: {sharded_seconds:.1f} s")


def test_manifest_cells_of_all_shards_are_the_manifest_cells(tasks_root, tmp_path, counting_module):
    manifest = load_manifest(_manifest(tasks_root, tmp_path / "m.yaml"))
    every = [(m.name, t.name, p) for m, t, p in manifest_cells(manifest)]
    assert every == [("count", "alto", "knn"), ("count", "alto", "linear"), ("count", "bass", "knn")]
    parts = [[(m.name, t.name, p) for m, t, p in manifest_cells(manifest, Shard(k, 2))] for k in (1, 2)]
    assert parts == [every[:1], every[1:]]
