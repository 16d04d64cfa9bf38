"""Model selection of the linear protocol (eval_suites/core/protocols/linear.py) on a planted task.

The task's metric is scripted: on the validation split it returns a planted curve, one
value per epoch, whatever the predictions; on the test split it returns a curve that peaks
at another epoch. Validation and test have the same embeddings but different labels, so
every call says which split it scores, and the test predictions can be compared with the
validation predictions of each epoch: they must be those of the best-validation epoch,
computed after all epochs, and only once.
"""
from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pandas as pd
import pytest

import eval_suites.core.protocols.linear as linear
from eval_suites.core.protocols.linear import LinearConfig, run_linear

VALID_CURVE = [0.20, 0.55, 0.30, 0.91, 0.40, 0.90, 0.10]  # best at epoch 3 (0-based)
TEST_CURVE = [0.99, 0.10, 0.10, 0.10, 0.10, 0.10, 0.95]  # what selecting on test would pick
LOSS_CURVE = [0.90, 0.50, 0.70, 0.60, 0.45, 0.46, 0.80]  # a metric to minimise: best at epoch 4


SPLITS = ("train", "valid", "test")


def _write_task(d, clips):
    """clips: split -> {name: (embedding (D,), label)}. Rows are stored in the cache's order
    (each split's names shuffled in split order by one random.Random(0), as
    eval_suites.core.embeddings writes them); returns split -> row order (names)."""
    prng = random.Random(0)
    orders = {}
    for split in SPLITS:
        (d / f"{split}.json").write_text(json.dumps({n: [lbl] for n, (_, lbl) in clips[split].items()}))
        names = list(clips[split])
        prng.shuffle(names)
        orders[split] = names
        x = np.stack([clips[split][n][0] for n in names]).astype(np.float32)
        (d / f"{split}.embedding-dimensions.json").write_text(json.dumps(list(x.shape)))
        mm = np.memmap(d / f"{split}.embeddings.npy", dtype=np.float32, mode="w+", shape=x.shape)
        mm[:] = x
        mm.flush()
        del mm
        with open(d / f"{split}.target-labels.pkl", "wb") as fh:
            pickle.dump([[clips[split][n][1]] for n in names], fh)
    return orders


@pytest.fixture
def planted_task(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "task"
    d.mkdir()
    meta = dict(task_name="planted", split_mode="trainvaltest", embedding_type="scene",
                prediction_type="multiclass", evaluation=["scripted"], splits=list(SPLITS))
    (d / "task_metadata.json").write_text(json.dumps(meta))
    pd.DataFrame({"idx": [0, 1], "label": ["a", "b"]}).to_csv(d / "labelvocabulary.csv", index=False)
    x_train = rng.normal(size=(64, 5))
    x_eval = rng.normal(size=(20, 5))
    clips = {"train": {f"tr{i}.wav": (x, "a" if x[0] > 0 else "b") for i, x in enumerate(x_train)},
             # valid: all "a"; test: all "b"; clip i of both has the same embedding
             "valid": {f"va{i}.wav": (x, "a") for i, x in enumerate(x_eval)},
             "test": {f"te{i}.wav": (x, "b") for i, x in enumerate(x_eval)}}
    orders = _write_task(d, clips)
    # row r of test holds the embedding of valid's row test_to_valid[r]
    valid_row = {n[2:]: r for r, n in enumerate(orders["valid"])}
    return d, np.array([valid_row[n[2:]] for n in orders["test"]])


def _scripted(calls, maximize=True):
    class Scripted:
        def __init__(self, label_to_idx):
            self.maximize = maximize

        def __call__(self, probs, y):
            split = "valid" if y[:, 0].all() else "test"
            n = sum(1 for s, _ in calls if s == split)
            calls.append((split, probs.copy()))
            curve = (VALID_CURVE if maximize else LOSS_CURVE) if split == "valid" else TEST_CURVE
            return curve[n] if n < len(curve) else float("nan")

    return Scripted


@pytest.mark.parametrize("maximize,best", [(True, 3), (False, 4)])
def test_the_best_validation_epoch_is_kept_and_test_is_scored_once_after(planted_task, monkeypatch, maximize, best):
    calls = []
    monkeypatch.setattr(linear, "_heareval_scoring", lambda: {"scripted": _scripted(calls, maximize)})
    planted_task, test_to_valid = planted_task
    summary, (fold,) = run_linear(planted_task, LinearConfig(epochs=len(VALID_CURVE), device="cpu"), progress=False)
    splits = [s for s, _ in calls]
    assert splits == ["valid"] * len(VALID_CURVE) + ["test"]  # test only once, after every epoch
    assert fold.best_epoch == best
    curve = VALID_CURVE if maximize else LOSS_CURVE
    assert fold.valid_score == pytest.approx(curve[best])
    assert fold.test_scores == {"scripted": pytest.approx(TEST_CURVE[0])}
    assert summary == [("scripted", pytest.approx(TEST_CURVE[0]), None, 1)]
    # The test predictions are those of the weights of the chosen epoch.
    valid_probs = [p[test_to_valid] for s, p in calls if s == "valid"]  # in the test split's row order
    test_probs = calls[-1][1]
    np.testing.assert_allclose(test_probs, valid_probs[best], rtol=1e-6, atol=1e-7)
    assert not np.allclose(test_probs, valid_probs[-1], atol=1e-4)  # the epochs differ: a real check


def test_a_nan_validation_score_is_never_chosen(planted_task, monkeypatch):
    calls = []
    monkeypatch.setattr(linear, "_heareval_scoring", lambda: {"scripted": _scripted(calls)})
    monkeypatch.setitem(globals(), "VALID_CURVE", [float("nan"), 0.3, float("nan"), 0.2])
    _, (fold,) = run_linear(planted_task[0], LinearConfig(epochs=4, device="cpu"), progress=False)
    assert fold.best_epoch == 1 and fold.valid_score == pytest.approx(0.3)


def test_standardisation_uses_the_training_split_only(planted_task, monkeypatch):
    """Shifting valid/test embeddings by a constant changes the predictions (train statistics)."""
    planted_task, _ = planted_task
    calls = []
    monkeypatch.setattr(linear, "_heareval_scoring", lambda: {"scripted": _scripted(calls)})
    run_linear(planted_task, LinearConfig(epochs=1, device="cpu"), progress=False)
    first = calls[0][1]
    for split in ("valid", "test"):
        rows, dim = json.loads((planted_task / f"{split}.embedding-dimensions.json").read_text())
        mm = np.memmap(planted_task / f"{split}.embeddings.npy", dtype=np.float32, mode="r+", shape=(rows, dim))
        mm[:] += 3.0
        mm.flush()
        del mm
    calls.clear()
    run_linear(planted_task, LinearConfig(epochs=1, device="cpu"), progress=False)
    assert not np.allclose(calls[0][1], first, atol=1e-3)
