"""Progress in a log: whole lines, one per finished unit of work, at most one heartbeat a
minute for long loops, with counts and an ETA; a bar only on a terminal (`hear_slicer.progress`).

The helper is driven with a fake clock and a stream that is not a terminal; then the
evaluation CLI (`--no-progress` still prints every cell) and the trainer are run with stderr
captured (not a terminal) and must write no carriage return.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from hear_slicer.progress import Progress, duration


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def log_progress(total, clock, **kw) -> tuple[Progress, io.StringIO]:
    stream = io.StringIO()
    return Progress(total, "work", unit="step", stream=stream, clock=clock, **kw), stream


def test_a_long_loop_prints_one_heartbeat_a_minute_with_count_and_eta():
    clock = FakeClock()
    progress, stream = log_progress(1200, clock)
    for _ in range(1200):  # 0.25 s a step: 300 s in all
        clock.now += 0.25
        progress.update(1)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5  # at 60, 120, 180, 240 and 300 s
    assert lines[0] == "work: 240/1200 steps (20 %), 4 steps/s, ETA 4 min 00 s"
    assert lines[-1] == "work: 1200/1200 steps (100 %), 4 steps/s, ETA 0 s"
    assert "\r" not in stream.getvalue()


def test_a_short_loop_prints_nothing_and_disabled_progress_no_heartbeat():
    clock = FakeClock()
    short, stream = log_progress(50, clock)
    for _ in range(50):
        clock.now += 1.0  # 50 s: under a minute
        short.update(1)
    assert stream.getvalue() == ""
    off, stream = log_progress(10, clock, enabled=False)
    for _ in range(10):
        clock.now += 100.0
        off.update(1)
    assert stream.getvalue() == ""


def test_every_finished_unit_is_a_line_even_without_progress():
    clock = FakeClock()
    progress, stream = log_progress(4, clock, enabled=False)
    for i in range(4):
        clock.now += 30.0
        progress.done(f"cell {i}: ok")
    lines = stream.getvalue().splitlines()
    assert lines == ["[work 1/4] cell 0: ok (30 s, ETA 1 min 30 s)", "[work 2/4] cell 1: ok (1 min 00 s, ETA 1 min 00 s)",
                     "[work 3/4] cell 2: ok (1 min 30 s, ETA 30 s)", "[work 4/4] cell 3: ok (2 min 00 s)"]


def test_a_finished_unit_resets_the_heartbeat_clock():
    clock = FakeClock()
    progress, stream = log_progress(100, clock)
    clock.now += 59.0
    progress.done("first")
    clock.now += 59.0
    progress.update(1)  # 118 s since the start, but 59 s since the last line
    assert len(stream.getvalue().splitlines()) == 1


def test_a_resumed_count_gives_the_eta_of_this_process():
    clock = FakeClock()
    progress, stream = log_progress(200, clock, initial=100)
    for _ in range(60):
        clock.now += 1.0
        progress.update(1)
    assert stream.getvalue().splitlines() == ["work: 160/200 steps (80 %), 1 steps/s, ETA 40 s"]


def test_close_with_text_says_how_long_it_took():
    clock = FakeClock()
    progress, stream = log_progress(3, clock, enabled=False)
    clock.now += 3725
    progress.close("3 clips embedded")
    assert stream.getvalue() == "work: 3 clips embedded in 1 h 02 min\n"


def test_on_a_terminal_a_bar_as_before_and_the_unit_lines_above_it():
    stream = Terminal()
    progress = Progress(3, "cells", unit="cell", stream=stream)
    for i in range(3):
        progress.done(f"cell {i}: ok")
    progress.close()
    text = stream.getvalue()
    assert "\r" in text and "3/3" in text  # tqdm's bar, redrawn in place
    assert all(f"cell {i}: ok" in text for i in range(3))


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (59.4, "59 s"), (60, "1 min 00 s"), (3599, "59 min 59 s"),
                                           (3600, "1 h 00 min"), (90061, "25 h 01 min")])
def test_durations(seconds, text):
    assert duration(seconds) == text


# ----------------------------------------------------------------------------- in the tools
@pytest.fixture(scope="module")
def tasks_root(tmp_path_factory):
    from eval_suites.synthetic.demo_tasks import build_instrument_task

    root = tmp_path_factory.mktemp("tasks")
    build_instrument_task(root, families=("piano", "brass"), clips_per_class_per_split=3, workers=1)
    return root


@pytest.mark.parametrize("flags", [["--no-progress"], []])
def test_eval_run_prints_one_line_per_cell_and_no_carriage_return(tasks_root, tmp_path, capfd, flags):
    from eval_suites.__main__ import main

    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"tasks_root: {tasks_root}\nmodels:\n  - {{name: toy, module: hear_toy_module}}\n"
                        "tasks:\n  - {name: instruments, path: demo-instruments-v1-full}\n"
                        "protocols:\n  linear: {epochs: 3}\n  knn: {ks: [1, 3]}\n")
    assert main(["run", str(manifest), "--out", str(tmp_path / "out"), "--device", "cpu", *flags]) == 0
    err = capfd.readouterr().err
    assert "\r" not in err
    cells = [line for line in err.splitlines() if line.startswith("[cells ")]
    assert [c.split("]")[0] for c in cells] == ["[cells 1/2", "[cells 2/2"]
    assert "toy / instruments / linear: ok, top1_acc" in cells[0] and "toy / instruments / knn: ok" in cells[1]
    assert any(line.startswith("embed demo-instruments-v1-full: 18 clips embedded with toy in ")
               for line in err.splitlines())  # the task's embeddings: one line


def test_training_in_a_log_writes_lines_only(tmp_path, capfd):
    import numpy as np
    import soundfile as sf

    from pretrain.config import load_config
    from pretrain.train import train

    torch.set_num_threads(1)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        sf.write(corpus / f"c{i}.wav", (0.1 * rng.standard_normal(24000)).astype(np.float32), 16000)
    repo = Path(__file__).resolve().parents[1]
    train(load_config(repo / "pretrain/configs/slicer.yaml", [
        "encoder.d=64", "encoder.channels=8", "data.batch_size=4", "data.num_workers=0",
        "objective.params.queue_size=40", "objective.params.n_clusters=8", "objective.params.instance_dim=16",
        "augment.mixup.memory=16", "augment.kmix.memory=16", "augment.kmix.r=4", "stats.min_files=8",
        "run.steps=4", "run.checkpoint_every=2", "run.progress=true", "run.tensorboard=false", "run.device=cpu",
        f"data.path={corpus}", f"run.out={tmp_path / 'run'}"]))
    captured = capfd.readouterr()
    assert "\r" not in captured.err + captured.out
    checkpoints = [line for line in captured.out.splitlines() if line.startswith("checkpoint: ")]
    assert len(checkpoints) == 2 and "; 2/4 steps (50 %)" in checkpoints[0] and "ETA" in checkpoints[0]
