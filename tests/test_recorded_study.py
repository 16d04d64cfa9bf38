"""studies.recorded: the plan (same budget rule for every group, seeds), the choice on validation
(planted numbers with a known answer), and a dry run of the whole queue end to end."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from studies import recorded
from studies.mini_lape import CONFIGS, budget_overrides

from recorded_tree import write_tree

REPO = Path(__file__).resolve().parents[1]


def _plan(crop=None, seeds=(0, 1, 2)):
    return recorded.plan(Path("/r"), Path("/store"), Path("/demo/corpus"), 3000, list(seeds), "bf16", "cpu", crop)


def test_plan_has_every_seed_one_budget_rule_and_only_the_crop_differs():
    stages = _plan("time_only")
    assert [r.seed for r in stages["previous_default"]] == [0, 1, 2]
    crop = stages["crop"]
    assert len(crop) == 3 * len(recorded.CROPS)
    assert [r.seed for r in crop] == sorted(r.seed for r in crop)  # seed-major: every crop at seed 0 first
    base = budget_overrides(CONFIGS / "slicer.yaml", 3000)
    for r in crop:
        extra = {k: v for k, v in r.overrides.items() if k not in base}
        assert {k: r.overrides[k] for k in base} == base
        assert set(extra) - {"data.path", "run.seed", "run.precision", "run.device", "run.progress"} <= {
            "augment.rrc.frequency", "augment.rrc.freq_scale"}
        assert r.overrides["run.seed"] == str(r.seed) and r.overrides["run.precision"] == "bf16"
    methods = stages["methods"]
    assert sorted({r.group for r in methods}) == sorted(recorded.METHOD_STAGE)
    for r in methods:
        assert r.overrides["augment.rrc.frequency"] == "false"  # the chosen crop, for every method
        assert {k: r.overrides[k] for k in budget_overrides(r.config, 3000)} == budget_overrides(r.config, 3000)
    prev = stages["previous_default"][0]
    assert prev.config.name == "demo.yaml" and prev.overrides["data.path"] == "/demo/corpus"
    assert "methods" not in _plan(None)


def _valid(rows):
    return pd.DataFrame(rows, columns=["group", "model", "seed", "task", "valid"])


def test_choose_weighs_tasks_equally_and_averages_runs_and_probe_seeds():
    rows = []
    # A: 0.9 on task t1, 0.1 on t2 -> 0.5; B: 0.6 on both -> 0.6. A has many more t1 cells than
    # a cell-count weighting would need to win; B must win.
    for run in ("a0", "a1"):
        for p in (0, 1):
            rows += [("A", run, p, "t1", 0.9), ("A", run, p, "t2", 0.1)]
    for run in ("b0", "b1"):
        for p in (0, 1):
            rows += [("B", run, p, "t1", 0.6), ("B", run, p, "t2", 0.6)]
    table = recorded.choose(_valid(rows), ["A", "B"], ["t1", "t2"], {"A": 2, "B": 2})
    assert list(table.group) == ["B", "A"]
    assert table["mean"].tolist() == pytest.approx([0.6, 0.5])


def test_choose_leaves_out_a_group_whose_runs_are_not_all_scored():
    rows = [("A", "a0", 0, "t1", 0.9), ("A", "a0", 0, "t2", 0.9),  # one run of two: not complete
            ("B", "b0", 0, "t1", 0.5), ("B", "b0", 0, "t2", 0.5), ("B", "b1", 0, "t1", 0.5), ("B", "b1", 0, "t2", 0.5),
            ("C", "c0", 0, "t1", 0.99), ("C", "c1", 0, "t1", 0.99)]  # a task missing: not complete
    table = recorded.choose(_valid(rows), ["A", "B", "C"], ["t1", "t2"], {"A": 2, "B": 2, "C": 2})
    assert list(table.group) == ["B"]


def test_choose_averages_over_pretraining_seeds_not_the_best_seed():
    rows = [("A", "a0", 0, "t", 0.95), ("A", "a1", 0, "t", 0.45), ("B", "b0", 0, "t", 0.75), ("B", "b1", 0, "t", 0.72)]
    table = recorded.choose(_valid(rows), ["A", "B"], ["t"], {"A": 2, "B": 2})
    assert list(table.group) == ["B", "A"] and table["mean"].tolist() == pytest.approx([0.735, 0.70])


def test_choose_gives_each_groups_seed_spread_and_the_lead_is_set_against_it():
    """The spread is the best run's mean (over tasks, then probe seeds) minus the worst's; a lead
    smaller than the widest spread is said to rest on little, one at least as wide is not."""
    rows = [("A", "a0", 0, "t1", 0.80), ("A", "a0", 0, "t2", 0.60), ("A", "a0", 1, "t1", 0.70), ("A", "a0", 1, "t2", 0.70),
            ("A", "a1", 0, "t1", 0.76), ("A", "a1", 0, "t2", 0.76), ("A", "a1", 1, "t1", 0.76), ("A", "a1", 1, "t2", 0.76),
            ("B", "b0", 0, "t1", 0.69), ("B", "b0", 0, "t2", 0.69), ("C", "c0", 0, "t1", 0.5), ("C", "c0", 0, "t2", 0.5)]
    table = recorded.choose(_valid(rows), ["A", "B", "C"], ["t1", "t2"], {"A": 2, "B": 1, "C": 1})
    assert list(table.group) == ["A", "B", "C"] and table["mean"].tolist() == pytest.approx([0.73, 0.69, 0.5])
    assert table.spread.iloc[0] == pytest.approx(0.06) and table.spread.iloc[1:].isna().all()
    line = recorded.lead_line(table, "crop")
    assert "0.040" in line and "smaller than" in line and "(0.060" in line and "rests on little" in line
    wide = table.assign(spread=[0.02, math.nan, math.nan])
    line = recorded.lead_line(wide, "crop")
    assert "at least" in line and "(0.020)" in line and "little" not in line
    assert "no group here has two" in recorded.lead_line(table.assign(spread=math.nan), "crop")
    assert recorded.lead_line(table.iloc[:1], "crop") == ""


def test_methods_train_at_their_own_seeds_and_crops_at_all():
    stages = recorded.plan(Path("/r"), Path("/store"), Path("/demo/corpus"), 3000, [0, 1, 2], "bf16", "cpu",
                           "time_only", {m: [0, 1] for m in recorded.METHOD_STAGE})
    assert {r.seed for r in stages["methods"]} == {0, 1} and len(stages["methods"]) == 2 * len(recorded.METHOD_STAGE)
    assert {r.seed for r in stages["crop"]} == {0, 1, 2}
    assert [r.seed for r in stages["methods"]] == sorted(r.seed for r in stages["methods"])  # seed-major


def _ranking(rows):
    return pd.DataFrame(rows, columns=["group", "mean", "runs", "cells"]).assign(spread=0.01)


def test_a_method_ahead_of_every_full_candidate_is_promoted_and_only_full_groups_are_eligible():
    ranking = _ranking([("cola", 0.71, 2, 2), ("slicer_time_only", 0.70, 3, 3), ("byol_a", 0.69, 2, 2),
                        ("previous_default", 0.65, 3, 3)])
    assert recorded.promoted(ranking, 3) == ["cola"]  # byol_a is behind the best full candidate
    assert list(recorded.eligible(ranking, 3).group) == ["slicer_time_only", "previous_default"]
    # a two-seed method level with the best candidate is not ahead of it
    assert recorded.promoted(_ranking([("slicer_time_only", 0.7, 3, 3), ("cola", 0.7, 2, 2)]), 3) == []
    # nothing to compare with yet: nobody is promoted
    assert recorded.promoted(_ranking([("cola", 0.9, 2, 2)]), 3) == []


def test_the_default_is_chosen_only_once_every_planned_group_is_complete():
    """While a crop or a method is still training, the best complete candidate is 'leading so
    far', not chosen; choice.json holds no 'default' (a stale one is dropped)."""
    crops = [(f"slicer_{c}", 0.70 - i / 100, 3, 9) for i, c in enumerate(recorded.CROPS)]
    partial = _ranking([("previous_default", 0.76, 3, 9), *crops[:1]])
    lines, choice = recorded.choice_lines(partial, {"default": "stale", "crop": "time_only"}, 3)
    assert "default" not in choice and choice["leading"] == "previous_default" and choice["crop"] == "time_only"
    assert lines[0].startswith("Leading so far") and "2 of 8 planned groups complete" in lines[0]
    # every crop complete but no method yet (the crop not chosen either): still not a choice
    lines, choice = recorded.choice_lines(_ranking([("previous_default", 0.76, 3, 9), *crops]), {}, 3)
    assert "default" not in choice and lines[0].startswith("Leading so far")
    methods = [(m, 0.60, 2, 6) for m in recorded.METHOD_STAGE]
    whole = _ranking([("previous_default", 0.76, 3, 9), *crops, *methods])
    lines, choice = recorded.choice_lines(whole, {"crop": "time_only"}, 3)
    assert choice["default"] == "previous_default" and "leading" not in choice
    assert lines[0].startswith("Default chosen") and "lead over SLICER, BYOL-A's crop" in lines[1]
    # a method ahead of every full candidate at two seeds is owed its third: not final yet
    ahead = _ranking([("cola", 0.80, 2, 6), ("previous_default", 0.76, 3, 9), *crops, *methods[:-1]])
    lines, choice = recorded.choice_lines(ahead, {"crop": "time_only"}, 3)
    assert "default" not in choice and lines[0].startswith("Leading so far")
    assert recorded.choice_lines(_ranking([("cola", 0.8, 2, 6)]), {}, 3) == ([], {})


def test_the_run_shipped_is_the_chosen_groups_best_on_validation_and_margins_say_which_side():
    rows = [("A", "a0", 0, "t1", 0.70), ("A", "a0", 0, "t2", 0.70), ("A", "a0", 1, "t1", 0.70), ("A", "a0", 1, "t2", 0.70),
            ("A", "a1", 0, "t1", 0.90), ("A", "a1", 0, "t2", 0.60), ("A", "a1", 1, "t1", 0.80), ("A", "a1", 1, "t2", 0.72),
            ("B", "b0", 0, "t1", 0.99), ("B", "b0", 0, "t2", 0.99)]
    assert recorded.best_run(_valid(rows), "A") == "a1"  # 0.755 against 0.70; B's better run is another group's
    tie = [("A", "a1", 0, "t", 0.5), ("A", "a0", 0, "t", 0.5)]
    assert recorded.best_run(_valid(tie), "A") == "a0"
    with pytest.raises(recorded.StudyError):
        recorded.best_run(_valid(tie), "C")
    diffs = pd.DataFrame([("A", "mean", 0.02, 0.005, 0.04, "random_init"), ("A", "t1", -0.5, -0.6, -0.4, "random_init"),
                          ("A", "mean", -0.01, -0.03, 0.01, "previous_default"),
                          ("B", "mean", -0.05, -0.07, -0.02, "random_init"),
                          ("A", "mean", 0.1, 0.05, 0.15, "slicer_time_only")],
                         columns=["model", "task", "diff", "ci_low", "ci_high", "reference"])
    m = recorded.margins(diffs, "A")
    assert m["random_init"]["verdict"] == "ahead" and m["random_init"]["diff"] == pytest.approx(0.02)
    assert m["previous_default"]["verdict"] == "not separated" and set(m) == {"random_init", "previous_default"}
    assert recorded.margins(diffs, "B")["random_init"]["verdict"] == "behind"


def _diff_rows(rows):
    return pd.DataFrame([(m, "mean", d, lo, hi, lo > 0 or hi < 0, ref) for m, ref, d, lo, hi in rows],
                        columns=["model", "task", "diff", "ci_low", "ci_high", "excludes_zero", "reference"])


def test_the_answers_say_each_models_margin_slicers_place_and_the_crops_and_whether_they_are_final():
    rec = _diff_rows([("slicer_time_only", "random_init", 0.02, 0.01, 0.03),
                      ("slicer_byol_a_crop", "random_init", -0.01, -0.03, 0.01),
                      ("cola", "random_init", -0.05, -0.07, -0.03),
                      ("cola", "slicer_time_only", -0.07, -0.09, -0.05)])
    study = _diff_rows([("slicer_time_only", "random_init", 0.04, 0.02, 0.06)])
    ranking = _ranking([("cola", 0.74, 2, 6), ("slicer_time_only", 0.72, 3, 9), ("slicer_byol_a_crop", 0.70, 3, 9)])
    lines = recorded.answer_lines({"recorded": rec, "study": study}, ranking,
                                  {"slicer_time_only": 3, "slicer_byol_a_crop": 3, "cola": 2}, {"crop": "time_only"},
                                  final=False)
    text = "\n".join(lines)
    assert "so far: not every planned group is scored" in text
    row = next(line for line in lines if line.startswith("| SLICER, time-only crop | 3 |"))
    assert "+0.020 [+0.010, +0.030] ahead" in row and "+0.040 [+0.020, +0.060] ahead" in row
    assert "-0.050 [-0.070, -0.030] behind" in next(line for line in lines if line.startswith("| COLA | 2 |"))
    assert "not separated" in next(line for line in lines if line.startswith("| SLICER, BYOL-A's crop | 3 |"))
    # SLICER second of two on validation; on test SLICER minus COLA, the sign turned: ahead
    assert "SLICER is 2 of 2" in text
    assert "+0.070 [+0.050, +0.090] ahead" in next(line for line in lines if line.startswith("| COLA | 2 | +0.070"))
    crops = [line for line in lines if line.startswith("| SLICER, ") and "of 2 scored" in line]
    assert crops[0].startswith("| SLICER, BYOL-A's crop | 2 of 2") and crops[1].startswith("| SLICER, time-only crop | 1 of 2")
    assert "| SLICER, mild frequency zoom | – (incomplete) |" in text
    done = "\n".join(recorded.answer_lines({"recorded": rec}, ranking, {}, {}, final=True))
    assert "so far" not in done and "(every planned group is scored)" in done and "Not answered yet" in done


def test_a_run_scored_under_its_recipe_is_not_trained_again_and_one_of_another_recipe_is_refused(
        tmp_path, monkeypatch, capsys):
    """A new machine has the committed results but none of the checkpoints: the runs scored
    there are left out of the queue; a scored run whose recorded recipe differs stops it."""
    stages = recorded.plan(tmp_path / "runs", Path("/store"), Path("/demo/corpus"), 1500, [0, 1], "fp32", "cpu", None)
    runs = stages["previous_default"] + stages["crop"]
    done = {runs[0].name, runs[2].name}
    monkeypatch.setattr(recorded, "scored", lambda out, name, suites, seeds: name in done)
    out = tmp_path / "out"
    out.mkdir()
    records = {r.name: json.loads(json.dumps(recorded._run_identity(r))) for r in runs if r.name in done}
    (out / "runs.json").write_text(json.dumps(records))
    todo = recorded.still_to_train(runs, out, {"recorded": ["t"]}, [0])
    assert [r.name for r in todo] == [r.name for r in runs if r.name not in done]
    assert f"{runs[0].name}: scored already" in capsys.readouterr().out
    records[runs[2].name]["config"]["optim"]["lr"] = 1.0  # scored for another recipe
    (out / "runs.json").write_text(json.dumps(records))
    with pytest.raises(recorded.StudyError, match=runs[2].name):
        recorded.still_to_train(runs, out, {"recorded": ["t"]}, [0])


def test_ship_is_refused_until_the_default_is_chosen(tmp_path, capsys):
    dest = tmp_path / "default.pt"
    assert recorded.main(["--ship", "--ship-to", str(dest), "--out", str(tmp_path / "out"), "--runs",
                          str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "--ship: the default is not chosen yet" in err and not dest.exists()


@pytest.mark.parametrize("flags, named", [(["--steps", "0"], "--steps"), (["--seeds", "0", "0"], "--seeds"),
                                          (["--suites", "study"], "--suites"), (["--parallel", "0"], "--parallel"),
                                          (["--store", "/nope"], "--store"), (["--tasks", "nope"], "--tasks"),
                                          (["--method-seeds", "4"], "--method-seeds"),
                                          (["--method-seeds", "0"], "--method-seeds"),
                                          (["--ship-to", "/tmp/x.pt"], "--ship-to"),
                                          (["--recipe-to", "/tmp/x.yaml"], "--recipe-to"),
                                          (["--ship", "--report"], "--ship")])
def test_bad_flags_are_usage_errors_naming_the_flag(flags, named, capsys):
    assert recorded.main(flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and named in err and "Traceback" not in err


@pytest.mark.slow
def test_recorded_study_dry_run_end_to_end(tmp_path):
    """The whole queue with 2-step runs on tiny data: previous default, crops, the crop chosen
    on validation, the methods with it, references with init seeds, the report and figure; a
    rerun trains and scores nothing."""
    fs = write_tree(tmp_path / "fs")
    tasks_root = tmp_path / "rec"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    built = subprocess.run([sys.executable, "-m", "eval_suites.recorded", "--root", str(tasks_root), "--fs-root",
                            str(fs), "--tasks", "game_effects", "sounds", "--no-progress"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    wavs = sorted(str(p) for p in (fs / "usr/share/games").rglob("*.ogg"))[:6]
    listing = tmp_path / "files.txt"
    listing.write_text("\n".join(wavs) + "\n")
    prep = subprocess.run([sys.executable, "-m", "pretrain.prepare", str(listing), str(tmp_path / "store")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert prep.returncode == 0, prep.stderr[-2000:]
    demo = tmp_path / "demo" / "corpus"
    demo.mkdir(parents=True)
    for i, w in enumerate(wavs[:4]):
        os.symlink(w, demo / f"c{i}.ogg")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "studies.recorded", "--store", str(tmp_path / "store"), "--demo-root",
           str(tmp_path / "demo"), "--tasks-root", str(tasks_root / "tasks"), "--suites", "recorded", "--tasks",
           "game_effects", "sounds", "--seeds", "0", "--method-seeds", "1", "--init-seeds", "0", "1", "--probe-seeds", "0",
           "--dry-run-steps", "2", "--runs", str(tmp_path / "runs"), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    choice = json.loads((out / "choice.json").read_text())
    assert choice["crop"] in recorded.CROPS
    assert len(choice["crop_table"]) == len(recorded.CROPS)
    models = json.loads((out / "runs.json").read_text())
    groups = {r["group"] for r in models.values()}
    assert groups == {"previous_default", *(f"slicer_{c}" for c in recorded.CROPS), *recorded.METHOD_STAGE,
                      "random_init", "logmel_stats", "shipped_before"}
    assert {m for m, r in models.items() if r["group"] == "random_init"} == {"random_init_s0", "random_init_s1"}
    assert models["random_init_s1"]["options"] == {"random_init": True, "random_init_seed": 1}
    assert choice["default"] in groups - {"random_init", "logmel_stats", "shipped_before"}
    assert models["shipped_before"]["group"] == "shipped_before"
    test = pd.read_csv(out / "test_recorded.csv")
    assert set(test.model) == groups and test["mean"].between(0, 1).all()
    report = (out / "report.md").read_text()
    assert "Choice on the recorded suite's validation" in report and "minus random init" in report
    assert "Default chosen" in report and "Leading so far" not in report
    assert "## Answers" in report and "On test, SLICER minus each method" in report and "so far" not in report
    assert (out / "recorded_study.png").stat().st_size > 10_000
    # the methods used the chosen crop
    from pretrain.train import config_of_checkpoint

    ckpt = tmp_path / "runs" / f"cola_{choice['crop']}_s0" / "checkpoints" / "step_00000002.pt"
    assert config_of_checkpoint(ckpt).augment.rrc.frequency == recorded.CROPS[choice["crop"]][
        "augment.rrc.frequency"].startswith("t")
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    assert ": training" not in again.stdout and "scoring" not in again.stdout
    # the chosen default ships: its group's best run on validation, byte for byte, with its margins
    dest = tmp_path / "shipped" / "default.pt"
    ship_cmd = [sys.executable, "-m", "studies.recorded", "--ship", "--ship-to", str(dest), *cmd[3:]]
    shipped = subprocess.run(ship_cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert shipped.returncode == 0, shipped.stderr[-3000:]
    record = json.loads((out / "choice.json").read_text())["shipped"]
    groups_of = {m: r["group"] for m, r in models.items()}
    valid = recorded.validation_table(out, groups_of, ["game_effects", "sounds"], [0])
    assert record["group"] == choice["default"] and record["run"] == recorded.best_run(valid, choice["default"])
    assert dest.read_bytes() == (tmp_path / "runs" / record["run"] / f"{record['run']}.pt").read_bytes()
    assert set(record["test_margins"]) <= {"random_init", "previous_default"} and "random_init" in record["test_margins"]
    from hear_slicer import load_model

    load_model(str(dest))
    # beside it, the run's recipe: the planned config with the default data places, trained exactly
    from hear_slicer.checkpoint import load_checkpoint
    from pretrain.config import _flatten, config_from_dict, load_config

    recipe_path = dest.with_suffix(".yaml")
    assert record["recipe"] == str(recipe_path)
    text = recipe_path.read_text()
    assert f"run {record['run']}" in text and "python -m pretrain --config pretrain/configs/default_model.yaml" in text
    recipe = _flatten(load_config(recipe_path).to_dict())
    trained = _flatten(config_from_dict(load_checkpoint(dest).train_config).to_dict())
    venue = set(recorded._VENUE_KEYS)
    assert {k: v for k, v in recipe.items() if k not in venue} == {k: v for k, v in trained.items() if k not in venue}
    assert recipe["run.out"] == "runs/default_model" and recipe["data.path"] in (
        "runs/learning_curves/corpus_store", "demo_data/corpus")
    again = subprocess.run(ship_cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "--ship-to" in again.stderr  # a file there that is not the bundled default
    # a recipe file in the way is refused before anything is written
    dest.unlink()
    blocked = subprocess.run(ship_cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert blocked.returncode == 2 and "--recipe-to" in blocked.stderr and not dest.exists()
    # a checkpoint trained otherwise than the study plans it is refused, naming the key
    args = recorded.build_parser().parse_args(cmd[3:])
    args.runs = args.runs.resolve()
    args.dry_run_steps = 3
    src = tmp_path / "runs" / record["run"] / f"{record['run']}.pt"
    with pytest.raises(recorded.StudyError, match="run.steps"):
        recorded.shipped_recipe(args, record["run"], src, choice["crop"])


def test_shipped_before_is_copied_only_while_the_bundled_default_is_that_file(tmp_path):
    """The reference 'the default shipped before the study' is the bundled file while its SHA-256
    is the pinned one; a bundled default that is another file is not copied (nothing scored under
    that name); a copy made earlier, checked by the same hash, keeps the row meaning the same
    model; a file of other bytes where the copy goes is refused and left as it was."""
    import hashlib

    bundled = recorded.REPO / "hear_slicer" / "assets" / "default.pt"
    dest = tmp_path / "runs" / "shipped_before.pt"
    other = tmp_path / "other.pt"
    other.write_bytes(b"another default")
    assert not recorded.copy_shipped_before(dest, bundled=other) and not dest.exists()
    if hashlib.sha256(bundled.read_bytes()).hexdigest() == recorded.SHIPPED_BEFORE_SHA256:
        assert recorded.copy_shipped_before(dest, bundled=bundled)
        assert dest.read_bytes() == bundled.read_bytes()
        assert recorded.copy_shipped_before(dest, bundled=other)  # the earlier copy stands for it
        assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary file left
    else:  # a new default has shipped: only an earlier copy can stand for the old one
        assert not recorded.copy_shipped_before(dest, bundled=bundled)
    wrong = tmp_path / "wrong" / "shipped_before.pt"
    wrong.parent.mkdir()
    wrong.write_bytes(b"a file someone put there")
    with pytest.raises(recorded.StudyError, match="not the default shipped before"):
        recorded.copy_shipped_before(wrong, bundled=bundled)
    assert wrong.read_bytes() == b"a file someone put there"
    specs = recorded.reference_specs(tmp_path / "runs", [0])
    assert specs["shipped_before"][0] in recorded.REFERENCES and specs["shipped_before"][1].checkpoint == dest


def test_the_figure_says_how_many_runs_each_row_rests_on(tmp_path, monkeypatch):
    import matplotlib.figure

    seen = {}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, path, **kw: seen.update(ticks=[t.get_text() for t in fig.axes[0].get_yticklabels()]))
    d = pd.DataFrame([dict(model=m, task="mean", reference="random_init", diff=0.01, ci_low=-0.01, ci_high=0.03)
                      for m in ("slicer_time_only", "previous_default")])
    recorded.plot_differences({"recorded": d, "study": d}, tmp_path / "f.png",
                              {"slicer_time_only": 1, "previous_default": 3})
    assert sorted(seen["ticks"]) == ["SLICER, time-only crop  (n = 1)",
                                     "previous default's recipe (600 steps, demo corpus)  (n = 3)"]
