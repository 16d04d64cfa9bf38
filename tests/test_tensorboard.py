"""Live training curves: `run.tensorboard` writes log.csv's rows as TensorBoard scalars.

Read back with TensorBoard's own reader (`EventAccumulator`), the curves must be exactly
log.csv's columns and values; a run resumed from a mid checkpoint, after a kill that left
later points behind, continues the same curves with every step once.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from pretrain import runlog
from pretrain.config import RESUMABLE_KEYS, ConfigError, load_config
from pretrain.runlog import RunLog
from pretrain.train import train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from test_pretrain_train import TINY as PRETRAIN_TINY  # noqa: E402  (the same tiny model)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = [*PRETRAIN_TINY, "run.device=cpu"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Ten 1.5 s clips of tones in noise."""
    root = tmp_path_factory.mktemp("tb_corpus")
    rng = np.random.default_rng(0)
    t = np.arange(24000) / 16000
    for i in range(10):
        wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(root / f"clip{i}.wav", wave.astype(np.float32), 16000)
    return root


def config(corpus: Path, out: Path, *extra: str):
    return load_config(REPO / "pretrain/configs/slicer.yaml",
                       TINY + [f"data.path={corpus}", f"run.out={out}", *extra])


def curves(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard shows them."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_curves_are_log_csv(out: Path) -> None:
    table = pd.read_csv(out / "log.csv")
    got = curves(out / "tensorboard")
    assert set(got) == set(table.columns) - {"step"}
    for tag, points in got.items():
        assert [s for s, _ in points] == table.step.tolist(), tag  # every step once, in order
        assert np.allclose([v for _, v in points], table[tag].to_numpy(np.float32), rtol=1e-6), tag


def test_a_run_writes_every_logged_scalar_as_a_curve(corpus, tmp_path):
    out = tmp_path / "run"
    train(config(corpus, out, "run.steps=4", "run.checkpoint_every=2"))
    table = pd.read_csv(out / "log.csv")
    assert len(table) == 4
    # what a researcher watches: losses, positive similarity, clusters used, lr, EMA momentum, speed, loader wait
    for column in ("loss", "loss_instance", "loss_cluster", "pos_similarity", "clusters_used", "lr",
                   "ema_momentum", "clips_per_s", "loader_wait", "grad_norm"):
        assert column in table, column
    assert table.ema_momentum.eq(0.999).all() and table.loader_wait.between(0, 1).all()
    assert_curves_are_log_csv(out)


@pytest.mark.slow  # make test-fast: over 1.5 s
def test_a_resumed_run_continues_the_curves_without_duplicate_steps(corpus, tmp_path):
    out = tmp_path / "run"
    train(config(corpus, out, "run.steps=6", "run.checkpoint_every=3"))
    # a kill after step 6 was logged but before its checkpoint was written
    (out / "checkpoints" / "step_00000006.pt").unlink()
    killed_points = curves(out / "tensorboard")["loss"]
    assert [s for s, _ in killed_points] == [1, 2, 3, 4, 5, 6]  # the points the resume must not duplicate

    train(config(corpus, out, "run.steps=6", "run.checkpoint_every=3"),
          resume=out / "checkpoints" / "step_00000003.pt")
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1  # the curves rewritten as one file
    assert_curves_are_log_csv(out)  # steps 1..6 once each, 4..6 the resumed run's values


class Killed(Exception):
    """Stands for SIGKILL: raised right after a row is logged, nothing closed or cleaned up (every log line
    is on disk once written, so the files are exactly what a kill leaves)."""


def run_killed_after(cfg, step: int, monkeypatch, resume=None) -> None:
    """Train `cfg` and stop it dead right after the row of `step` is logged."""
    real_row = RunLog.row

    def row(self, values):
        real_row(self, values)
        if values["step"] == step:
            raise Killed

    monkeypatch.setattr(RunLog, "row", row)
    with pytest.raises(Killed):
        train(cfg, resume=resume)
    monkeypatch.setattr(RunLog, "row", real_row)


def plugin_curves(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as `tensorboard --load_fast=false` serves them (the plugin accumulator,
    scalars as tensors)."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator as PluginAccumulator
    from tensorboard.util import tensor_util

    acc = PluginAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


def raw_steps(log_dir: Path) -> list[int]:
    """Every step of every scalar event in every file, no purge applied (a reader that relies on none)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return sorted(e.step for p in sorted(log_dir.glob("events.out.tfevents.*")) for e in EventFileLoader(str(p)).Load()
                  if e.HasField("summary") and any(v.tag == "loss" for v in e.summary.value))


def assert_every_reader_sees_log_csv(out: Path) -> None:
    table = pd.read_csv(out / "log.csv")
    assert table.step.tolist() == sorted(set(table.step))  # log.csv itself: each step once
    assert_curves_are_log_csv(out)  # EventAccumulator
    got = plugin_curves(out / "tensorboard")
    assert set(got) == set(table.columns) - {"step"}
    for tag, points in got.items():
        assert [s for s, _ in points] == table.step.tolist(), tag
        assert np.allclose([v for _, v in points], table[tag].to_numpy(np.float32), rtol=1e-6), tag
    assert raw_steps(out / "tensorboard") == table.step.tolist()


def test_kills_and_resumes_with_tensorboard_on_and_off_show_each_step_once_in_every_reader(corpus, tmp_path,
                                                                                          monkeypatch):
    """Feeds a run killed twice, resumed once with TensorBoard off and once on: killed after step 5 is
    logged (checkpoint at 3), resumed with run.tensorboard=false and killed after step 8 (checkpoint
    at 6), resumed with it on to step 12; expects TensorBoard's Python reader, the plugin reader of
    `--load_fast=false` and a raw read of the event files to show steps 1..12 once each with
    log.csv's values (the killed steps 4-5 showed twice; the points of the first kill stayed stale
    after the off/on resumes)."""
    out = tmp_path / "run"
    ckpt = out / "checkpoints"
    run_killed_after(config(corpus, out, "run.steps=12", "run.checkpoint_every=3"), 5, monkeypatch)
    assert raw_steps(out / "tensorboard") == [1, 2, 3, 4, 5]
    run_killed_after(config(corpus, out, "run.steps=12", "run.checkpoint_every=3", "run.tensorboard=false"), 8,
                     monkeypatch, resume=ckpt / "step_00000003.pt")
    assert raw_steps(out / "tensorboard") == [1, 2, 3]  # rewritten up to the resume point, nothing stale
    train(config(corpus, out, "run.steps=12", "run.checkpoint_every=3"), resume=ckpt / "step_00000006.pt")
    assert pd.read_csv(out / "log.csv").step.tolist() == list(range(1, 13))
    assert_every_reader_sees_log_csv(out)


def test_a_kill_and_resume_show_the_resumed_values_once_in_every_reader(corpus, tmp_path, monkeypatch):
    """Feeds one kill after step 5 (checkpoint at 3) and a resume to 6; expects every reader to show
    steps 1..6 once, 4-6 with the resumed run's values."""
    out = tmp_path / "run"
    run_killed_after(config(corpus, out, "run.steps=6", "run.checkpoint_every=3"), 5, monkeypatch)
    killed = dict(curves(out / "tensorboard")["loss"])
    train(config(corpus, out, "run.steps=6", "run.checkpoint_every=3"), resume=out / "checkpoints" / "step_00000003.pt")
    assert_every_reader_sees_log_csv(out)
    resumed = dict(plugin_curves(out / "tensorboard")["loss"])
    assert [resumed[s] for s in (1, 2, 3)] == pytest.approx([killed[s] for s in (1, 2, 3)], rel=1e-6)


def test_tensorboard_off_or_not_installed_writes_no_events(corpus, tmp_path, monkeypatch):
    train(config(corpus, tmp_path / "off", "run.steps=1", "run.tensorboard=false"))
    assert not (tmp_path / "off" / "tensorboard").exists()
    monkeypatch.setattr(runlog, "tensorboard_installed", lambda: False)
    train(config(corpus, tmp_path / "missing", "run.steps=1"))
    assert not (tmp_path / "missing" / "tensorboard").exists()
    assert "pip install tensorboard" in (tmp_path / "missing" / "run.log").read_text()


def test_only_the_main_process_writes(tmp_path):
    log = RunLog(tmp_path / "rank1", enabled=False, tensorboard=True)
    log.row({"step": 1, "loss": 1.0})
    log.close()
    assert log.tensorboard_dir is None and not (tmp_path / "rank1").exists()


def test_run_tensorboard_is_a_checked_resumable_key():
    assert load_config(None).run.tensorboard is True
    assert load_config(None, ["run.tensorboard=false"]).run.tensorboard is False
    with pytest.raises(ConfigError, match="run.tensorboard must be true or false"):
        load_config(None, ["run.tensorboard=sometimes"])
    assert "run.tensorboard" in RESUMABLE_KEYS  # how a run is watched does not touch its state


@pytest.mark.slow  # make test-fast: over 1.5 s
def test_how_a_study_run_is_watched_is_not_part_of_its_identity():
    """run.tensorboard (like run.progress, and run.keep_steps: which checkpoints are kept) is not a
    run's recipe: the study's identities (what a recorded result must match) leave it out, so the
    committed results are reused whatever it is, and no committed record differs by it."""
    from studies.mini_lape import ABLATIONS, BUDGET_STEPS, METHODS, _diff, _identity, load_registry, plan_runs

    def identities(**overrides: str) -> list[dict]:
        runs = plan_runs(Path("runs/study"), Path("demo_data_study/corpus"), BUDGET_STEPS, list(METHODS),
                         list(ABLATIONS), [0, 1], overrides=overrides)
        return [(run.name, _identity(run, "study")) for run in runs]

    plain = identities()
    assert plain == identities(**{"run.tensorboard": "false"}) == identities(**{"run.keep_steps": "[100, 300]"})
    registry = load_registry(REPO / "studies" / "results" / "study")
    assert {name for name, _ in plain} <= set(registry)
    for name, identity in plain:
        differences = _diff(registry[name]["config"], identity["config"])
        assert not [d for d in differences if d.startswith(("run.tensorboard", "run.keep_steps"))], name
