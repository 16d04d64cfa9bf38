"""studies.choose_default: the default model is chosen on validation over every suite, never on test."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from hear_slicer.checkpoint import Checkpoint, save_checkpoint
from hear_slicer.encoder import AudioNTT2020, EncoderConfig
from hear_slicer.frontend import FrontendConfig

REPO = Path(__file__).resolve().parent.parent
SMALL = EncoderConfig(channels=8, d=32)


def _checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    student = AudioNTT2020(SMALL)
    return save_checkpoint(Checkpoint(frontend=FrontendConfig(), encoder=SMALL, norm_mean=-6.5, norm_std=3.25,
                                      student=student.state_dict(), teacher=None, use="student",
                                      train_config={"objective": {"name": "slicer"}},
                                      provenance={"objective": "slicer", "steps": 1}), path)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studies.choose_default", *args], capture_output=True, text=True,
                          timeout=900, cwd=REPO)


@pytest.mark.slow
def test_the_choice_is_the_best_mean_validation_over_suites_with_random_init_beside_it(tmp_path):
    a, b = _checkpoint(tmp_path / "a.pt", 1), _checkpoint(tmp_path / "b.pt", 2)
    out = tmp_path / "choice"
    suites = [f"one:tiny:{tmp_path / 'data'}", f"two:tiny:{tmp_path / 'data'}"]
    proc = _run(f"a={a}", f"b={b}", "--suite", *suites, "--tasks", "keywords", "--seeds", "0",
                "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    long = pd.read_csv(out / "choice.csv")
    assert set(long.suite) == {"one", "two"} and set(long.model) == {"a", "b", "random_init"}
    assert (long.status == "ok").all() and long.valid.between(0, 1).all()
    # the rule, recomputed here: mean over suites of each suite's mean validation score (test never enters)
    cand = long[long.model != "random_init"]
    by_suite = cand.groupby(["model", "suite"]).valid.mean().unstack("suite").mean(axis=1)
    chosen = by_suite.idxmax()
    assert proc.stdout.strip().splitlines()[-1] == f"chosen: {chosen}"
    md = (out / "choice.md").read_text()
    assert f"| {chosen} (chosen) |" in md and "random_init (reference" in md
    # the reference is the chosen checkpoint at random init, scored in each suite's own cells
    ref = long[long.model == "random_init"]
    assert set(ref.suite) == {"one", "two"}
    assert all(Path(c).is_relative_to(out) for c in long.cell)

    # a candidate added later: the others' cells are reused, not scored again
    c = _checkpoint(tmp_path / "c.pt", 3)
    again = _run(f"a={a}", f"b={b}", f"c={c}", "--suite", *suites, "--tasks", "keywords", "--seeds", "0",
                 "--out", str(out), "--no-progress")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert set(pd.read_csv(out / "choice.csv").model) == {"a", "b", "c", "random_init"}
    assert "2 up to date" in again.stdout + again.stderr


@pytest.mark.parametrize("args, named", [(["random_init=CKPT"], "random_init"), (["x=missing.pt"], "not found"),
                                         (["a=CKPT", "--suite", "demo:huge:d"], "NAME:PRESET:ROOT"),
                                         (["a=CKPT", "--suite", "d:tiny:x", "d:tiny:y"], "--suite names"),
                                         (["a=CKPT", "a=CKPT"], "must differ")])
def test_bad_arguments_are_usage_errors_naming_what_is_wrong(args, named, tmp_path, capsys, monkeypatch):
    """In-process (argparse's exit 2 and message), before anything is built or scored."""
    from studies import choose_default

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")  # main() sets it; restored after the test
    monkeypatch.chdir(tmp_path)  # the default suites' roots are relative: nothing may appear here
    ckpt = _checkpoint(tmp_path / "a.pt", 1)
    with pytest.raises(SystemExit) as e:
        choose_default.main([s.replace("CKPT", str(ckpt)) for s in args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and named in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]
