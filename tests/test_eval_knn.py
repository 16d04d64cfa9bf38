"""The ``knn`` protocol on planted embeddings: cosine neighbours, k chosen on validation.

The cached task is written directly in heareval's embedding layout (the one
:func:`eval_suites.core.embeddings.read_split` reads), so every row, label and split is known.
The protocol is checked against a literal re-implementation of a cosine kNN (numpy: dot
products of unit rows, argsort, vote) written here, and on planted answers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cached_tasks import write_cached_task
from eval_suites.core.protocols.knn import KnnConfig, run_knn

TESTS = Path(__file__).resolve().parent


def clusters(rng, centres: np.ndarray, n_per: int, spread: float, flip: float = 0.0,
             labels: list[str] | None = None):
    """Points around each centre's direction, at random radii (cosine ignores the radius);
    a share ``flip`` of the labels is replaced by a random other label."""
    c, d = centres.shape
    labels = labels or [f"c{i}" for i in range(c)]
    x, y = [], []
    for i in range(c):
        pts = centres[i] + spread * rng.standard_normal((n_per, d))
        x.append(pts * rng.uniform(0.2, 5.0, size=(n_per, 1)))
        y += [labels[i]] * n_per
    y = np.array(y)
    flipped = rng.random(len(y)) < flip
    for j in np.flatnonzero(flipped):
        y[j] = labels[(labels.index(y[j]) + rng.integers(1, c)) % c]
    return np.concatenate(x), list(y)


def reference_knn_accuracy(x_train, y_train, x_query, y_query, k, vocabulary):
    """Literal cosine kNN: unit rows, similarity = dot product, the k largest, majority vote
    (ties to the lower vocabulary index), accuracy."""
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    sims = unit(x_query) @ unit(x_train).T  # (M, N)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # (M, k)
    idx = {lab: i for i, lab in enumerate(vocabulary)}
    correct = 0
    for row, truth in zip(order, y_query):
        votes = np.zeros(len(vocabulary))
        for j in row:
            votes[idx[y_train[j]]] += 1
        correct += int(np.argmax(votes) == idx[truth])
    return correct / len(y_query)


@pytest.fixture()
def planted(tmp_path):
    """Three directions in 8-d; 35 % of the training labels flipped, so one neighbour is
    often wrong and a wide vote is right: the best k on validation is large."""
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3] * 3.0
    vocab = ["c0", "c1", "c2"]
    train = clusters(rng, centres, 60, 0.6, flip=0.35)
    valid = clusters(rng, centres, 20, 0.6)
    test = clusters(rng, centres, 20, 0.6)
    d = write_cached_task(tmp_path / "task", {"train": train, "valid": valid, "test": test}, vocab)
    return d, train, valid, test, vocab


def test_k_is_chosen_on_validation_and_matches_the_reference(planted):
    d, train, valid, test, vocab = planted
    cfg = KnnConfig(ks=(1, 3, 5, 15, 45))
    summary, [fold] = run_knn(d, cfg, progress=False)
    ref_valid = {k: reference_knn_accuracy(*train, *valid, k, vocab) for k in cfg.ks}
    assert fold.valid_scores == pytest.approx(ref_valid)
    best = max(cfg.ks, key=lambda k: (ref_valid[k], -k))  # ties to the smaller k
    assert fold.best_k == best and best > 1  # planted: label noise needs a wide vote
    assert ref_valid[1] < 0.9 <= ref_valid[best]
    ref_test = reference_knn_accuracy(*train, *test, best, vocab)
    assert summary == [("top1_acc", pytest.approx(ref_test), None, 1)]
    assert ref_test >= 0.9


def test_test_split_never_chooses_k(planted, tmp_path):
    """Relabel the test split so that k=1 would win there: the choice must not move."""
    d, train, valid, test, vocab = planted
    _, [fold] = run_knn(d, KnnConfig(ks=(1, 45)), progress=False)
    assert fold.best_k == 45
    rng = np.random.default_rng(1)
    # test rows copied from training rows, with the (noisy) training labels: k=1 is perfect
    pick = rng.choice(len(train[1]), size=30, replace=False)
    test_copy = (train[0][pick] * 1.0001, [train[1][i] for i in pick])
    d2 = write_cached_task(tmp_path / "t2", {"train": train, "valid": valid, "test": test_copy}, vocab)
    summary, [fold2] = run_knn(d2, KnnConfig(ks=(1, 45)), progress=False)
    assert fold2.best_k == 45
    assert reference_knn_accuracy(*train, *test_copy, 1, vocab) == 1.0
    assert summary[0][1] == pytest.approx(reference_knn_accuracy(*train, *test_copy, 45, vocab))


def test_cosine_ignores_scale_and_standardize_is_an_option(planted, tmp_path):
    d, train, valid, test, vocab = planted
    scaled = {s: (x * np.random.default_rng(2).uniform(0.01, 100, size=(len(x), 1)), y)
              for s, (x, y) in (("train", train), ("valid", valid), ("test", test))}
    d2 = write_cached_task(tmp_path / "scaled", scaled, vocab)
    a, fa = run_knn(d, KnnConfig(), progress=False)
    b, fb = run_knn(d2, KnnConfig(), progress=False)
    assert a == b and fa[0].valid_scores == fb[0].valid_scores
    # standardize: every dimension scaled by the training split's mean and std, then the same cosine kNN
    std, [fold] = run_knn(d, KnnConfig(standardize=True), progress=False)
    x_train = train[0].astype(np.float32)
    mean, sd = x_train.mean(0), np.maximum(x_train.std(0), 1e-6)
    z = lambda x: (x.astype(np.float32) - mean) / sd  # noqa: E731
    for k, score in fold.valid_scores.items():
        assert score == pytest.approx(reference_knn_accuracy(z(train[0]), train[1], z(valid[0]), valid[1], k, vocab))
    assert fold.valid_scores[fold.best_k] == max(fold.valid_scores.values())
    assert std[0][1] == pytest.approx(reference_knn_accuracy(z(train[0]), train[1], z(test[0]), test[1], fold.best_k,
                                                             vocab))


def test_k_larger_than_the_training_split_is_skipped(tmp_path):
    rng = np.random.default_rng(3)
    centres = np.eye(4)[:2] * 3.0
    small = clusters(rng, centres, 3, 0.3)  # 6 training rows
    d = write_cached_task(tmp_path / "t", {"train": small, "valid": clusters(rng, centres, 4, 0.3),
                                           "test": clusters(rng, centres, 4, 0.3)}, ["c0", "c1"])
    _, [fold] = run_knn(d, KnnConfig(ks=(1, 5, 50)), progress=False)
    assert set(fold.valid_scores) == {1, 5}


def test_kfold_rotation_gives_mean_and_std(tmp_path):
    rng = np.random.default_rng(4)
    centres = np.eye(6)[:3] * 3.0
    folds = {f"fold{i:02d}": clusters(rng, centres, 8, 0.5) for i in range(4)}
    d = write_cached_task(tmp_path / "k", folds, ["c0", "c1", "c2"], split_mode="presplit_kfold")
    summary, fs = run_knn(d, KnnConfig(ks=(1, 3)), progress=False)
    assert [f.test_split for f in fs] == list(folds)
    values = [f.test_scores["top1_acc"] for f in fs]
    assert summary[0][1] == pytest.approx(np.mean(values))
    assert summary[0][2] == pytest.approx(np.std(values, ddof=1)) and summary[0][3] == 4


@pytest.mark.parametrize("bad, fragment", [
    ({"ks": []}, "non-empty list"), ({"ks": [0, 3]}, "integers >= 1"), ({"ks": [3, 3]}, "distinct"),
    ({"ks": [1.5]}, "integers >= 1"), ({"standardize": "yes"}, "true or false")])
def test_bad_settings_name_the_setting(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        KnnConfig(**bad)


@pytest.mark.slow  # a subprocess end to end (make test-fast skips it)
def test_cli_run_offers_knn_with_the_same_cache_and_tables(tmp_path):
    from eval_suites.synthetic.demo_tasks import build_instrument_task

    root = tmp_path / "tasks"
    build_instrument_task(root, families=("piano", "brass"), clips_per_class_per_split=4)
    m = tmp_path / "m.yaml"
    m.write_text(f"suite: demo\ntasks_root: {root}\n"
                 "models:\n  - {name: toy, module: hear_toy_module}\n"
                 "tasks:\n  - {name: instruments, path: demo-instruments-v1-full}\n"
                 "protocols:\n  linear: {epochs: 5}\n  knn: {ks: [1, 3]}\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "eval_suites", "run", str(m), "--out", str(out),
                           "--no-progress"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(out / "results.csv")
    assert set(df.protocol) == {"linear", "knn"}
    knn = df[df.protocol == "knn"]
    linear = df[df.protocol == "linear"]
    assert list(knn.metric) == list(linear.metric) and knn.metric.iloc[0] == "top1_acc"
    assert ((knn.value >= 0) & (knn.value <= 1)).all()
    assert "## Protocol `knn`" in (out / "results.md").read_text()
    # one embedding folder serves both protocols
    assert len([p for p in (out / "embeddings").glob("*/*") if p.is_dir()]) == 1
    cell = json.loads((out / "cells/toy/instruments/knn/result.json").read_text())
    assert cell["details"]["folds"][0]["best_k"] in (1, 3)


def test_a_tie_on_validation_goes_to_the_smaller_k(tmp_path):
    """Two well-separated clusters: k = 1 and k = 3 both classify every validation row
    correctly (a tie at 1.0), k = 8 (all training rows, a 4-4 vote) does not; the smaller
    tied k must be chosen (a planted `>=` in the selection, ties to the larger k, picks 3)."""
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:2]
    x_train, y_train = clusters(rng, centres, 4, 0.05)  # (8, 8): 4 rows per label
    x_valid, y_valid = clusters(rng, centres, 3, 0.05)
    x_test, y_test = clusters(rng, centres, 3, 0.05)
    d = write_cached_task(tmp_path / "tie", {"train": (x_train, y_train), "valid": (x_valid, y_valid),
                                             "test": (x_test, y_test)}, ["c0", "c1"])
    _, (fold,) = run_knn(d, KnnConfig(ks=(1, 3, 8)), progress=False)
    assert fold.valid_scores[1] == fold.valid_scores[3] == 1.0 > fold.valid_scores[8]
    assert fold.best_k == 1
