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
import math
import pickle
import random

import numpy as np
import pandas as pd
import pytest
import torch

import eval_suites.core.protocols.linear as linear
from cached_tasks import write_embeddings
from eval_suites.core.protocols.linear import LinearConfig, run_linear

VALID_CURVE = [0.20, 0.55, 0.30, 0.91, 0.40, 0.90, 0.10]  # best at epoch 3 (0-based)
TEST_CURVE = [0.99, 0.10, 0.10, 0.10, 0.10, 0.10, 0.95]  # what selecting on test would pick
LOSS_CURVE = [0.90, 0.50, 0.70, 0.60, 0.45, 0.46, 0.80]  # a metric to minimise: best at epoch 4


SPLITS = ("train", "valid", "test")


def _labels(lbl):
    return list(lbl) if isinstance(lbl, (list, tuple)) else [lbl]


def _write_task(d, clips, splits=SPLITS):
    """clips: split -> {name: (embedding (D,), label)}. Rows are stored in the cache's order
    (each split's names shuffled in split order by one random.Random(0), as
    eval_suites.core.embeddings writes them); returns split -> row order (names)."""
    prng = random.Random(0)
    orders = {}
    for split in splits:
        (d / f"{split}.json").write_text(json.dumps({n: _labels(lbl) for n, (_, lbl) in clips[split].items()}))
        names = list(clips[split])
        prng.shuffle(names)
        orders[split] = names
        write_embeddings(d, split, np.stack([clips[split][n][0] for n in names]))
        with open(d / f"{split}.target-labels.pkl", "wb") as fh:
            pickle.dump([_labels(clips[split][n][1]) for n in names], fh)
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


def test_a_tie_keeps_the_first_best_epoch(planted_task, monkeypatch):
    """A later epoch replaces the kept one only when strictly better on validation; a scene task
    has no post-processing to report."""
    calls = []
    monkeypatch.setattr(linear, "_heareval_scoring", lambda: {"scripted": _scripted(calls)})
    monkeypatch.setitem(globals(), "VALID_CURVE", [0.2, 0.6, 0.6, 0.1])
    _, (fold,) = run_linear(planted_task[0], LinearConfig(epochs=4, device="cpu"), progress=False)
    assert fold.best_epoch == 1 and fold.valid_score == pytest.approx(0.6)
    assert fold.postprocessing is None


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


# ----------------------------------------------------------------------------- the training itself
def _reference_valid_probs(x_tr, y_tr, x_va, cfg: LinearConfig, multiclass: bool) -> list[np.ndarray]:
    """LAPE's linear protocol written out: standardise with train statistics, one nn.Linear,
    Adam(lr), mini-batches of batch_size in a seeded random order, softmax + CE (multiclass) or
    sigmoid + BCE; the validation probabilities after every epoch."""
    mean = x_tr.mean(0) if cfg.standardize else 0.0
    std = np.maximum(x_tr.std(0), 1e-6) if cfg.standardize else 1.0
    feats = lambda x: torch.as_tensor((x - mean) / std, dtype=torch.float32)  # noqa: E731
    xt, yt, xv = feats(x_tr), torch.as_tensor(y_tr), feats(x_va)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    layer = torch.nn.Linear(xt.shape[1], yt.shape[1])
    opt = torch.optim.Adam(layer.parameters(), lr=cfg.lr)
    out = []
    for _ in range(cfg.epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            logits = layer(xt[idx])
            if multiclass:
                loss = torch.nn.functional.cross_entropy(logits, yt[idx].argmax(1))
            else:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = layer(xv)
            out.append((logits.softmax(-1) if multiclass else logits.sigmoid()).numpy())
    return out


@pytest.mark.parametrize("prediction_type,standardize,batch_size,lr", [
    ("multiclass", True, 32, 1e-3), ("multilabel", True, 7, 3e-3), ("multiclass", False, 5, 1e-2)])
def test_training_equals_the_protocol_written_out(tmp_path, monkeypatch, prediction_type, standardize, batch_size,
                                                  lr):
    rng = np.random.default_rng(1)
    d = tmp_path / "task"
    d.mkdir()
    labels = ["a", "b", "c"]
    (d / "task_metadata.json").write_text(json.dumps(dict(
        task_name="t", split_mode="trainvaltest", embedding_type="scene", prediction_type=prediction_type,
        evaluation=["scripted"], splits=list(SPLITS))))
    pd.DataFrame({"idx": [0, 1, 2], "label": labels}).to_csv(d / "labelvocabulary.csv", index=False)

    def draw(n, prefix):
        clips = {}
        for i in range(n):
            x = rng.normal(size=6) * np.array([1, 2, 3, 1, 1, 5]) + np.array([0, 4, -2, 0, 1, 0])
            lbl = labels[int(np.argmax(x[:3]))]
            if prediction_type == "multilabel":
                lbl = sorted({lbl, labels[int(np.argmin(x[3:]))]})
            clips[f"{prefix}{i}.wav"] = (x, lbl)
        return clips

    clips = {"train": draw(40, "tr"), "valid": draw(12, "va"), "test": draw(12, "te")}
    orders = _write_task(d, clips)

    def matrix(split):
        x = np.stack([clips[split][n][0] for n in orders[split]]).astype(np.float32)
        y = np.zeros((len(x), 3), dtype=np.float32)
        for r, n in enumerate(orders[split]):
            for lbl in _labels(clips[split][n][1]):
                y[r, labels.index(lbl)] = 1.0
        return x, y

    calls = []
    monkeypatch.setattr(linear, "_heareval_scoring", lambda: {"scripted": _recording(calls)})
    cfg = LinearConfig(epochs=4, device="cpu", standardize=standardize, batch_size=batch_size, lr=lr, seed=3)
    run_linear(d, cfg, progress=False)
    (x_tr, y_tr), (x_va, _) = matrix("train"), matrix("valid")
    expected = _reference_valid_probs(x_tr, y_tr, x_va, cfg, prediction_type == "multiclass")
    got = calls[:cfg.epochs]  # then one call on test
    assert len(calls) == cfg.epochs + 1
    for epoch, (g, e) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, err_msg=f"epoch {epoch}")
    assert not np.allclose(got[0], got[-1], atol=1e-3)


def _recording(calls):
    """A metric that records each input; the epoch's score is its call count (later is better)."""
    class Recording:
        def __init__(self, label_to_idx):
            pass

        def __call__(self, probs, y):
            calls.append(probs.copy())
            return float(len(calls))

    return Recording


def test_kfold_splits_rotate_as_heareval_does():
    meta = {"split_mode": "new_split_kfold", "splits": ["fold02", "fold00", "fold01", "fold03"]}
    assert linear.data_splits(meta) == [
        {"train": ["fold02", "fold03"], "valid": ["fold01"], "test": ["fold00"]},
        {"train": ["fold00", "fold03"], "valid": ["fold02"], "test": ["fold01"]},
        {"train": ["fold00", "fold01"], "valid": ["fold03"], "test": ["fold02"]},
        {"train": ["fold01", "fold02"], "valid": ["fold00"], "test": ["fold03"]},
    ]
    assert linear.data_splits({"split_mode": "trainvaltest", "splits": ["train", "valid", "test"]}) == [
        {"train": ["train"], "valid": ["valid"], "test": ["test"]}]


BAD_SETTINGS = [("epochs", 0, "an integer >= 1"), ("epochs", 2.0, "an integer >= 1"), ("epochs", True, "an integer >= 1"),
                ("lr", 0.0, "a number > 0 and <= 1 (finite)"), ("lr", "0.1", "a number > 0 and <= 1 (finite)"),
                ("lr", True, "a number > 0 and <= 1 (finite)"), ("lr", math.inf, "a number > 0 and <= 1 (finite)"),
                ("batch_size", 0, "an integer >= 1"), ("batch_size", False, "an integer >= 1"),
                ("batch_size", 1.5, "an integer >= 1"), ("seed", 1.0, "an integer"), ("seed", True, "an integer"),
                ("standardize", 1, "true or false"), ("device", 0, "a device name or null")]


@pytest.mark.parametrize("key,value,expected", BAD_SETTINGS, ids=[f"{k}={v!r}" for k, v, _ in BAD_SETTINGS])
def test_bad_settings_are_rejected_with_their_name_and_value(key, value, expected):
    with pytest.raises(ValueError) as err:
        LinearConfig(**{key: value})
    assert str(err.value) == f"setting {key!r}: expected {expected}, got {value!r}"


def test_boundary_settings_are_accepted():
    cfg = LinearConfig(epochs=1, lr=1e-9, batch_size=1, seed=-5, standardize=False, device="cpu")
    assert (cfg.epochs, cfg.batch_size, cfg.seed, cfg.device) == (1, 1, -5, "cpu")


# ----------------------------------------------------------------------------- event tasks
def _planted_event_task(d, rng, splits, grid=None, hop_ms=50.0, clip_ms=4000.0,
                        evaluation=("event_onset_200ms_fms", "segment_1s_er")):
    """splits: split -> [(events, blips)] per clip, as [(label, start_ms, end_ms)]. Frame
    embeddings carry the labels of the events and of the blips (one-hot + noise); the targets
    hold the events only, so a blip is a false alarm the post-processing may remove."""
    labels = ["dog", "bell"]
    meta = dict(task_name="ev", split_mode="trainvaltest", embedding_type="event", prediction_type="multilabel",
                evaluation=list(evaluation), splits=list(SPLITS))
    if grid is not None:
        meta["evaluation_params"] = {"event_postprocessing_grid": grid}
    (d / "task_metadata.json").write_text(json.dumps(meta))
    pd.DataFrame({"idx": [0, 1], "label": labels}).to_csv(d / "labelvocabulary.csv", index=False)
    times = np.arange(0.0, clip_ms + 1e-9, hop_ms)
    for split, clips in splits.items():
        events, xs, ys, ft = {}, [], [], []
        for k, (evs, blips) in enumerate(clips):
            name = f"{split}{k}.wav"
            events[name] = [{"label": lbl, "start": s, "end": e} for lbl, s, e in evs]
            for t in times:
                on = [lbl for lbl, s, e in evs if s <= t < e]
                seen = on + [lbl for lbl, s, e in blips if s <= t < e]
                xs.append(np.array([3.0 * (lbl in seen) for lbl in labels]) + 0.05 * rng.normal(size=2))
                ys.append(on)
                ft.append([f"ev/{split}/{name}", float(t)])
        (d / f"{split}.json").write_text(json.dumps(events))
        write_embeddings(d, split, np.stack(xs))
        with open(d / f"{split}.target-labels.pkl", "wb") as fh:
            pickle.dump(ys, fh)
        (d / f"{split}.filename-timestamps.json").write_text(json.dumps(ft))


def _event_splits(rng):
    """Two events per clip, no false alarms: 12 training, 4 validation and 4 test clips."""
    labels = ["dog", "bell"]
    splits = {}
    for split, n in (("train", 12), ("valid", 4), ("test", 4)):
        splits[split] = []
        for k in range(n):
            start = float(rng.uniform(200, 1200))
            splits[split].append(([(labels[k % 2], start, start + float(rng.uniform(500, 1000))),
                                   (labels[(k + 1) % 2], start + 1700.0, start + 2500.0)], []))
    return splits


def _event_task(d, rng):
    """Frame embeddings that carry their frame's labels (one-hot + noise): a planted task whose
    every test event the protocol must recover (F = 1) through heareval's post-processing."""
    _planted_event_task(d, rng, _event_splits(rng))


@pytest.mark.slow  # make test-fast: over 3 s (with its fixture)
def test_event_task_recovers_planted_events(tmp_path):
    d = tmp_path / "ev"
    d.mkdir()
    _event_task(d, np.random.default_rng(0))
    summary, (fold,) = run_linear(d, LinearConfig(epochs=15, lr=1e-2, device="cpu"), progress=False,
                                  outputs_dir=tmp_path / "outputs")
    assert fold.test_scores["event_onset_200ms_fms"] == pytest.approx(1.0)
    # frame-accurate events: segment errors only where a boundary falls within a hop of a segment edge
    assert fold.test_scores["segment_1s_er"] <= 0.1
    assert fold.valid_score == pytest.approx(1.0) and fold.postprocessing is not None
    grid = {tuple(sorted(p.items())) for p in _grid()}
    assert tuple(sorted(fold.postprocessing.items())) in grid
    assert [m for m, *_ in summary] == ["event_onset_200ms_fms", "segment_1s_er"]
    assert any((tmp_path / "outputs").iterdir())  # the per-file outputs of the bootstrap intervals


def _grid():
    from heareval.predictions.task_predictions import EVENT_POSTPROCESSING_GRID
    import itertools

    keys = list(EVENT_POSTPROCESSING_GRID)
    return [dict(zip(keys, v)) for v in itertools.product(*(EVENT_POSTPROCESSING_GRID[k] for k in keys))]


@pytest.mark.slow  # make test-fast: over 8 s
def test_event_predictions_shifted_in_time_miss(tmp_path, monkeypatch):
    """The same planted task with the test frames' timestamps moved 600 ms: the onsets miss."""
    d = tmp_path / "ev"
    d.mkdir()
    _event_task(d, np.random.default_rng(0))
    rows = json.loads((d / "test.filename-timestamps.json").read_text())
    (d / "test.filename-timestamps.json").write_text(json.dumps([[n, t + 600.0] for n, t in rows]))
    _, (fold,) = run_linear(d, LinearConfig(epochs=15, lr=1e-2, device="cpu"), progress=False)
    assert fold.test_scores["event_onset_200ms_fms"] < 0.2


def test_event_postprocessing_is_the_tasks_grid_chosen_on_validation_and_fixed_on_test(tmp_path):
    """Validation events are short (a 1500 ms minimum duration deletes them: 60 ms is chosen);
    test events are long, each with a 300 ms false alarm that only the 1500 ms minimum removes.
    Choosing the post-processing again on test would score F = 1; fixed to validation's choice,
    each test clip has one hit and one false alarm: F = 2/3. The grid is the task's own
    (heareval's default grid has neither value)."""
    rng = np.random.default_rng(0)

    def clip(length_ms, blip):
        start = float(rng.uniform(200, 800))
        label = ["dog", "bell"][int(rng.integers(2))]
        blips = [("bell" if label == "dog" else "dog", start + length_ms + 400, start + length_ms + 700)] if blip else []
        return [(label, start, start + length_ms)], blips

    splits = {"train": [clip(float(rng.uniform(300, 2500)), False) for _ in range(16)],
              "valid": [clip(float(rng.uniform(500, 1000)), False) for _ in range(4)],
              "test": [clip(float(rng.uniform(1800, 2200)), True) for _ in range(4)]}
    d = tmp_path / "ev"
    d.mkdir()
    _planted_event_task(d, rng, splits, grid={"median_filter_ms": [100], "min_duration": [60, 1500]})
    _, (fold,) = run_linear(d, LinearConfig(epochs=15, lr=1e-2, device="cpu"), progress=False,
                            outputs_dir=tmp_path / "outputs")
    assert fold.postprocessing == {"median_filter_ms": 100, "min_duration": 60}
    assert fold.valid_score == pytest.approx(1.0)
    assert fold.test_scores["event_onset_200ms_fms"] == pytest.approx(2 / 3)
    # the events behind that score are stored with the per-clip outputs: one hit and one false
    # alarm per test clip, against the test split's own events
    stored = json.loads((tmp_path / "outputs" / "test_events.json").read_text())
    assert list(stored) == ["test"]
    assert stored["test"]["target"] == json.loads((d / "test.json").read_text())
    for name, target in stored["test"]["target"].items():
        predicted = stored["test"]["predicted"][name]
        assert len(predicted) == 2 and {e["label"] for e in predicted} == {"dog", "bell"}
        hit = next(e for e in predicted if e["label"] == target[0]["label"])
        assert abs(hit["start"] - target[0]["start"]) <= 100


def test_a_metric_without_maximize_is_maximised(planted_task, monkeypatch):
    """heareval's scores without a ``maximize`` attribute are higher-is-better."""
    calls = []

    class NoAttribute:
        def __init__(self, label_to_idx):
            pass

        def __call__(self, probs, y):
            split = "valid" if y[:, 0].all() else "test"
            n = sum(1 for s in calls if s == split)
            calls.append(split)
            return (VALID_CURVE if split == "valid" else TEST_CURVE)[n]

    monkeypatch.setattr(linear, "_heareval_scoring", lambda: {"scripted": NoAttribute})
    _, (fold,) = run_linear(planted_task[0], LinearConfig(epochs=len(VALID_CURVE), device="cpu"), progress=False)
    assert fold.best_epoch == 3 and fold.valid_score == pytest.approx(VALID_CURVE[3])


@pytest.mark.parametrize("module,helper", [("heareval.score", "_heareval_scoring"),
                                           ("heareval.predictions.task_predictions", "_event_postprocessing")])
def test_missing_heareval_is_an_error_that_says_how_to_install_it(monkeypatch, module, helper):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # makes `from module import ...` raise ImportError
    with pytest.raises(RuntimeError, match=r"cannot be imported .*run scripts/setup_env\.sh"):
        getattr(linear, helper)()


def _three_class_task(d, rng):
    labels = ["a", "b", "c"]
    (d / "task_metadata.json").write_text(json.dumps(dict(
        task_name="t", split_mode="trainvaltest", embedding_type="scene", prediction_type="multiclass",
        evaluation=["top1_acc"], splits=list(SPLITS))))
    pd.DataFrame({"idx": [0, 1, 2], "label": labels}).to_csv(d / "labelvocabulary.csv", index=False)
    clips = {}
    for split, n in (("train", 30), ("valid", 9), ("test", 9)):
        clips[split] = {}
        for i in range(n):
            k = i % 3
            clips[split][f"{split}{i}.wav"] = (np.eye(3)[k] * 2 + 0.1 * rng.normal(size=3), labels[k])
    return _write_task(d, clips)


def test_scene_outputs_name_their_clips_and_no_events_file(tmp_path):
    d = tmp_path / "task"
    d.mkdir()
    orders = _three_class_task(d, np.random.default_rng(0))
    run_linear(d, LinearConfig(epochs=3, device="cpu"), progress=False, outputs_dir=tmp_path / "out")
    from eval_suites.core.clip_outputs import load_outputs

    [fold] = load_outputs(tmp_path / "out").folds
    assert fold.ids.tolist() == orders["test"]
    truth = json.loads((d / "test.json").read_text())
    assert [["a", "b", "c"][int(k)] for k in fold.targets.argmax(1)] == [truth[n][0] for n in orders["test"]]
    assert not (tmp_path / "out" / "test_events.json").exists()  # events are for event tasks only


def test_a_cache_whose_rows_moved_is_refused_not_scored(tmp_path):
    """Test rows stored in another order than the cache's shuffle: the stored per-clip outputs
    would name the wrong clips, so the protocol stops (the labels of the rows give it away)."""
    d = tmp_path / "task"
    d.mkdir()
    _three_class_task(d, np.random.default_rng(0))
    rows, dim = json.loads((d / "test.embedding-dimensions.json").read_text())
    mm = np.memmap(d / "test.embeddings.npy", dtype=np.float32, mode="r+", shape=(rows, dim))
    mm[:] = mm[::-1].copy()
    mm.flush()
    del mm
    with open(d / "test.target-labels.pkl", "rb") as fh:
        labels = pickle.load(fh)
    with open(d / "test.target-labels.pkl", "wb") as fh:
        pickle.dump(labels[::-1], fh)
    with pytest.raises(ValueError, match="replayed clip order does not match the cached labels"):
        run_linear(d, LinearConfig(epochs=1, device="cpu"), progress=False, outputs_dir=tmp_path / "out")


@pytest.mark.parametrize("values", [[0.5, 0.7, 0.95], [0.25, 0.75], [0.4]])
def test_kfold_summary_is_the_mean_and_sample_std_of_the_folds(values):
    class Task:
        meta = {"evaluation": ["top1_acc", "mAP"]}

    folds = [linear.LinearFold(test_split=f"fold{i:02d}", best_epoch=0, valid_score=0.0,
                               test_scores={"top1_acc": v, "mAP": 1 - v}, postprocessing=None)
             for i, v in enumerate(values)]
    summary = linear.summarize(Task(), folds)
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    assert [m for m, *_ in summary] == ["top1_acc", "mAP"]
    assert summary[0] == ("top1_acc", pytest.approx(mean), pytest.approx(std) if std is not None else None, n)
    assert summary[1] == ("mAP", pytest.approx(1 - mean), pytest.approx(std) if std is not None else None, n)
    assert all(isinstance(x, float) for x in summary[0][1:3] if x is not None)


@pytest.mark.parametrize("cuda", [False, True])
def test_default_device_is_cuda_when_available_and_an_explicit_one_wins(tmp_path, monkeypatch, cuda):
    """`device: null` trains on CUDA when torch sees one, else on the CPU; a named device is used as
    given, and `progress` reaches every fold. (The folds themselves run on the CPU here.)"""
    d = tmp_path / "task"
    d.mkdir()
    _three_class_task(d, np.random.default_rng(0))
    seen, real = [], linear._train_fold

    def spy(task, split, cfg, device, progress):
        seen.append((device, progress))
        return real(task, split, cfg, torch.device("cpu"), False)

    monkeypatch.setattr(linear, "_train_fold", spy)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    run_linear(d, LinearConfig(epochs=1), progress=False)
    run_linear(d, LinearConfig(epochs=1, device="cpu"), progress=True)
    assert seen == [(torch.device("cuda" if cuda else "cpu"), False), (torch.device("cpu"), True)]


def test_a_clip_without_predicted_events_counts_its_events_as_misses(tmp_path):
    """The planted task plus a fifth test clip whose event (in test.json) leaves no trace in its
    frames: no event is predicted for it, and its one event is a miss. 8 hits, 1 miss, no false
    alarm: F = 2 * 8 / (2 * 8 + 1) = 16 / 17 (not 1, as it would be if the clip were dropped)."""
    d = tmp_path / "ev"
    d.mkdir()
    rng = np.random.default_rng(0)
    splits = _event_splits(rng)
    splits["test"].append(([], []))  # silent frames
    _planted_event_task(d, rng, splits)
    events = json.loads((d / "test.json").read_text())
    events["test4.wav"] = [{"label": "dog", "start": 500.0, "end": 1500.0}]
    (d / "test.json").write_text(json.dumps(events))
    _, (fold,) = run_linear(d, LinearConfig(epochs=15, lr=1e-2, device="cpu"), progress=False)
    assert fold.valid_score == pytest.approx(1.0)
    assert fold.test_scores["event_onset_200ms_fms"] == pytest.approx(16 / 17)


@pytest.mark.parametrize("min_durations", [[60, 1500], [1500, 60]])
def test_a_primary_error_rate_is_minimised_when_choosing_the_postprocessing(tmp_path, min_durations):
    """An event task whose first metric is an error rate: validation events last 500-1000 ms, so a
    1500 ms minimum duration deletes them all (segment error rate 1) and 60 ms is chosen, in either
    grid order."""
    rng = np.random.default_rng(1)

    def clip(lo, hi):
        start = float(rng.uniform(200, 800))
        return [(["dog", "bell"][int(rng.integers(2))], start, start + float(rng.uniform(lo, hi)))], []

    splits = {"train": [clip(300, 2500) for _ in range(16)], "valid": [clip(500, 1000) for _ in range(4)],
              "test": [clip(500, 1000) for _ in range(4)]}
    d = tmp_path / "ev"
    d.mkdir()
    _planted_event_task(d, rng, splits, grid={"median_filter_ms": [100], "min_duration": min_durations},
                        evaluation=("segment_1s_er", "event_onset_200ms_fms"))
    _, (fold,) = run_linear(d, LinearConfig(epochs=15, lr=1e-2, device="cpu"), progress=False)
    assert fold.postprocessing == {"median_filter_ms": 100, "min_duration": 60}
    assert fold.valid_score < 0.5 and fold.test_scores["segment_1s_er"] < 0.5
