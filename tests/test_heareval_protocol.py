"""The heareval protocol's own settings on planted cached tasks: ``standardize`` hands heareval
embeddings standardised with the train split's statistics only, and the validation score
heareval selected on is parsed from its scores file.

The standardised files are checked against a plain numpy reference computed here
(``(x - train.mean(0)) / train.std(0)``), block-wise reading against whole-array reading,
and heareval's real prediction runner is run on them (slow).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cached_tasks import write_cached_task
from eval_suites.core.manifest import load_manifest
from eval_suites.core.protocols import heareval as protocol
from eval_suites.core.protocols.heareval import (HearevalConfig, HearevalError, _link_embeddings,
                                                 parse_validation_scores, run_heareval)


def read_raw(path: Path, dim: int) -> np.ndarray:
    """A raw float32 memmap file as an (M, D) array."""
    return np.fromfile(path, dtype=np.float32).reshape(-1, dim)


@pytest.fixture
def planted(tmp_path) -> Path:
    """Splits whose dimensions differ in offset (up to 100) and spread (0.1 to 30); valid
    and test shifted by +1 and -1 spreads from train along dimensions 1-3, so train-only
    statistics are told from pooled ones. The classes differ along dimension 0 (5 spreads apart)."""
    rng = np.random.default_rng(0)
    offset, spread = np.array([100.0, -5.0, 0.0, 3.0]), np.array([30.0, 0.1, 1.0, 4.0])

    def split(n: int, shift: float):
        y = rng.integers(0, 2, n)
        x = offset + spread * (np.array([0.0, shift, shift, shift]) + rng.standard_normal((n, 4)))
        x[:, 0] += 150.0 * y
        return x, [f"c{k}" for k in y]

    return write_cached_task(tmp_path / "cache" / "planted",
                             {"train": split(64, 0.0), "valid": split(32, 1.0), "test": split(32, -1.0)},
                             ["c0", "c1"])


def test_standardized_files_use_the_train_statistics_only(planted, tmp_path):
    work = tmp_path / "work" / "planted"
    written = _link_embeddings(planted, work, {"lr": [0.001]}, standardize=True)
    assert sorted(f.name for f in written) == ["test.embeddings.npy", "train.embeddings.npy",
                                               "valid.embeddings.npy"]
    raw = {s: read_raw(planted / f"{s}.embeddings.npy", 4).astype(np.float64) for s in ("train", "valid", "test")}
    mean, std = raw["train"].mean(0), raw["train"].std(0)
    for s, x in raw.items():
        z = read_raw(work / f"{s}.embeddings.npy", 4)
        assert not (work / f"{s}.embeddings.npy").is_symlink()
        np.testing.assert_allclose(z, (x - mean) / std, rtol=1e-5, atol=1e-5)
    z_train = read_raw(work / "train.embeddings.npy", 4)
    np.testing.assert_allclose(z_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z_train.std(0), 1.0, atol=1e-5)
    # valid and test keep their shift: they were not standardised with their own statistics
    assert read_raw(work / "valid.embeddings.npy", 4).mean(0)[1:].min() > 0.5
    assert read_raw(work / "test.embeddings.npy", 4).mean(0)[1:].max() < -0.5
    # the rest is as without standardize: dimensions linked, labels re-pickled, grid in the metadata
    assert (work / "train.embedding-dimensions.json").is_symlink()
    assert json.loads((work / "task_metadata.json").read_text())["evaluation_params"] == {
        "task_specific_param_grid": {"lr": [0.001]}}
    # the cache itself is untouched
    np.testing.assert_array_equal(read_raw(planted / "train.embeddings.npy", 4), raw["train"].astype(np.float32))


def test_block_reading_equals_whole_array_reading(planted, tmp_path, monkeypatch):
    whole = tmp_path / "whole" / "planted"
    _link_embeddings(planted, whole, standardize=True)
    monkeypatch.setattr(protocol, "_CHUNK_ROWS", 5)  # 64 train rows: 13 blocks, the last partial
    blocks = tmp_path / "blocks" / "planted"
    _link_embeddings(planted, blocks, standardize=True)
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(read_raw(blocks / f"{s}.embeddings.npy", 4),
                                      read_raw(whole / f"{s}.embeddings.npy", 4))


def test_a_constant_dimension_is_centred_not_divided_by_zero(tmp_path):
    x = np.ones((8, 2))
    x[:, 1] = np.arange(8)
    d = write_cached_task(tmp_path / "cache" / "flat", {s: (x, ["a", "b"] * 4) for s in ("train", "valid", "test")},
                          ["a", "b"])
    _link_embeddings(d, tmp_path / "work" / "flat", standardize=True)
    z = read_raw(tmp_path / "work" / "flat" / "test.embeddings.npy", 2)
    assert np.isfinite(z).all() and (z[:, 0] == 0).all()


def test_without_standardize_every_embedding_file_is_a_link(planted, tmp_path):
    work = tmp_path / "work" / "planted"
    assert _link_embeddings(planted, work) == []
    assert all((work / f"{s}.embeddings.npy").is_symlink() for s in ("train", "valid", "test"))


def test_k_fold_tasks_are_refused_naming_the_setting(tmp_path):
    x = np.zeros((4, 2))
    d = write_cached_task(tmp_path / "cache" / "folds", {f"fold{i:02d}": (x, ["a", "b"] * 2) for i in range(3)},
                          ["a", "b"], split_mode="new_split_kfold")
    with pytest.raises(HearevalError, match="'standardize': true needs a train/valid/test task"):
        _link_embeddings(d, tmp_path / "work" / "folds", standardize=True)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_standardize_must_be_a_boolean(value):
    with pytest.raises(ValueError, match=f"setting 'standardize': expected true or false, got {value!r}"):
        HearevalConfig(standardize=value)


def test_manifest_passes_standardize_and_refuses_k_fold_tasks_before_any_work(tmp_path, monkeypatch):
    import eval_suites.hear_format.task as task_module
    from eval_suites.core.manifest import check_inputs
    from eval_suites.hear_format.task import TaskMetadata

    m = tmp_path / "m.yaml"
    m.write_text("models: [{name: a, module: json}]\ntasks: [{path: kf, protocols: [heareval]}, "
                 "{path: kf2, protocols: [linear]}]\nprotocols:\n  linear: {}\n"
                 "  heareval: {grid: faster, standardize: true, param_grid: {lr: [0.001], patience: [10]}}\n")
    manifest = load_manifest(m)
    assert manifest.heareval == HearevalConfig(grid="faster", standardize=True,
                                               param_grid={"lr": [0.001], "patience": [10]})

    class Loaded:  # what load_task returns, as far as check_inputs reads it
        metadata = TaskMetadata(task_name="kf", version="v1", embedding_type="scene",
                                prediction_type="multiclass", split_mode="new_split_kfold",
                                sample_duration=1.0, evaluation=["top1_acc"],
                                splits=["fold00", "fold01", "fold02"], nfolds=3)

    monkeypatch.setattr(task_module, "load_task", lambda path: Loaded())
    assert check_inputs(manifest) == [  # kf2 is scored without heareval: no problem
        "task 'kf': protocols.heareval.standardize is true but the task has split_mode "
        "'new_split_kfold'; heareval rotates its folds over one set of files, so no "
        "train-only statistics exist: set standardize: false or give the task protocols without heareval"]
    monkeypatch.setattr(manifest, "heareval", HearevalConfig(grid="faster"))
    assert check_inputs(manifest) == []


def test_validation_scores_are_read_per_fold(tmp_path):
    meta = {"split_mode": "new_split_kfold", "splits": ["fold00", "fold01"], "evaluation": ["mAP", "top1_acc"]}
    scores = {"fold00": {"test_mAP": 0.5, "validation_score": 0.6, "epoch": 4},
              "fold01": {"test_mAP": 0.7, "validation_score": 0.8, "epoch": 9}}
    path = tmp_path / "test.predicted-scores.json"
    path.write_text(json.dumps(scores))
    assert parse_validation_scores(path, meta) == {
        "metric": "mAP", "value": pytest.approx(0.7),
        "folds": [{"fold": "fold00", "score": 0.6, "epoch": 4}, {"fold": "fold01", "score": 0.8, "epoch": 9}]}
    assert parse_validation_scores(path, {**meta, "use_scoring_for_early_stopping": False})["metric"] == "loss"
    del scores["fold01"]["validation_score"]
    path.write_text(json.dumps(scores))
    with pytest.raises(HearevalError, match="no validation score for 'fold01'"):
        parse_validation_scores(path, meta)


@pytest.mark.slow
def test_heareval_runs_on_standardized_embeddings(planted, tmp_path):
    """heareval's real prediction runner, one fixed grid point, on the planted task: the
    classes differ along dimension 0 only (spread 30, offset 100): separable, once standardised,
    by the one linear layer asked for."""
    cfg = HearevalConfig(grid="faster", grid_points=1, standardize=True, timeout_s=600,
                         param_grid={"batch_size": [8], "max_epochs": [30], "lr": [0.01],
                                     "patience": [20], "hidden_layers": [0]})
    summary, details = run_heareval(planted, tmp_path / "work", cfg)
    (metric, value, std, folds), = summary
    assert metric == "top1_acc" and folds == 1 and value >= 0.8, summary
    validation = details["validation"]
    assert validation["metric"] == "top1_acc" and validation["value"] >= 0.8, validation
    scores = json.loads(Path(details["scores_file"]).read_text())
    assert validation["value"] == scores["test"]["validation_score"]
    assert details["standardize"] is True and details["hparams"]["lr"] == 0.01
    task_dir = Path(details["scores_file"]).parent
    assert not list(task_dir.glob("*.embeddings.npy"))  # the standardised copies are removed after the run
    assert (task_dir / "test.predictions.pkl").is_file()
