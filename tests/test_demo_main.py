"""The README's main job (`python -m eval_suites.demo`): a fast variant end to end (slow), and
its first line, the time it will take."""
import os
import subprocess
import sys

import pandas as pd
import pytest

from eval_suites import demo


def test_the_first_line_says_how_long_the_demo_takes(tmp_path, monkeypatch):
    """From the measured figures: the whole demo once the data is there, plus the build on a
    first run; a preset without a measurement says so instead of guessing."""
    monkeypatch.setattr(demo, "MEASURED", {"seconds": 240, "build_seconds": 120, "date": "2026-12-07"})
    first = demo.expected_duration(tmp_path, "small")
    assert first.startswith("hear-slicer demo: about 6 min on 2 CPU cores (measured 2026-12-07)")
    assert "2 min to synthesise the demo data" in first
    (tmp_path / "recipe.json").write_text("{}")
    assert demo.expected_duration(tmp_path, "small").startswith("hear-slicer demo: about 4 min on 2 CPU cores")
    assert demo.expected_duration(tmp_path, "tiny").startswith(
        "hear-slicer demo (tiny preset): no measured duration for this preset")


def test_the_shipped_measurement_is_whole_and_within_five_minutes(tmp_path, monkeypatch):
    """MEASURED holds all three figures or none (not measured on quiet cores yet: the first line
    says so, never a guess)."""
    filled = [v is not None for v in demo.MEASURED.values()]
    assert all(filled) or not any(filled), demo.MEASURED
    if all(filled):
        assert demo.MEASURED["seconds"] > 0 and demo.MEASURED["build_seconds"] > 0
    monkeypatch.setattr(demo, "MEASURED", {"seconds": None, "build_seconds": None, "date": None})
    assert demo.expected_duration(tmp_path, "small") == (
        "hear-slicer demo (small preset): no measured duration yet (eval_suites/demo.py, MEASURED)")


@pytest.mark.slow
def test_main_job_tiny(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "eval_suites.demo", "--preset", "tiny", "--root", str(tmp_path / "data"),
           "--out", str(tmp_path / "out"), "--tasks", "keywords", "events", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("hear-slicer demo (tiny preset)")  # the first line: its duration, or that none is measured
    assert "slicer pretrained for 6000 steps on " in out and "corpus_store (6626 files)" in out  # the default, described
    assert "Looks good!" in out  # the real hear-validator ran
    assert "4 cell(s) ok, 0 failed" in out
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(df.protocol) == {"linear", "heareval"} and set(df.task) == {"keywords", "events"}
    assert (tmp_path / "out" / "results.png").stat().st_size > 5000
    # a second run reuses the demo data and the finished cells
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "4 cell(s) ok, 0 failed" in again.stdout
