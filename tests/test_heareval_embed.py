"""`python -m eval_suites embed` against heareval's own embedding runner: the same files, byte
for byte, on a scene task and on an event task with overlapping events; it still runs where
torch reports a GPU (patched in a subprocess) while heareval's runner refuses to start there;
and its refusals (an unfinished folder, bad options, a GPU that is not there)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eval_suites.__main__ import main
from eval_suites.synthetic.demo_tasks import build_event_task, build_keyword_task
from eval_suites.core.embeddings import labels_at_timestamps
from eval_suites.core.heareval_embed import DONE_FILE, event_labels, options_suffix

REPO = Path(__file__).resolve().parents[1]
OPTIONS = '{"timestamp_hop_ms": 50}'  # exercises heareval's options suffix in the folder name
PATCH_CUDA = "import torch; torch.cuda.is_available = lambda: True; "
# heareval imports its NVML helper (heareval.gpu_max_mem) before its GPU check; with no NVML
# library on this machine, a stand-in pynvml lets the import reach the check (runner.py line 21).
FAKE_NVML = ("import sys, types; nv = types.ModuleType('pynvml'); nv.NVMLError = RuntimeError; "
             "[setattr(nv, n, lambda *a: None) for n in ('nvmlInit', 'nvmlDeviceGetHandleByIndex', "
             "'nvmlDeviceGetMemoryInfo', 'nvmlDeviceGetName')]; sys.modules['pynvml'] = nv; ")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    """Two tiny tasks; the event task gets overlapping events so frames hold several labels."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tasks")
    build_keyword_task(root, words=("yes", "no"), clips_per_word_per_split=2)
    event = build_event_task(root, n_clips_per_split=2, clip_seconds=3.0)
    vocab = [line.split(",", 1)[1] for line in (event / "labelvocabulary.csv").read_text().splitlines()[1:]]
    for split in json.loads((event / "task_metadata.json").read_text())["splits"]:
        labels = json.loads((event / f"{split}.json").read_text())
        for i, events in enumerate(labels.values()):
            events += [{"label": vocab[(i + 1) % len(vocab)], "start": 100.0, "end": 2500.0},
                       {"label": vocab[(i + 2) % len(vocab)], "start": 300.0, "end": 2000.0}]
        (event / f"{split}.json").write_text(json.dumps(labels))
    (root / "notes.txt").write_text("not a task")  # heareval's runner would choke on this; we skip it
    return root


@pytest.fixture(scope="module")
def synthetic_tasks(tmp_path_factory) -> Path:
    """A scene task and an event task of tones and noise bursts written with TaskWriter
    (numpy only: no espeak-ng or fluidsynth), so the `cuda` test also runs on a bare GPU machine."""
    from eval_suites.hear_format.task import TaskMetadata, TaskWriter

    root = tmp_path_factory.mktemp("synthetic_tasks")
    splits = ["train", "valid", "test"]
    common = dict(version="v1", split_mode="trainvaltest", splits=splits)
    scene = TaskWriter(root / "tones-v1-full", TaskMetadata(
        task_name="tones", embedding_type="scene", prediction_type="multiclass", sample_duration=1.0,
        evaluation=["top1_acc"], **common))
    event = TaskWriter(root / "bursts-v1-full", TaskMetadata(
        task_name="bursts", embedding_type="event", prediction_type="multilabel", sample_duration=3.0,
        evaluation=["event_onset_200ms_fms"], **common))
    rng = np.random.default_rng(0)
    t1, t3 = np.arange(16000) / 16000, np.arange(48000) / 16000
    for split in splits:
        for i in range(4):
            f0 = 220.0 if i % 2 else 880.0
            scene.add_clip(split, f"{split}{i}.wav", 0.3 * np.sin(2 * np.pi * f0 * t1), 16000, ["low" if i % 2 else "high"])
            y = 0.2 * np.sin(2 * np.pi * f0 * t3) * ((t3 > 0.5) & (t3 < 1.5))
            y = y + 0.2 * rng.normal(size=t3.size) * ((t3 > 1.0) & (t3 < 2.5))
            event.add_clip(split, f"{split}{i}.wav", y, 16000, [{"label": "tone", "start": 500.0, "end": 1500.0},
                                                         {"label": "noise", "start": 1000.0, "end": 2500.0}])
    scene.finalize()
    event.finalize()
    return root


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}


def _ours(cwd: Path, tasks: Path, *extra: str, patch_cuda: bool = False) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    argv = ["embed", "hear_slicer", "--tasks-dir", str(tasks), "--model-options", OPTIONS, "--no-progress", *extra]
    code = (PATCH_CUDA if patch_cuda else "") + (
        "import sys; from eval_suites.__main__ import main; rc = main(sys.argv[1:]); "
        "assert 'tensorflow' not in sys.modules, 'embed imported tensorflow'; sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=_env(), capture_output=True, text=True)


def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}


def _assert_same_tree(ours: Path, ref: Path) -> None:
    assert _files(ours) == _files(ref)
    for name in sorted(_files(ref)):
        if name.endswith("profile.embeddings.json"):  # wall time differs; the fields do not
            a, b = json.loads((ref / name).read_text()), json.loads((ours / name).read_text())
            assert a.keys() == b.keys() and a["gpu_device_name"] == b["gpu_device_name"] == "cpu"
        else:
            assert (ours / name).read_bytes() == (ref / name).read_bytes(), name


@pytest.mark.slow
def test_same_bytes_as_heareval_runner_and_it_runs_where_heareval_refuses(tasks, tmp_path):
    # heareval's runner, on CPU, into <tmp>/ref/embeddings
    (tmp_path / "ref").mkdir()
    ref = subprocess.run([sys.executable, "-m", "heareval.embeddings.runner", "hear_slicer",
                          "--tasks-dir", str(tasks), "--model-options", OPTIONS, "--task", "demo-keywords-v1-full"],
                         cwd=tmp_path / "ref", env=_env(), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr[-3000:]
    ref = subprocess.run([sys.executable, "-m", "heareval.embeddings.runner", "hear_slicer",
                          "--tasks-dir", str(tasks), "--model-options", OPTIONS, "--task", "demo-events-v1-full"],
                         cwd=tmp_path / "ref", env=_env(), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr[-3000:]
    # ours, into <tmp>/ours/embeddings (same relative --embeddings-dir, so the same clip paths)
    run = _ours(tmp_path / "ours", tasks)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "notes.txt" not in run.stdout  # a file beside the task folders is ignored
    module_dir = "embeddings/hear_slicer-timestamp-hop-ms=50"  # heareval slugifies the options
    assert sorted(p.name for p in (tmp_path / "ref" / module_dir).iterdir()) == \
           sorted(p.name for p in (tmp_path / "ours" / module_dir).iterdir()) == \
           ["demo-events-v1-full", "demo-keywords-v1-full"]
    for task in ("demo-keywords-v1-full", "demo-events-v1-full"):
        _assert_same_tree(tmp_path / "ours" / module_dir / task, tmp_path / "ref" / module_dir / task)
    train = json.loads((tmp_path / "ours" / module_dir / "demo-events-v1-full" / "train" /
                        f"{next(iter(json.loads((tasks / 'demo-events-v1-full' / 'train.json').read_text())))}"
                        ".target-labels.json").read_text())
    assert max(len(x) for x in train) >= 3  # overlapping events were really exercised

    # torch reports a GPU, TensorFlow (tensorflow-cpu) does not: heareval's runner refuses ...
    refused = subprocess.run([sys.executable, "-c", PATCH_CUDA + FAKE_NVML + "import runpy; runpy.run_module("
                              "'heareval.embeddings.runner', run_name='__main__')", "hear_slicer", "--help"],
                             cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert refused.returncode != 0 and "GPUs not available in tensorflow, but found by pytorch" in refused.stderr
    # ... ours writes the same files (on the CPU, as asked), without importing TensorFlow
    patched = _ours(tmp_path / "patched", tasks, "--device", "cpu", patch_cuda=True)
    assert patched.returncode == 0, patched.stderr[-3000:]
    for task in ("demo-keywords-v1-full", "demo-events-v1-full"):
        _assert_same_tree(tmp_path / "patched" / module_dir / task, tmp_path / "ref" / module_dir / task)


def test_event_labels_are_the_same_sets_as_the_cache_writer():
    rng = np.random.default_rng(1)
    events = [{"label": str(rng.choice(list("abcd"))), "start": float(s), "end": float(s + rng.uniform(50, 900))}
              for s in rng.uniform(0, 3000, 15)]
    ts = np.arange(0, 4000, 25.0, dtype=np.float32)
    ours = event_labels(events, ts)
    assert [sorted(x) for x in ours] == [sorted(x) for x in labels_at_timestamps(events, ts)]
    assert any(len(x) > 1 for x in ours)


def test_options_suffix_is_heareval_s():
    assert options_suffix({}) == ""
    assert options_suffix({"timestamp_hop_ms": 25, "Chunk Seconds": 1.5}) == "-timestamp-hop-ms=25-chunk-seconds=1-5"


def test_done_tasks_are_skipped_and_unfinished_folders_refused(synthetic_tasks, tmp_path, capsys):
    out = tmp_path / "emb"
    argv = ["embed", "hear_toy_module", "--tasks-dir", str(synthetic_tasks), "--task", "bursts-v1-full",
            "--embeddings-dir", str(out), "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    task_dir = out / "hear_toy_module" / "bursts-v1-full"
    assert (task_dir / DONE_FILE).is_file() and not list(out.rglob("*.partial"))
    stamp = (task_dir / "train.embeddings.npy").stat().st_mtime_ns
    assert main(argv) == 0 and "done already, skipped" in capsys.readouterr().out
    assert (task_dir / "train.embeddings.npy").stat().st_mtime_ns == stamp
    (task_dir / DONE_FILE).unlink()  # an interrupted heareval run, say: not ours to delete
    assert main(argv) == 2
    assert "exists but is unfinished" in capsys.readouterr().err and (task_dir / "train.embeddings.npy").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--model-options", "[1, 2]"], "--model-options must be a JSON dict"),
    (["--model-options", "{oops"], "is not JSON"),
    (["--model", "missing.pt"], "--model missing.pt: no such file"),
    (["--device", "tpu"], "--device 'tpu'"),
    (["--task", "nope"], "--task nope"),
])
def test_bad_arguments_are_refused_with_a_message(extra, message, tasks, tmp_path, capsys):
    argv = ["embed", "hear_slicer", "--tasks-dir", str(tasks), "--embeddings-dir", str(tmp_path / "e"), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_a_gpu_is_refused(tasks, tmp_path, capsys):
    assert main(["embed", "hear_slicer", "--tasks-dir", str(tasks), "--device", "cuda",
                 "--embeddings-dir", str(tmp_path / "e")]) == 2
    assert "torch sees no CUDA GPU here; use --device cpu" in capsys.readouterr().err


@pytest.mark.cuda
def test_cuda_embeddings_match_cpu_ones(synthetic_tasks, tmp_path):
    for device in ("cpu", "cuda"):
        assert main(["embed", "hear_slicer", "--tasks-dir", str(synthetic_tasks), "--embeddings-dir",
                     str(tmp_path / device), "--device", device, "--no-progress"]) == 0
    for task in ("tones-v1-full", "bursts-v1-full"):
        a, b = tmp_path / "cpu" / "hear_slicer" / task, tmp_path / "cuda" / "hear_slicer" / task
        assert _files(a) == _files(b)
        assert json.loads((b / "profile.embeddings.json").read_text())["gpu_max_mem"] > 0
        for split in json.loads((a / "task_metadata.json").read_text())["splits"]:
            shape = tuple(json.loads((a / f"{split}.embedding-dimensions.json").read_text()))
            x = np.memmap(a / f"{split}.embeddings.npy", dtype=np.float32, mode="r", shape=shape)
            y = np.memmap(b / f"{split}.embeddings.npy", dtype=np.float32, mode="r", shape=shape)
            np.testing.assert_allclose(y, x, rtol=1e-3, atol=1e-3)
            assert (a / f"{split}.target-labels.pkl").read_bytes() == (b / f"{split}.target-labels.pkl").read_bytes()
