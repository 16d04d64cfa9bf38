"""`benchmarks/gpu.py` in its CPU dry mode (tiny sizes; the figures it prints measure nothing,
the test checks that the script runs end to end and writes what it says), its message for a
missing package, and its data source over a folder of audio (what `--store` accepts besides a
prepared store)."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu.py"


def _load_gpu_module():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # a subprocess end to end (make test-fast skips it)
def test_cpu_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--steps", "3", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "CPU DRY RUN" in proc.stdout
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["imported_tensorflow_or_heareval"] is False
    pre = report["pretraining"]
    assert pre["data"].startswith("random audio in host memory")
    assert [(r["variant"], r["precision"]) for r in pre["runs"]] == [
        ("SLICER", "fp32"), ("MoCo", "fp32"), ("SLICER", "bf16"), ("MoCo", "bf16")]
    for r in pre["runs"]:
        assert r["loss_finite"] and r["clips_per_s"] > 0 and r["gpu_busy_percent"] is None
    emb = report["embedding"]
    for key in ("scene_x_real_time", "timestamp_x_real_time", "long_scene_x_real_time", "long_timestamp_x_real_time"):
        assert math.isfinite(emb[key]) and emb[key] > 0
    tests = report["cuda_tests"]  # pytest -m cuda ran; without a GPU every selected test is skipped
    assert tests["ran"] and tests["returncode"] == 0 and "skipped" in tests["summary"]
    assert "tests/test_pretrain_precision.py" in tests["files"]
    # a second run never overwrites the first one's result
    again = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "is another run's result" in again.stderr


def test_a_missing_package_is_named_with_the_install_command(capsys, monkeypatch):
    gpu = _load_gpu_module()
    monkeypatch.setattr(gpu, "CORE", {**gpu.CORE, "no_such_module_xyz": "no-such-wheel"})
    assert gpu.main(["--device", "cpu"]) == 3
    err = capsys.readouterr().err
    assert "missing Python package(s) no-such-wheel" in err and "requirements/gpu.txt" in err


def test_store_option_reads_a_folder_of_audio_through_the_loader(tmp_path):
    gpu = _load_gpu_module()
    from pretrain.config import load_config

    for i in range(3):
        sf.write(tmp_path / f"{i}.wav", (0.1 * np.sin(np.arange(20000) * (0.01 + 0.01 * i))).astype(np.float32), 16000)
    cfg = load_config(REPO / "pretrain/configs/slicer.yaml")
    source = gpu.Source(Namespace(store=str(tmp_path), batch=2, workers=0), cfg, 15200, torch.device("cpu"))
    assert "audio files under" in source.kind and "3 files" in source.kind
    wave = source.next()
    assert wave.shape == (2, 1, 15200) and wave.abs().max() > 0
