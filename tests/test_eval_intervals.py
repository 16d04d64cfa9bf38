"""Bootstrap intervals (eval_suites.core.intervals) and per-clip outputs (eval_suites.core.clip_outputs):
against slow loop bootstraps that call heareval's / sklearn's own scorers on each resample,
analytic cases, and planted differences."""
from __future__ import annotations

import math
import warnings
import zlib

import numpy as np
import pytest
from heareval.score import available_scores
from sklearn.metrics import average_precision_score

from eval_suites.core.clip_outputs import event_counts, event_fold_outputs, load_outputs, save_outputs
from eval_suites.core.intervals import (BootstrapConfig, CellOutputs, FoldOutputs, bootstrap_cell, bootstrap_mean,
                                   difference_intervals, model_intervals, point_value)

LABELS = {"a": 0, "b": 1, "c": 2}


# ----------------------------------------------------------------------------- fixtures
def scene_fold(n: int, c: int, p_correct: float, rng: np.random.Generator, prefix: str = "clip") -> FoldOutputs:
    """Multiclass outputs whose argmax is right with probability ``p_correct``."""
    true = rng.integers(0, c, n)
    pred = np.where(rng.random(n) < p_correct, true, (true + rng.integers(1, c, n)) % c)
    scores = rng.random((n, c)) * 0.5
    scores[np.arange(n), pred] += 1.0
    targets = np.eye(c, dtype=np.uint8)[true]
    return FoldOutputs(ids=np.array([f"{prefix}{i}" for i in range(n)]), targets=targets, scores=scores)


def correct_only(correct: np.ndarray, ids: np.ndarray | None = None) -> FoldOutputs:
    """2-class outputs that are right exactly where ``correct`` is True."""
    n = len(correct)
    targets = np.zeros((n, 2), dtype=np.uint8)
    targets[:, 0] = 1
    scores = np.where(correct[:, None], [[1.0, 0.0]], [[0.0, 1.0]])
    return FoldOutputs(ids=np.array([f"clip{i}" for i in range(n)]) if ids is None else ids,
                       targets=targets, scores=scores)


def cell(*folds: FoldOutputs) -> CellOutputs:
    return CellOutputs(tuple(folds))


def random_events(n_files: int, rng: np.random.Generator, jitter_ms: float) -> tuple[dict, dict]:
    """(predicted, target) events of ``n_files`` files: targets at random onsets, predictions
    near them (some missed, some extra)."""
    predicted, target = {}, {}
    for i in range(n_files):
        name = f"file{i}.wav"
        ev = [{"label": str(rng.choice(list(LABELS))), "start": float(s), "end": float(s) + 300.0}
              for s in np.sort(rng.choice(np.arange(0, 9000, 500), rng.integers(0, 5), replace=False))]
        target[name] = ev
        pred = [dict(e, start=e["start"] + rng.normal(0, jitter_ms)) for e in ev if rng.random() < 0.8]
        pred += [{"label": "a", "start": float(rng.uniform(0, 9000)), "end": 9500.0}] * int(rng.random() < 0.3)
        predicted[name] = pred
    return predicted, target


# ----------------------------------------------------------------------------- slow references
def drawn_indices(seed: int, task: str, fold: int, m: int, n_boot: int) -> list[np.ndarray]:
    """The documented draw: resample b of (task, fold) is row b of
    default_rng([seed, crc32(task), fold, M]).integers(0, M, (n_boot, M)), drawn here one row at a time."""
    rng = np.random.default_rng([seed, zlib.crc32(task.encode()), fold, m])
    return [rng.integers(0, m, size=m) for _ in range(n_boot)]


def reference_scene(fold: FoldOutputs, metric: str, idx: np.ndarray) -> float:
    """heareval's scorer (sklearn for mAP) on the resampled clips."""
    fn = available_scores[metric](label_to_idx=LABELS if fold.targets.shape[1] == 3 else {"x": 0, "y": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: a class without positives
        if metric == "mAP":
            return float(average_precision_score(fold.targets[idx], fold.scores[idx], average="macro"))
        return float(fn(fold.scores[idx], fold.targets[idx]))


def reference_events(predicted: dict, target: dict, files: list[str], idx: np.ndarray, metric: str) -> float:
    """heareval's event F-measure on the resampled files (a file drawn twice enters twice)."""
    fn = available_scores[metric](label_to_idx=LABELS)
    pred = {f"{files[j]}#{k}": predicted[files[j]] for k, j in enumerate(idx)}
    targ = {f"{files[j]}#{k}": target[files[j]] for k, j in enumerate(idx)}
    return float(fn(pred, targ)[0][1])


def percentile(values: list[float], level: float) -> tuple[float, float]:
    return tuple(np.percentile(values, [50 * (1 - level), 50 * (1 + level)]))


# ----------------------------------------------------------------------------- against references
@pytest.mark.parametrize("metric", ["top1_acc", "chroma_acc", "mAP"])
def test_cell_interval_equals_a_loop_bootstrap_with_heareval_scores(metric):
    rng = np.random.default_rng(1)
    c = 3 if metric != "chroma_acc" else 14
    fold = scene_fold(60, c, 0.6, rng)
    if metric == "mAP":  # ties in scores, and rare classes that some resamples lack
        fold = FoldOutputs(fold.ids, np.eye(3, dtype=np.uint8)[rng.choice(3, 60, p=[0.9, 0.08, 0.02])],
                           np.round(fold.scores, 1))
    labels = {str(i): i for i in range(c)}
    cfg = BootstrapConfig(n_boot=200, level=0.9, seed=7)
    got = bootstrap_cell(cell(fold), metric, cfg, key="task_x")

    def ref(idx):
        if metric == "mAP":
            return reference_scene(fold, metric, idx)
        return float(available_scores[metric](label_to_idx=labels)(fold.scores[idx], fold.targets[idx]))

    values = [ref(idx) for idx in drawn_indices(7, "task_x", 0, 60, 200)]
    lo, hi = percentile(values, 0.9)
    assert got.low == pytest.approx(lo, abs=1e-12) and got.high == pytest.approx(hi, abs=1e-12)
    assert got.value == pytest.approx(ref(np.arange(60)), abs=1e-12)
    assert got.level == 0.9 and got.n_boot == 200 and got.runs == 1


@pytest.mark.slow  # make test-fast: over 1.5 s
def test_event_f_measure_from_per_file_counts_equals_heareval_on_resampled_files():
    rng = np.random.default_rng(2)
    predicted, target = random_events(25, rng, jitter_ms=120.0)
    metric = "event_onset_200ms_fms"
    fold = event_fold_outputs(predicted, target, [metric, "segment_1s_er"], LABELS)
    assert set(fold.counts) == {metric}  # the segment error rate is not resampled
    full = available_scores[metric](label_to_idx=LABELS)(predicted, target)[0][1]
    assert point_value(cell(fold), metric) == pytest.approx(full, abs=1e-9)

    cfg = BootstrapConfig(n_boot=40, seed=3)
    got = bootstrap_cell(cell(fold), metric, cfg, key="events")
    files = fold.ids.tolist()
    values = [reference_events(predicted, target, files, idx, metric)
              for idx in drawn_indices(3, "events", 0, len(files), 40)]
    lo, hi = percentile(values, 0.95)
    assert got.low == pytest.approx(lo, abs=1e-9) and got.high == pytest.approx(hi, abs=1e-9)


def test_k_fold_cell_resamples_each_fold_and_averages():
    rng = np.random.default_rng(4)
    folds = [scene_fold(30, 3, 0.5, rng, prefix=f"f{i}_") for i in range(3)]
    cfg = BootstrapConfig(n_boot=100, seed=0)
    got = bootstrap_cell(cell(*folds), "top1_acc", cfg, key="kfold")
    per_fold = [[reference_scene(f, "top1_acc", idx) for idx in drawn_indices(0, "kfold", i, 30, 100)]
                for i, f in enumerate(folds)]
    lo, hi = percentile(list(np.mean(per_fold, axis=0)), 0.95)
    assert (got.low, got.high) == pytest.approx((lo, hi), abs=1e-12)


def test_mean_over_tasks_resamples_within_each_task():
    rng = np.random.default_rng(5)
    cells = {"t1": cell(scene_fold(40, 3, 0.8, rng)), "t2": cell(scene_fold(70, 3, 0.4, rng))}
    cfg = BootstrapConfig(n_boot=150, seed=1)
    got = bootstrap_mean(cells, {"t1": "top1_acc", "t2": "top1_acc"}, cfg)
    per_task = [[reference_scene(c.folds[0], "top1_acc", idx)
                 for idx in drawn_indices(1, t, 0, len(c.folds[0].ids), 150)] for t, c in cells.items()]
    lo, hi = percentile(list(np.mean(per_task, axis=0)), 0.95)
    assert (got.low, got.high) == pytest.approx((lo, hi), abs=1e-12)
    assert got.value == pytest.approx(np.mean([point_value(c, "top1_acc") for c in cells.values()]))


def test_hierarchical_interval_equals_a_loop_over_runs_then_clips():
    rng = np.random.default_rng(6)
    runs = [[cell(scene_fold(50, 3, p, rng))] for p in (0.5, 0.7, 0.9)]  # one repeat per run
    cfg = BootstrapConfig(n_boot=120, seed=2)
    got = model_intervals({"t": runs}, {"t": "top1_acc"}, cfg)["t"]
    run_draws = np.random.default_rng([2, zlib.crc32(b"runs"), 0]).integers(0, 3, size=(120, 3))
    values = []
    for b, idx in enumerate(drawn_indices(2, "t", 0, 50, 120)):
        values.append(np.mean([reference_scene(runs[r][0].folds[0], "top1_acc", idx) for r in run_draws[b]]))
    assert (got.low, got.high) == pytest.approx(percentile(values, 0.95), abs=1e-12)
    assert got.runs == 3


# ----------------------------------------------------------------------------- analytic cases
def test_identical_models_differ_by_exactly_zero():
    rng = np.random.default_rng(7)
    a = {"t1": [[cell(scene_fold(80, 3, 0.6, rng))]], "t2": [[cell(scene_fold(50, 3, 0.7, rng))]]}
    diff = difference_intervals(a, a, {"t1": "top1_acc", "t2": "top1_acc"})
    for k in ("t1", "t2", "mean"):
        assert (diff[k].value, diff[k].low, diff[k].high) == (0.0, 0.0, 0.0)


def test_all_correct_gives_one_one_and_all_wrong_zero_zero():
    for value in (True, False):
        iv = bootstrap_cell(cell(correct_only(np.full(37, value))), "top1_acc", key="t")
        assert (iv.value, iv.low, iv.high) == (float(value),) * 3


def test_accuracy_interval_matches_the_binomial_standard_error_for_large_n():
    rng = np.random.default_rng(8)
    n, p = 5000, 0.7
    correct = rng.random(n) < p
    iv = bootstrap_cell(cell(correct_only(correct)), "top1_acc", BootstrapConfig(n_boot=2000), key="t")
    phat = correct.mean()
    half = 1.959964 * math.sqrt(phat * (1 - phat) / n)
    assert iv.value == pytest.approx(phat)
    assert iv.high - iv.low == pytest.approx(2 * half, rel=0.08)
    assert (iv.low + iv.high) / 2 == pytest.approx(phat, abs=0.15 * half)


def test_identical_runs_give_the_clip_interval_and_disagreeing_runs_widen_it():
    rng = np.random.default_rng(9)
    one = cell(scene_fold(400, 3, 0.7, rng))
    single = model_intervals({"t": [[one]]}, {"t": "top1_acc"})["t"]
    same = model_intervals({"t": [[one], [one], [one]]}, {"t": "top1_acc"})["t"]
    assert (same.low, same.high) == pytest.approx((single.low, single.high), abs=1e-12)
    # three runs that disagree: the run-level spread adds to the clip-level one
    spread = [[cell(scene_fold(400, 3, p, np.random.default_rng(10)))] for p in (0.55, 0.7, 0.85)]
    runs = model_intervals({"t": spread}, {"t": "top1_acc"})["t"]
    middle = model_intervals({"t": [spread[1]]}, {"t": "top1_acc"})["t"]
    assert runs.high - runs.low > 1.5 * (middle.high - middle.low)


def test_probe_repeats_are_averaged_not_resampled():
    rng = np.random.default_rng(11)
    r1, r2 = cell(scene_fold(100, 3, 0.6, rng)), cell(scene_fold(100, 3, 0.8, rng))
    both = model_intervals({"t": [[r1, r2]]}, {"t": "top1_acc"})["t"]
    assert both.value == pytest.approx((point_value(r1, "top1_acc") + point_value(r2, "top1_acc")) / 2)
    assert both.runs == 1


# ----------------------------------------------------------------------------- differences
def test_a_planted_difference_is_detected_and_a_null_one_is_not():
    rng = np.random.default_rng(12)
    n = 1500
    base = rng.random(n) < 0.7
    better = base | (rng.random(n) < 0.35)  # right wherever base is, and on about a third of its misses
    shuffled = base[rng.permutation(n)]  # the same accuracy, errors on other clips
    metrics = {"t": "top1_acc"}
    planted = difference_intervals({"t": [[cell(correct_only(better))]]}, {"t": [[cell(correct_only(base))]]},
                                   metrics)["t"]
    assert planted.value == pytest.approx(better.mean() - base.mean())
    assert planted.excludes(0.0) and planted.low > 0
    null = difference_intervals({"t": [[cell(correct_only(shuffled))]]}, {"t": [[cell(correct_only(base))]]},
                                metrics)["t"]
    assert null.value == pytest.approx(0.0) and not null.excludes(0.0)


def test_pairing_matches_clips_by_id_not_by_position():
    rng = np.random.default_rng(13)
    a = scene_fold(200, 3, 0.8, rng)
    b = scene_fold(200, 3, 0.6, rng)
    order = rng.permutation(200)
    b_shuffled = b.take(order)
    metrics = {"t": "top1_acc"}
    d1 = difference_intervals({"t": [[cell(a)]]}, {"t": [[cell(b)]]}, metrics)["t"]
    d2 = difference_intervals({"t": [[cell(a)]]}, {"t": [[cell(b_shuffled)]]}, metrics)["t"]
    assert (d1.value, d1.low, d1.high) == pytest.approx((d2.value, d2.low, d2.high), abs=1e-12)
    other = FoldOutputs(np.array([f"other{i}" for i in range(200)]), b.targets, b.scores)
    with pytest.raises(ValueError, match="not on the same test clips"):
        difference_intervals({"t": [[cell(a)]]}, {"t": [[cell(other)]]}, metrics)


def test_paired_difference_equals_a_loop_with_shared_resamples_and_mean_over_tasks():
    rng = np.random.default_rng(14)
    a = {t: [[cell(scene_fold(n, 3, 0.7, rng))]] for t, n in (("t1", 60), ("t2", 90))}
    b = {t: [[cell(scene_fold(n, 3, 0.6, rng))]] for t, n in (("t1", 60), ("t2", 90))}
    for t in b:  # the same clips: b's ids are a's
        f = b[t][0][0].folds[0]
        b[t] = [[cell(FoldOutputs(a[t][0][0].folds[0].ids, f.targets, f.scores))]]
    cfg = BootstrapConfig(n_boot=100, seed=5)
    metrics = {"t1": "top1_acc", "t2": "top1_acc"}
    got = difference_intervals(a, b, metrics, cfg)
    per_task = {}
    for t in a:
        fa, fb = a[t][0][0].folds[0], b[t][0][0].folds[0]
        per_task[t] = [reference_scene(fa, "top1_acc", idx) - reference_scene(fb, "top1_acc", idx)
                       for idx in drawn_indices(5, t, 0, len(fa.ids), 100)]
        assert (got[t].low, got[t].high) == pytest.approx(percentile(per_task[t], 0.95), abs=1e-12)
    mean = list(np.mean([per_task["t1"], per_task["t2"]], axis=0))
    assert (got["mean"].low, got["mean"].high) == pytest.approx(percentile(mean, 0.95), abs=1e-12)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [({"n_boot": 1}, "n_boot"), ({"n_boot": 10.0}, "n_boot"),
                                           ({"level": 1.0}, "level"), ({"level": 0}, "level"),
                                           ({"seed": -1}, "seed"), ({"seed": True}, "seed")])
def test_bootstrap_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BootstrapConfig(**kwargs)


def test_bad_outputs_and_metrics_are_refused():
    rng = np.random.default_rng(15)
    fold = scene_fold(10, 3, 0.5, rng)
    with pytest.raises(ValueError, match="repeat"):
        FoldOutputs(np.array(["a"] * 10), fold.targets, fold.scores)
    with pytest.raises(ValueError, match="shape"):
        FoldOutputs(fold.ids, fold.targets[:5], fold.scores[:5])
    with pytest.raises(ValueError, match="cannot be recomputed"):
        bootstrap_cell(cell(fold), "segment_1s_er")
    with pytest.raises(ValueError, match="same runs"):
        model_intervals({"t1": [[cell(fold)]], "t2": [[cell(fold)], [cell(fold)]]},
                        {"t1": "top1_acc", "t2": "top1_acc"})


# ----------------------------------------------------------------------------- storage
def test_outputs_round_trip_without_pickle(tmp_path):
    rng = np.random.default_rng(16)
    scene = {"fold00": scene_fold(12, 3, 0.5, rng, "a"), "fold01": scene_fold(9, 3, 0.5, rng, "b")}
    save_outputs(tmp_path / "scene", scene)
    back = load_outputs(tmp_path / "scene")  # np.load(allow_pickle=False) inside
    for f, g in zip(scene.values(), back.folds):
        assert f.ids.tolist() == g.ids.tolist()
        np.testing.assert_array_equal(f.targets, g.targets)
        np.testing.assert_allclose(f.scores, g.scores, rtol=1e-6)
    predicted, target = random_events(6, rng, 50.0)
    fold = event_fold_outputs(predicted, target, ["event_onset_200ms_fms"], LABELS)
    save_outputs(tmp_path / "events", {"test": fold}, {"test": {"predicted": predicted, "target": target}})
    back = load_outputs(tmp_path / "events").folds[0]
    np.testing.assert_array_equal(back.counts["event_onset_200ms_fms"], fold.counts["event_onset_200ms_fms"])
    assert (tmp_path / "events" / "test_events.json").is_file()
    assert load_outputs(tmp_path / "none") is None


def test_event_counts_are_per_file_sed_eval_counts():
    predicted = {"f1": [{"label": "a", "start": 1000.0, "end": 1500.0}],  # hit (onset within 200 ms)
                 "f2": [{"label": "a", "start": 2000.0, "end": 2500.0}]}  # false alarm, and a miss
    target = {"f1": [{"label": "a", "start": 1100.0, "end": 1400.0}],
              "f2": [{"label": "b", "start": 2000.0, "end": 2500.0}]}
    files, counts = event_counts(predicted, target, "event_onset_200ms_fms", LABELS)
    assert files == ["f1", "f2"]
    np.testing.assert_array_equal(counts, [[1, 1, 1], [0, 1, 1]])


# ----------------------------------------------------------------------------- the report
def test_report_shows_intervals_and_n_a_for_results_without_outputs(tmp_path):
    import pandas as pd

    from eval_suites.core.report import write_report
    from eval_suites.core.results import CellResult, MetricScore, cell_dir, save_cell

    rng = np.random.default_rng(17)
    folds = {("new", "t1"): scene_fold(300, 3, 0.8, rng), ("new", "t2"): scene_fold(200, 3, 0.6, rng),
             ("old", "t1"): scene_fold(300, 3, 0.7, rng), ("old", "t2"): scene_fold(200, 3, 0.7, rng)}
    for (model, task), fold in folds.items():
        value = point_value(cell(fold), "top1_acc")
        save_cell(tmp_path, CellResult(model, task, "demo", "linear", "ok", [MetricScore("top1_acc", value)]))
        if model == "new":  # "old" stands for results written before per-clip outputs were kept
            save_outputs(cell_dir(tmp_path, model, task, "linear"), {"test": fold})
    cfg = BootstrapConfig(n_boot=200)
    paths = write_report(tmp_path, bootstrap=cfg)
    df = pd.read_csv(paths["csv"]).set_index(["model", "task"])
    for task in ("t1", "t2"):
        iv = bootstrap_cell(cell(folds["new", task]), "top1_acc", cfg, key=task)
        assert (df.loc[("new", task), "ci_low"], df.loc[("new", task), "ci_high"]) == pytest.approx((iv.low, iv.high))
        assert math.isnan(df.loc[("old", task), "ci_low"]) and math.isnan(df.loc[("old", task), "ci_high"])
    md = paths["markdown"].read_text()
    mean = bootstrap_mean({t: cell(folds["new", t]) for t in ("t1", "t2")}, {"t1": "top1_acc", "t2": "top1_acc"}, cfg)
    new_row = next(line for line in md.splitlines() if line.startswith("| new |"))
    old_row = next(line for line in md.splitlines() if line.startswith("| old |"))
    assert new_row.endswith(f"| {mean.value:.3f} [{mean.low:.3f}, {mean.high:.3f}] |")
    assert old_row.count("[n/a]") == 3 and "[0." not in old_row
    assert paths["plot"].stat().st_size > 5000
