"""References in the report: the chance level of a task (checked against scikit-learn on a
constant prediction) and reference models, in the table and the plot."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score

from eval_suites.core.chance import chance_level
from eval_suites.core.clip_outputs import save_outputs
from eval_suites.core.intervals import CellOutputs, FoldOutputs
from eval_suites.core.report import REFERENCE_KEY, write_report
from eval_suites.core.results import CellResult, MetricScore, cell_dir, save_cell


def _fold(labels: list[int], n_classes: int, rng) -> FoldOutputs:
    targets = np.eye(n_classes, dtype=np.uint8)[labels]  # (M, C)
    return FoldOutputs(np.array([f"c{i}" for i in range(len(labels))]), targets,
                       rng.random(targets.shape).astype(np.float32))


def test_chance_of_accuracy_is_the_majority_rate_of_the_test_labels():
    rng = np.random.default_rng(0)
    labels = [2] * 5 + [0] * 3 + [1] * 2
    level = chance_level(CellOutputs((_fold(labels, 3, rng),)), "top1_acc")
    assert level == pytest.approx(accuracy_score(labels, [2] * len(labels))) == pytest.approx(0.5)
    # k-fold: the mean over folds of each fold's own majority rate
    folds = (_fold([0, 0, 0, 1], 2, rng), _fold([1, 1, 0, 0, 0, 1, 1, 1], 2, rng))
    assert chance_level(CellOutputs(folds), "top1_acc") == pytest.approx((0.75 + 5 / 8) / 2)


def test_chance_of_map_is_the_mean_label_frequency():
    rng = np.random.default_rng(1)
    targets = (rng.random((40, 4)) < [0.1, 0.3, 0.5, 0.8]).astype(np.uint8)
    fold = FoldOutputs(np.array([f"c{i}" for i in range(40)]), targets, rng.random((40, 4)).astype(np.float32))
    constant = np.tile(targets.mean(0), (40, 1))
    expected = np.mean([average_precision_score(targets[:, c], constant[:, c]) for c in range(4)])
    assert chance_level(CellOutputs((fold,)), "mAP") == pytest.approx(expected) == pytest.approx(targets.mean())


def test_no_chance_level_without_targets_or_for_event_metrics():
    rng = np.random.default_rng(2)
    assert chance_level(None, "top1_acc") is None
    assert chance_level(CellOutputs((_fold([0, 1], 2, rng),)), "event_onset_200ms_fms") is None
    events = FoldOutputs(np.array(["a", "b"]), counts={"event_onset_200ms_fms": np.ones((2, 3), dtype=np.int64)})
    assert chance_level(CellOutputs((events,)), "event_onset_200ms_fms") is None


def _cell(out, model, task, value, labels, reference=None):
    rng = np.random.default_rng(len(model) + len(task))
    r = CellResult(model=model, task=task, suite="demo", protocol="linear", status="ok",
                   metrics=[MetricScore(metric="top1_acc", value=value)],
                   details={REFERENCE_KEY: reference} if reference else {})
    save_cell(out, r)
    save_outputs(cell_dir(out, model, task, "linear"), {"test": _fold(labels, 3, rng)})


def test_report_shows_chance_and_reference_models(tmp_path):
    """A model and a reference model on two tasks: the table lists the model first, the
    reference after it and described, and a chance row with each task's majority rate; the
    plot is drawn (a PNG; looked at by eye in the review, see docs/eval.md)."""
    _cell(tmp_path, "zeta", "a", 0.9, [0, 0, 0, 1, 2, 1, 0, 0])  # majority 5/8
    _cell(tmp_path, "zeta", "b", 0.8, [1, 2, 2, 2])  # majority 3/4
    _cell(tmp_path, "alpha_ref", "a", 0.7, [0, 0, 0, 1, 2, 1, 0, 0], reference="no learning")
    _cell(tmp_path, "alpha_ref", "b", 0.6, [1, 2, 2, 2], reference="no learning")
    paths = write_report(tmp_path)
    md = paths["markdown"].read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows] == ["model", "zeta", "alpha_ref", "*chance*"]
    chance = rows[-1].split("|")
    assert chance[2].strip() == "0.625" and chance[3].strip() == "0.750" and chance[4].strip() == "0.688"
    assert "`alpha_ref`: no learning" in md
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_study_chance_levels_come_from_the_stored_outputs(tmp_path):
    """The study's table and plot take each task's chance level from its cells' outputs."""
    import pandas as pd

    from studies.mini_lape import chance_levels, markdown_table, plot_table

    _cell(tmp_path, "m", "a", 0.9, [0, 0, 0, 1, 2, 1, 0, 0])
    _cell(tmp_path, "m", "b", 0.8, [1, 2, 2, 2])
    long = pd.DataFrame([dict(model="m", task=t, metric="top1_acc", status="ok",
                              cell=str(cell_dir(tmp_path, "m", t, "linear"))) for t in ("a", "b")])
    levels = chance_levels(long, ["a", "b"])
    assert levels == pytest.approx({"a": 0.625, "b": 0.75, "mean": 0.6875})
    assert chance_levels(long, ["a", "b", "c"]).keys() == {"a", "b"}  # no mean over a partial set
    table = pd.DataFrame([dict(model="m", task=t, mean=v, ci_low=v - 0.1, ci_high=v + 0.1, runs=1)
                          for t, v in (("a", 0.9), ("b", 0.8), ("mean", 0.85))])
    assert markdown_table(table, ["m"], ["a", "b"], {}, levels).splitlines()[-1].startswith(
        "| | *chance* | 0.625 | 0.750 | 0.688 |")
    assert plot_table(table, [("all", ["m"])], ["a", "b"], tmp_path / "p.png", levels).stat().st_size > 5000


def test_a_reference_says_what_it_is_in_the_plot_legend():
    from eval_suites.core.report import legend_label

    refs = {"random_init": "no training: the default architecture at random init", "plain": "a baseline"}
    assert legend_label("random_init", refs) == "random_init (reference: no training)"
    assert legend_label("plain", refs) == "plain (reference)"
    assert legend_label("slicer", refs) == "slicer"
