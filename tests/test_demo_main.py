"""A fast variant of the README's main job (`python -m eval_suites.demo`), end to end."""
import os
import subprocess
import sys

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def test_main_job_tiny(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "eval_suites.demo", "--preset", "tiny", "--root", str(tmp_path / "data"),
           "--out", str(tmp_path / "out"), "--tasks", "keywords", "events", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "slicer pretrained for 6000 steps on " in out and "corpus_store (6626 files)" in out  # the default, described
    assert "Looks good!" in out  # the real hear-validator ran
    assert "4 cell(s) ok, 0 failed" in out
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(df.protocol) == {"linear", "heareval"} and set(df.task) == {"keywords", "events"}
    assert (tmp_path / "out" / "results.png").stat().st_size > 5000
    # a second run reuses the demo data and the finished cells
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "4 cell(s) ok, 0 failed" in again.stdout
