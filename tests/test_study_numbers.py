"""The numbers the studies report, pinned on planted inputs whose right answer is known.

Each test feeds a study function a small planted input (cells with per-clip outputs, fake
scores, embeddings) and checks the number it reports against the answer that follows from
the plant, not against a copy of the code. Each was checked by planting the bug it names in
the code and seeing it fail (docs/testing.md, "Planted bugs"). A few seconds in all: no
training, no embedding, every evaluation replaced by planted results.
"""
from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eval_suites.core.clip_outputs import save_outputs
from eval_suites.core.intervals import BootstrapConfig, FoldOutputs
from eval_suites.core.manifest import ModelSpec, TaskSpec
from eval_suites.core.results import CellResult, MetricScore, cell_dir, save_cell

N_CLIPS = 40


def _outputs(n_correct: int, n: int = N_CLIPS) -> FoldOutputs:
    """Two-class outputs on `n` clips, the first `n_correct` predicted right: top1_acc = n_correct / n.
    Every model gets the same clips and labels, so differences are paired clip by clip."""
    truth = np.arange(n) % 2
    pred = np.where(np.arange(n) < n_correct, truth, 1 - truth)
    return FoldOutputs(np.array([f"clip{i}" for i in range(n)]), np.eye(2, dtype=np.uint8)[truth],
                       np.eye(2, dtype=np.float32)[pred])


def _cell(folder: Path, model: str, task: str, protocol: str, value: float, details: dict | None = None,
          outputs: FoldOutputs | None = None, metric: str = "top1_acc") -> None:
    save_cell(folder, CellResult(model=model, task=task, suite="study", protocol=protocol, status="ok",
                                 metrics=[MetricScore(metric=metric, value=value)], details=details or {}))
    if outputs is not None:
        save_outputs(cell_dir(folder, model, task, protocol), {"test": outputs})


# ----------------------------------------------------------------------------- studies.learning_curves
def test_learning_curve_report_differences_keep_their_sign_and_interval(tmp_path):
    """Planted: on every test clip SLICER is right where random init is, and on 19 of 40 more
    (probe seed 0: 36/40 right, seed 1: 34/40; random init 16/40 at both seeds; BYOL-A 24/40).
    Expects each probe seed's cells read from its own folder, "model minus random_init" =
    +0.475 for SLICER and +0.2 for BYOL-A, "model minus slicer" = -0.275 for BYOL-A, each inside
    its 95 % interval, which excludes 0 on the right side."""
    from studies import learning_curves as lc

    right = {("slicer", 0): 36, ("slicer", 1): 34, ("random_init", 0): 16, ("random_init", 1): 16,
             ("byol_a", 0): 24, ("byol_a", 1): 24}
    tasks, order = ["t1", "t2"], ["slicer", "byol_a", "random_init"]
    for (model, seed), n in right.items():
        for task in tasks:
            _cell(tmp_path / "final" / f"seed{seed}", model, task, "linear", n / N_CLIPS, outputs=_outputs(n))
    long = lc.final_scores(tmp_path, order, tasks, [0, 1], {})
    got = long.set_index(["model", "task", "seed"]).value
    for (model, seed), n in right.items():  # a seed-1 row holds the seed-1 cell
        assert got[model, "t1", seed] == pytest.approx(n / N_CLIPS)

    lc._differences_text(tmp_path, long, order, tasks, "linear")
    expected = {("random_init", "slicer"): 0.475, ("random_init", "byol_a"): 0.2, ("slicer", "byol_a"): -0.275,
                ("slicer", "random_init"): -0.475}
    for (ref, model), diff in expected.items():
        d = pd.read_csv(tmp_path / f"final_differences_{ref}.csv").set_index(["model", "task"])
        for task in tasks + ["mean"]:
            row = d.loc[(model, task)]
            assert row["diff"] == pytest.approx(diff), (ref, model, task)
            assert row.ci_low <= row["diff"] <= row.ci_high, (ref, model, task, row.to_dict())
            assert (row.ci_low > 0) if diff > 0 else (row.ci_high < 0), (ref, model, task, row.to_dict())
            assert row.excludes_zero


def test_a_learning_curve_point_is_its_validation_score_not_test(tmp_path):
    """Planted: a curve point's cells score 0.9 on test and 0.2 / 0.4 on the validation of two
    folds (linear) or 0.5 (kNN). Expects the curve to read 0.3 and 0.5, the validation scores;
    final records are no curve points."""
    from studies import learning_curves as lc

    name = "slicer_step00600"
    for task in ("t1", "t2"):
        _cell(tmp_path / "curve", name, task, "linear", 0.9,
              {"folds": [{"valid_score": 0.2, "test_scores": {"top1_acc": 0.9}},
                         {"valid_score": 0.4, "test_scores": {"top1_acc": 0.9}}]})
        _cell(tmp_path / "curve", name, task, "knn", 0.9,
              {"folds": [{"valid_score": 0.5, "best_k": 3, "test_scores": {"top1_acc": 0.9}}]})
    lc.save_point(tmp_path, f"curve:{name}", {"group": "slicer", "step": 600})
    lc.save_point(tmp_path, "final:slicer", {"step": 600})
    points = lc.read_points(tmp_path, ["t1", "t2"])
    assert len(points) == 4 and set(points.model) == {name}
    assert set(points.group) == {"slicer"} and set(points.step) == {600}
    by = points.set_index(["task", "protocol"]).valid
    for task in ("t1", "t2"):
        assert by[task, "linear"] == pytest.approx(0.3) and by[task, "knn"] == pytest.approx(0.5)


def test_each_final_probe_seed_is_scored_at_that_seed(tmp_path, monkeypatch):
    """run_manifest replaced by a recorder whose cells score 0.5 + 0.1 x the probe seed it was
    given. Expects score_final's seed-s folder scored by the linear probe at seed s (0, 1, 2;
    all at seed 0 was a planted bug), read back by final_scores as seed s; heareval once; the
    curve's probes (linear, kNN) at seed 0."""
    import eval_suites.core.runner as runner
    from studies import learning_curves as lc

    manifest = tmp_path / "m.yaml"
    manifest.write_text("models: [{name: x, module: hear_slicer}]\ntasks: [t1, t2]\n"
                        "protocols: {linear: {}, knn: {}, heareval: {}}\n")
    monkeypatch.setitem(lc.MANIFEST, "path", manifest)
    monkeypatch.setitem(lc.TASKS, "names", None)
    calls = []

    def recorder(m, out_dir, progress=True, **kw):
        seed = m.linear.seed
        calls.append((Path(out_dir).relative_to(tmp_path).as_posix(), {p for t in m.tasks for p in t.protocols}, seed))
        for model in m.models:
            for task in m.tasks:
                for protocol in task.protocols:
                    _cell(out_dir, model.name, task.name, protocol, 0.5 + 0.1 * seed, {"probe_seed": seed})
        return []

    monkeypatch.setattr(runner, "run_manifest", recorder)
    spec = ModelSpec(name="m", module="hear_slicer")
    lc.score_final(spec, tmp_path / "tasks", tmp_path, tmp_path / "cache", [0, 1, 2], heareval=True)
    linear = [c for c in calls if c[1] == {"linear"}]
    assert linear == [(f"final/seed{s}", {"linear"}, s) for s in (0, 1, 2)]
    assert [c[:2] for c in calls if c not in linear] == [("final/heareval", {"heareval"})]
    long = lc.final_scores(tmp_path, ["m"], ["t1", "t2"], [0, 1, 2], {})
    assert len(long) == 6 and (long.status == "ok").all()
    assert long.value.tolist() == pytest.approx([0.5 + 0.1 * s for s in long.seed])

    calls.clear()
    lc.score_validation(spec, tmp_path / "tasks", tmp_path, tmp_path / "cache")
    assert calls == [("curve", {"linear", "knn"}, 0)]


# ----------------------------------------------------------------------------- studies.choose_default
def test_default_choice_weighs_suites_equally_and_takes_random_init_from_the_choice(tmp_path, monkeypatch, capsys):
    """Scoring replaced by planted scores. Suite 'one' has 1 task (validation: a 0.9, b 0.5),
    suite 'two' 3 tasks (a 0.4, b 0.6 on each); on test b leads everywhere (0.9 vs 0.1).
    Each suite weighing the same, a leads (0.65 vs 0.55); weighed by cell count, b would
    (0.575 vs 0.525); by test, b. Expects a chosen, its validation mean 0.650 in the table,
    and the random-init reference built from a's checkpoint (b is listed first) with
    random_init=True, scored in both suites."""
    from studies import choose_default as cd

    n_tasks = {"one": 1, "two": 3}
    valid = {("one", "a"): 0.9, ("one", "b"): 0.5, ("two", "a"): 0.4, ("two", "b"): 0.6}
    scored = []

    def planted(models, suite, args):
        name = suite[0]
        scored.append((name, models))
        rows = [dict(model=m.name, task=f"{name}_t{i}", seed=seed, metric="top1_acc",
                     value=0.1 if m.name == "a" else 0.9, valid=valid.get((name, m.name), 0.3), status="ok",
                     error="", cell="", suite=name)
                for m in models for i in range(n_tasks[name]) for seed in args.seeds]
        return pd.DataFrame(rows)

    monkeypatch.setattr(cd, "_score_suite", planted)
    args = argparse.Namespace(candidates=[("b", tmp_path / "b.pt"), ("a", tmp_path / "a.pt")],
                              suites=[("one", "tiny", tmp_path / "d"), ("two", "tiny", tmp_path / "d")],
                              seeds=[0, 1], out=tmp_path / "out", no_reference=False, no_progress=True, tasks=None)
    assert cd.choose(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "chosen: a"
    assert "| a (chosen) | 0.650 | 0.100 |" in (tmp_path / "out" / "choice.md").read_text()
    refs = [(suite, m) for suite, models in scored for m in models if m.name == cd.REFERENCE]
    assert [suite for suite, _ in refs] == ["one", "two"]
    for _, ref in refs:
        assert ref.checkpoint == tmp_path / "a.pt" and ref.options == {"random_init": True}
        assert ref.module == "hear_slicer"


# ----------------------------------------------------------------------------- studies.geometry
def _write_split(folder: Path, split: str, x: np.ndarray, labels: list[str]) -> None:
    """One split of a cached task, as eval_suites.core.embeddings writes it (raw float32 rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    x.astype(np.float32).tofile(folder / f"{split}.embeddings.npy")
    (folder / f"{split}.embedding-dimensions.json").write_text(json.dumps(list(x.shape)))
    (folder / f"{split}.target-labels.pkl").write_bytes(pickle.dumps([[lab] for lab in labels]))


def test_geometry_is_measured_on_the_validation_split(tmp_path, monkeypatch):
    """A cached task whose validation embeddings are collapsed onto one direction and whose
    test embeddings are spread over 16; the cache lookup returns it. Expects every measure
    equal to geometry() of the validation split (effective rank below 2), not of test."""
    import eval_suites.core.embeddings as embeddings
    from studies import geometry as geo

    rng = np.random.default_rng(0)
    labels = [str(i % 3) for i in range(30)]
    valid = np.outer(rng.normal(size=30), rng.normal(size=16)) + 1e-3 * rng.normal(size=(30, 16))
    test = rng.normal(size=(30, 16))
    folder = tmp_path / "cache" / "entry"
    _write_split(folder, "valid", valid, labels)
    _write_split(folder, "test", test, labels)
    monkeypatch.setattr(embeddings, "ensure_embeddings", lambda spec, task_dir, cache, get_model, progress=True: folder)
    task = TaskSpec(name="t", path=tmp_path / "task", suite="study", protocols=("linear",))
    df = geo.measure([(ModelSpec(name="m", module="hear_slicer"), "slicer", 600)], [task], tmp_path / "cache", False)
    row = df.iloc[0]
    want, other = geo.geometry(valid.astype(np.float32), labels), geo.geometry(test.astype(np.float32), labels)
    assert want["effective_rank"] < 2 < 10 < other["effective_rank"]  # the plant tells the splits apart
    for metric in geo.METRICS:
        assert row[metric] == pytest.approx(want[metric], rel=1e-9), metric
    assert (row.model, row.group, row.step, row.task) == ("m", "slicer", 600, "t")


# ----------------------------------------------------------------------------- chance levels in the reports
def _multilabel() -> FoldOutputs:
    """8 clips, 3 labels in 6, 4 and 2 clips: mAP's chance is the mean frequency 0.5; the
    majority label (0) is right on 6 of 8 clips (0.75, what an accuracy's chance would say)."""
    targets = np.zeros((8, 3), dtype=np.uint8)
    targets[:6, 0] = 1
    targets[2:6, 1] = 1
    targets[6:, 2] = 1
    return FoldOutputs(np.array([f"c{i}" for i in range(8)]), targets,
                       np.random.default_rng(0).random((8, 3)).astype(np.float32))


def test_chance_of_an_map_task_in_both_reports_is_the_mean_label_frequency(tmp_path):
    """A model on an accuracy task (labels 0 0 0 1 2 1 0 0: majority 5/8) and an mAP task
    (label frequencies 0.75, 0.5, 0.25). Expects the chance row of `eval_suites report` and
    of the study's table to read 0.625 and 0.500 (0.750 would be the majority rate used for
    the mAP task), and the mean 0.5625."""
    from eval_suites.core.report import write_report
    from studies.mini_lape import chance_levels, markdown_table

    rng = np.random.default_rng(1)
    labels = [0, 0, 0, 1, 2, 1, 0, 0]
    acc = FoldOutputs(np.array([f"c{i}" for i in range(8)]), np.eye(3, dtype=np.uint8)[labels],
                      rng.random((8, 3)).astype(np.float32))
    _cell(tmp_path, "m", "acc", "linear", 0.9, outputs=acc)
    _cell(tmp_path, "m", "tags", "linear", 0.8, outputs=_multilabel(), metric="mAP")
    md = write_report(tmp_path, plot=False)["markdown"].read_text()
    chance = next(line for line in md.splitlines() if line.startswith("| *chance*"))
    assert [c.strip() for c in chance.split("|")[2:5]] == ["0.625", "0.500", "0.562"], chance

    long = pd.DataFrame([dict(model="m", task=t, metric=metric, status="ok", cell=str(cell_dir(tmp_path, "m", t, "linear")))
                         for t, metric in (("acc", "top1_acc"), ("tags", "mAP"))])
    levels = chance_levels(long, ["acc", "tags"])
    assert levels == pytest.approx({"acc": 0.625, "tags": 0.5, "mean": 0.5625})
    table = pd.DataFrame([dict(model="m", task=t, mean=v, ci_low=v, ci_high=v) for t, v in
                          (("acc", 0.9), ("tags", 0.8), ("mean", 0.85))])
    assert markdown_table(table, ["m"], ["acc", "tags"], {}, levels).splitlines()[-1].startswith(
        "| | *chance* | 0.625 | 0.500 | 0.562 |")


# ----------------------------------------------------------------------------- the study aggregate
def test_study_aggregate_groups_the_runs_of_a_method_and_nothing_else(tmp_path):
    """Two methods planned with pretraining seeds 0, 1 and 2 (plan_runs names the seed-s runs
    `<method>_seed<s>`, in the method's group) and probe seeds 0, 1; per-clip outputs planted
    so that each (run, probe seed) has its own accuracy. Expects one row per method and task
    (never per run), each the mean, sample std and count of that method's 6 (run, probe seed)
    scores; the mean row over the 6 per-(run, probe seed) means; `runs` 3 (not the 2 probe
    seeds); each interval holding its mean; SLICER minus COLA the difference of those means."""
    from studies.mini_lape import aggregate, differences, plan_runs

    runs = plan_runs(tmp_path / "runs", tmp_path / "corpus", 600, ["slicer", "cola"], [], seeds=[0, 1, 2])
    right = {"slicer": [30, 32, 36, 28], "slicer_seed1": [34, 26, 38, 30], "slicer_seed2": [31, 35, 29, 33],
             "cola": [20, 22, 18, 24], "cola_seed1": [26, 16, 20, 22], "cola_seed2": [17, 25, 23, 19]}
    # clips right on (t1, t2) at probe seed 0, then at probe seed 1
    rows = []
    for r in runs:
        for probe in (0, 1):
            for i, task in enumerate(("t1", "t2")):
                n = right[r.name][2 * probe + i]
                folder = tmp_path / f"seed{probe}"
                _cell(folder, r.name, task, "linear", n / N_CLIPS, outputs=_outputs(n))
                rows.append(dict(group=r.group, model=r.name, task=task, seed=probe, metric="top1_acc",
                                 value=n / N_CLIPS, status="ok", cell=str(cell_dir(folder, r.name, task, "linear"))))
    long = pd.DataFrame(rows)
    assert set(long.group) == {"slicer", "cola"}
    table = aggregate(long, ["slicer", "cola"], BootstrapConfig(n_boot=200))
    assert sorted(map(str, table.model.unique())) == ["cola", "slicer"] and len(table) == 6
    t = table.set_index(["model", "task"])
    for group in ("slicer", "cola"):
        members = (group, f"{group}_seed1", f"{group}_seed2")
        scores = {task: [right[run][2 * p + i] / N_CLIPS for run in members for p in (0, 1)]
                  for i, task in enumerate(("t1", "t2"))}
        for task, values in scores.items():
            assert t.loc[(group, task), "mean"] == pytest.approx(np.mean(values))
            assert t.loc[(group, task), "std"] == pytest.approx(np.std(values, ddof=1))
            assert t.loc[(group, task), "count"] == 6 and t.loc[(group, task), "runs"] == 3
        per_run_seed = [(a + b) / 2 for a, b in zip(scores["t1"], scores["t2"])]
        mean = t.loc[(group, "mean")]
        assert mean["mean"] == pytest.approx(np.mean(per_run_seed)) and mean["count"] == 6
        assert mean["std"] == pytest.approx(np.std(per_run_seed, ddof=1)) and mean["runs"] == 3
        for task in ("t1", "t2", "mean"):
            row = t.loc[(group, task)]
            assert row.ci_low <= row["mean"] <= row.ci_high, (group, task, row.to_dict())
    d = differences(long, "slicer", ["cola"], BootstrapConfig(n_boot=200)).set_index("task")
    for task in ("t1", "t2", "mean"):
        assert d.loc[task, "diff"] == pytest.approx(t.loc[("slicer", task), "mean"] - t.loc[("cola", task), "mean"])
        assert d.loc[task, "ci_low"] <= d.loc[task, "diff"] <= d.loc[task, "ci_high"]
