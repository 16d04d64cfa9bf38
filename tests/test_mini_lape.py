"""Mini-LAPE (`python -m studies.mini_lape`) and its log-mel statistics reference."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from studies import mini_lape
from eval_suites.core.clip_outputs import save_outputs
from eval_suites.core.intervals import BootstrapConfig, FoldOutputs, difference_intervals, model_intervals
from studies.mini_lape import (ABLATIONS, METHODS, PretrainRun, _comparable, _desired_config, _diff,
                                   aggregate, differences, markdown_differences, markdown_table, plan_runs,
                                   plot_table, run_differences, run_state)
from eval_suites.references import logmel_stats

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- the reference model
def test_logmel_stats_embeddings_are_the_log_mel_statistics():
    model = logmel_stats.load_model()
    g = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(2, 16000, generator=g)
    logmel = model.frontend.log_mel(audio)  # (2, 64, 101)
    scene = logmel_stats.get_scene_embeddings(audio, model)
    assert scene.shape == (2, 128)
    torch.testing.assert_close(scene[:, :64], logmel.mean(-1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scene[:, 64:], logmel.std(-1, unbiased=False), rtol=1e-3, atol=1e-3)

    emb, ts = logmel_stats.get_timestamp_embeddings(audio, model)
    assert emb.shape == (2, 26, 128) and ts.shape == (2, 26)  # 0, 40, ..., 1000 ms
    np.testing.assert_allclose(ts[0].numpy(), np.arange(26) * 40.0)
    # the timestamp at 400 ms: frames 32..48 (160 ms centred on frame 40)
    window = logmel[:, :, 32:49]
    torch.testing.assert_close(emb[:, 10, :64], window.mean(-1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(emb[:, 10, 64:], window.std(-1, unbiased=False), rtol=1e-3, atol=1e-3)
    # at the clip's edge the window is cut, not zero-padded
    torch.testing.assert_close(emb[:, 0, :64], logmel[:, :, :9].mean(-1), rtol=1e-4, atol=1e-4)


def test_logmel_stats_rejects_bad_input():
    model = logmel_stats.load_model()
    with pytest.raises(ValueError, match="no weights"):
        logmel_stats.load_model("some.pt")
    with pytest.raises(TypeError, match="floating-point"):
        logmel_stats.get_scene_embeddings(torch.zeros(1, 100, dtype=torch.int16), model)
    with pytest.raises(ValueError, match="shape"):
        logmel_stats.get_scene_embeddings(torch.zeros(100), model)
    short = logmel_stats.get_scene_embeddings(torch.zeros(1, 10), model)  # shorter than one STFT window
    assert short.shape == (1, 128) and torch.isfinite(short).all()


@pytest.mark.slow
def test_logmel_stats_passes_hear_validator():
    exe = Path(sys.executable).parent / "hear-validator"
    proc = subprocess.run([str(exe), "eval_suites.references.logmel_stats"], capture_output=True, text=True,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=600)
    assert proc.returncode == 0 and "Looks good!" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


# ----------------------------------------------------------------------------- the plan
def test_every_method_gets_the_same_budget():
    runs = plan_runs(Path("runs"), Path("demo_data/corpus"), 600, list(METHODS), [])
    configs = {r.name: _desired_config(r) for r in runs}
    for name, cfg in configs.items():
        assert cfg["objective"]["name"] == METHODS[name].replace(".yaml", "")
        assert cfg["data"]["batch_size"] == 32 and cfg["data"]["crop_seconds"] == 0.95
        assert cfg["run"]["steps"] == 600 and cfg["optim"]["warmup_steps"] == 50
        assert cfg["optim"]["lr"] == 3e-4 and cfg["augment"]["mixup"]["memory"] == 512
        assert cfg["frontend"] == configs["slicer"]["frontend"] and cfg["encoder"] == configs["slicer"]["encoder"]
        assert cfg["augment"]["rrc"] == configs["slicer"]["augment"]["rrc"]
        assert cfg["augment"]["kmix"]["enabled"] == (name == "slicer")  # k-mix is SLICER's contribution
    params = {name: cfg["objective"]["params"] for name, cfg in configs.items()}
    # the rule, alike for every method with an EMA teacher / a queue: 1 - 10 / 600 and 16 x 32
    assert params["slicer"]["momentum"] == params["delores_m"]["momentum"] == params["byol_a"]["momentum"] == 0.98333
    assert params["slicer"]["ema_updates_per_step"] == 1
    assert params["delores_m"]["queue_size"] == params["slicer"]["queue_size"] == 512
    assert params["slicer"]["n_clusters"] == 32 and configs["slicer"]["augment"]["kmix"]["r"] == 32


def test_budget_rule_only_caps_and_reads_each_methods_own_values(tmp_path):
    """A setting already within the rule is kept; the rule reads the config it is applied to."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("objective:\n  name: slicer\n  params: {momentum: 0.9, ema_updates_per_step: 2, queue_size: 100,"
                   " n_clusters: 8}\naugment:\n  kmix: {memory: 1024, r: 256}\n")
    o = mini_lape.budget_overrides(cfg, steps=600, batch=32)
    assert "objective.params.momentum" not in o  # 0.9 ** 2 < 0.98333: kept
    assert o["objective.params.queue_size"] == "100" and o["objective.params.n_clusters"] == "8"
    assert o["augment.kmix.r"] == "128"  # 256 / 1024 of 512
    o = mini_lape.budget_overrides(cfg, steps=100000, batch=256)
    assert "objective.params.momentum" not in o and o["optim.warmup_steps"] == str(100000 // 12)
    cfg.write_text("objective:\n  name: slicer\n  params: {momentum: 0.999, ema_updates_per_step: 2}\n")
    o = mini_lape.budget_overrides(cfg, steps=600, batch=32)
    assert o["objective.params.momentum"] == "0.98333" and o["objective.params.ema_updates_per_step"] == "1"


def test_pretraining_seeds_name_and_seed_the_runs():
    runs = plan_runs(Path("r"), Path("c"), 600, ["slicer", "cola"], ["slicer_no_kmix"], seeds=[0, 3])
    assert [(r.name, r.group, r.seed) for r in runs] == [
        ("slicer", "slicer", 0), ("cola", "cola", 0), ("slicer_seed3", "slicer", 3), ("cola_seed3", "cola", 3),
        ("slicer_no_kmix", "slicer_no_kmix", 0)]
    configs = {r.name: _comparable(_desired_config(r)) for r in runs}
    assert _diff(configs["slicer_seed3"], configs["slicer"]) == ["run.seed: 3 (run) vs 0 (wanted)"]
    assert runs[2].out == Path("r/slicer_seed3")


def test_a_tagged_variant_changes_every_run_and_names_it():
    base = {r.name: r for r in plan_runs(Path("r"), Path("c"), 600, list(METHODS), list(ABLATIONS))}
    variant = plan_runs(Path("r"), Path("c"), 600, list(METHODS), ["slicer_no_kmix"],
                        overrides={"augment.rrc.frequency": "false"}, tag="rrc_time_only")
    assert [r.name for r in variant] == [f"{m}_rrc_time_only" for m in METHODS] + ["slicer_no_kmix_rrc_time_only"]
    for r in variant:
        plain = base[r.name.removesuffix("_rrc_time_only")]
        diffs = _diff(_comparable(_desired_config(r)), _comparable(_desired_config(plain)))
        assert diffs == ["augment.rrc.frequency: False (run) vs True (wanted)"], (r.name, diffs)
    # SLICER's variant is exactly the ablation of the same name: one run serves both
    assert _comparable(_desired_config(variant[0])) == _comparable(_desired_config(base["slicer_rrc_time_only"]))


def test_slicer_under_the_budget_is_the_demo_recipe():
    """pretrain/configs/demo.yaml (the recipe of the default shipped until 2026-12-05) = SLICER's
    study run with time-only crops (the candidate chosen on validation by studies.choose_default),
    so the study's `slicer_rrc_time_only` rows describe the demo recipe."""
    from pretrain.config import load_config

    slicer = plan_runs(Path("r"), Path("demo_data/corpus"), 600, [], ["slicer_rrc_time_only"])[0]
    demo = load_config(str(mini_lape.CONFIGS / "demo.yaml")).to_dict()
    assert _diff(_comparable(_desired_config(slicer)), _comparable(demo)) == []


def test_each_ablation_changes_one_thing():
    runs = {r.name: r for r in plan_runs(Path("runs"), Path("c"), 600, ["slicer"], list(ABLATIONS))}
    base = _comparable(_desired_config(runs["slicer"]))
    for name, change in ABLATIONS.items():
        diffs = _diff(_comparable(_desired_config(runs[name])), base)
        assert len(diffs) == 1 and diffs[0].startswith(next(iter(change))), (name, diffs)


# ----------------------------------------------------------------------------- the table
def test_aggregate_and_markdown_rank_by_mean():
    rows = []
    for seed, (a1, a2, b1, b2) in enumerate([(0.9, 0.5, 0.6, 0.6), (0.7, 0.5, 0.6, 0.8)]):
        rows += [dict(model="a", task="t1", seed=seed, metric="acc", value=a1, status="ok", error=""),
                 dict(model="a", task="t2", seed=seed, metric="acc", value=a2, status="ok", error=""),
                 dict(model="b", task="t1", seed=seed, metric="acc", value=b1, status="ok", error=""),
                 dict(model="b", task="t2", seed=seed, metric="acc", value=b2, status="ok", error="")]
    rows.append(dict(model="b", task="t2", seed=2, metric="", value=math.nan, status="failed", error="x"))
    table = aggregate(pd.DataFrame(rows), ["a", "b"])
    cell = table.set_index(["model", "task"])
    assert cell.loc[("a", "t1"), "mean"] == pytest.approx(0.8)
    assert cell.loc[("a", "t1"), "std"] == pytest.approx(np.std([0.9, 0.7], ddof=1))
    assert cell.loc[("b", "t2"), "count"] == 2  # the failed cell is left out
    assert cell.loc[("a", "mean"), "mean"] == pytest.approx(0.65)  # (0.7 + 0.6) / 2
    assert cell.loc[("b", "mean"), "mean"] == pytest.approx(0.65)
    assert cell.loc[("a", "mean"), "std"] == pytest.approx(np.std([0.7, 0.6], ddof=1))
    rows[-2]["value"] = 0.9  # b now leads on average
    md = markdown_table(aggregate(pd.DataFrame(rows), ["a", "b"]), ["a", "b"], ["t1", "t2"], {"a": "note"})
    lines = md.splitlines()
    assert lines[2].startswith("| 1 | b |") and lines[3].startswith("| 2 | a |") and lines[3].endswith("| note |")
    # results without per-clip outputs (no column "cell"): the interval is n/a, never invented
    assert "| 0.800 [n/a] |" in lines[3] and "[0." not in md


def _write_cells(root: Path, n: int = 120) -> pd.DataFrame:
    """Cells of three groups on two tasks with stored per-clip outputs: "a" (2 pretraining runs,
    good), "b" (1 run, worse), "c" (1 run, the same outputs as "a"'s first run). Returns the long table."""
    rng = np.random.default_rng(0)
    truth = {t: rng.integers(0, 3, n) for t in ("t1", "t2")}
    p_right = {("a", "a"): 0.85, ("a", "a_seed1"): 0.75, ("b", "b"): 0.45, ("c", "c"): 0.85}
    rows = []
    for (group, run), p in p_right.items():
        for task, true in truth.items():
            for probe in (0, 1):
                g = np.random.default_rng([{"a": 0, "a_seed1": 1, "b": 2, "c": 0}[run], probe, len(task)])
                pred = np.where(g.random(n) < p, true, (true + 1) % 3)
                scores = np.eye(3)[pred] + 0.01 * g.random((n, 3))
                d = root / f"seed{probe}" / run / task
                fold = FoldOutputs(np.array([f"{task}_{i}" for i in range(n)]), np.eye(3, dtype=np.uint8)[true], scores)
                save_outputs(d, {"test": fold})
                rows.append(dict(group=group, model=run, task=task, seed=probe, metric="top1_acc",
                                 value=float((pred == true).mean()), status="ok", error="", cell=str(d)))
    return pd.DataFrame(rows)


def test_aggregate_gives_hierarchical_intervals_from_the_stored_outputs(tmp_path):
    long = _write_cells(tmp_path)
    cfg = BootstrapConfig(n_boot=300)
    table = aggregate(long, ["a", "b", "c"], cfg).set_index(["model", "task"])
    assert table.loc[("a", "mean"), "runs"] == 2 and table.loc[("b", "t1"), "runs"] == 1
    # the same numbers as the intervals module called directly on the outputs
    from eval_suites.core.clip_outputs import load_outputs
    def runs(run_names, task):
        return [[load_outputs(tmp_path / f"seed{p}" / r / task) for p in (0, 1)] for r in run_names]
    direct = model_intervals({t: runs(["a", "a_seed1"], t) for t in ("t1", "t2")},
                             {"t1": "top1_acc", "t2": "top1_acc"}, cfg)
    for task in ("t1", "t2", "mean"):
        assert table.loc[("a", task), "mean"] == pytest.approx(direct[task].value)
        assert (table.loc[("a", task), "ci_low"], table.loc[("a", task), "ci_high"]) == \
            pytest.approx((direct[task].low, direct[task].high))
    assert table.loc[("b", "mean"), "ci_high"] < table.loc[("a", "mean"), "ci_low"]
    md = markdown_table(table.reset_index(), ["a", "b", "c"], ["t1", "t2"], {})
    assert f"**{table.loc[('a', 'mean'), 'mean']:.3f} [{table.loc[('a', 'mean'), 'ci_low']:.3f}, " in md
    plot_table(table.reset_index(), [("all", ["a", "b", "c"])], ["t1", "t2"], tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 5000

    # a cell without outputs makes that task's interval, and the mean's, n/a
    broken = long.copy()
    broken.loc[(broken.model == "b") & (broken.task == "t2") & (broken.seed == 1), "cell"] = str(tmp_path / "none")
    t2 = aggregate(broken, ["a", "b", "c"], cfg).set_index(["model", "task"])
    assert not math.isnan(t2.loc[("b", "t1"), "ci_low"])
    assert math.isnan(t2.loc[("b", "t2"), "ci_low"]) and math.isnan(t2.loc[("b", "mean"), "ci_low"])


def test_differences_are_paired_and_flag_what_exceeds_the_noise(tmp_path):
    long = _write_cells(tmp_path)
    cfg = BootstrapConfig(n_boot=300)
    diffs = differences(long, "a", ["b", "c"], cfg).set_index(["model", "task"])
    from eval_suites.core.clip_outputs import load_outputs
    def runs(run_names, task):
        return [[load_outputs(tmp_path / f"seed{p}" / r / task) for p in (0, 1)] for r in run_names]
    direct = difference_intervals({t: runs(["a", "a_seed1"], t) for t in ("t1", "t2")},
                                  {t: runs(["b"], t) for t in ("t1", "t2")}, {"t1": "top1_acc", "t2": "top1_acc"}, cfg)
    for task in ("t1", "t2", "mean"):
        assert diffs.loc[("b", task), "diff"] == pytest.approx(direct[task].value)
        assert (diffs.loc[("b", task), "ci_low"], diffs.loc[("b", task), "ci_high"]) == \
            pytest.approx((direct[task].low, direct[task].high))
    assert diffs.loc[("b", "mean"), "excludes_zero"]  # 0.8 vs 0.45: far beyond the noise
    assert not diffs.loc[("c", "mean"), "excludes_zero"]  # c is a's first run: the seeds' spread covers it
    md = markdown_differences(diffs.reset_index(), "a", ["t1", "t2"])
    assert md.splitlines()[0] == "| a minus | t1 | t2 | mean |"
    assert "| b | **+0." in md and "| c | " in md and "| c | **" not in md


def test_run_differences_compare_one_pretraining_run(tmp_path):
    """The ablations' table: a's first run alone against c, whose outputs are that run's exactly,
    differs by 0 with a zero-width interval; the group mean over both runs would not."""
    long = _write_cells(tmp_path)
    cfg = BootstrapConfig(n_boot=300)
    diffs = run_differences(long, "a", ["c", "b"], cfg).set_index(["model", "task"])
    for task in ("t1", "t2", "mean"):
        assert diffs.loc[("c", task), ["diff", "ci_low", "ci_high"]].tolist() == pytest.approx([0, 0, 0], abs=1e-12)
    assert diffs.loc[("b", "mean"), "excludes_zero"]
    assert differences(long, "a", ["c"], cfg).set_index("task").loc["mean", "diff"] < -0.02  # a_seed1 is worse
    assert set(long.group) == {"a", "b", "c"}  # the caller's frame is left as it was


def test_report_with_nothing_recorded_is_an_error_that_writes_nothing(tmp_path, capsys):
    from studies.mini_lape import main

    out = tmp_path / "out"
    assert main(["--preset", "small", "--report", "--root", str(tmp_path / "data"), "--runs", str(tmp_path / "runs"),
                 "--out", str(out), "--no-progress"]) == 2
    assert f"--report: no model is recorded in {out / 'runs.json'}" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_mini_lape_end_to_end_tiny(tmp_path):
    """Real pretraining processes (2 methods + 1 ablation), references, two probe seeds, table
    and plot; a rerun reuses everything; more steps resume the runs; another config is refused."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    runs, out = tmp_path / "runs", tmp_path / "out"
    cmd = [sys.executable, "-m", "studies.mini_lape", "--preset", "tiny", "--root", str(tmp_path / "data"),
           "--runs", str(runs), "--out", str(out), "--methods", "slicer", "cola", "--ablations", "slicer_no_kmix",
           "--steps", "2", "--pretrain-seeds", "0", "1", "--seeds", "0", "1", "--tasks", "keywords", "events",
           "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    long = pd.read_csv(out / "mini_lape.csv")
    groups = {"slicer", "cola", "slicer_no_kmix", "random_init", "logmel_stats"}
    trained = {"slicer", "slicer_seed1", "cola", "cola_seed1", "slicer_no_kmix"}
    assert set(long.group) == groups and set(long.model) == trained | {"random_init", "logmel_stats"}
    assert set(long.task) == {"keywords", "events"} and set(long.seed) == {0, 1}
    assert (long.status == "ok").all() and long.value.between(0, 1).all()
    assert len(long[long.group == "cola"]) == 2 * 2 * 2  # pretraining seeds x tasks x probe seeds
    md = (out / "mini_lape.md").read_text()
    assert all(f"| {m} |" in md for m in groups) and "SLICER ablations" in md and "| slicer_seed1 |" not in md
    ablation_diffs = pd.read_csv(out / "mini_lape_ablation_differences.csv")  # against slicer's seed-0 run alone
    assert set(ablation_diffs.model) == {"slicer_no_kmix"} and "| slicer (seed 0) minus |" in md
    assert (out / "mini_lape.png").stat().st_size > 10_000
    for name in trained:
        assert (runs / name / "checkpoints" / "step_00000002.pt").is_file()
        assert (runs / name / f"{name}.pt").is_file()
        assert any((runs / name / "tensorboard").glob("events.out.tfevents.*"))  # live curves, as every run has

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reused") == 6 and ": training" not in again.stdout  # 5 runs + random_init

    # a fresh machine with only the committed results folder: nothing is trained or evaluated again
    fresh = subprocess.run(cmd[:cmd.index("--runs") + 1] + [str(tmp_path / "runs_fresh")] + cmd[cmd.index("--runs") + 2:],
                           env=env, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert fresh.returncode == 0, fresh.stdout[-3000:] + fresh.stderr[-3000:]
    assert ": training" not in fresh.stdout and "  probe seed 0:" not in fresh.stdout  # nothing evaluated
    assert not (tmp_path / "runs_fresh").exists() or not any((tmp_path / "runs_fresh").glob("*/checkpoints"))
    pd.testing.assert_frame_equal(pd.read_csv(out / "mini_lape.csv"), long)

    # --report: the tables of the recorded models only; a run not recorded is named and left
    # out, nothing is trained or evaluated, and no runs folder is made
    report = cmd[:cmd.index("--runs") + 1] + [str(tmp_path / "runs_none")] + cmd[cmd.index("--runs") + 2:]
    report.insert(report.index("slicer_no_kmix") + 1, "slicer_no_cluster")
    report[report.index("--root") + 1] = str(tmp_path / "data_none")  # no demo data is built either
    shown = subprocess.run(report + ["--report"], env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    assert "left out (not recorded): slicer_no_cluster" in shown.stdout
    assert ": training" not in shown.stdout and "  probe seed 0:" not in shown.stdout
    assert not (tmp_path / "runs_none").exists() and not (tmp_path / "data_none").exists()
    pd.testing.assert_frame_equal(pd.read_csv(out / "mini_lape.csv"), long)
    assert "slicer_no_cluster" not in (out / "mini_lape.md").read_text()

    # a run trained here but not recorded (its scoring was interrupted) is scored, not retrained
    registry = json.loads((out / "runs.json").read_text())
    del registry["cola"]
    (out / "runs.json").write_text(json.dumps(registry))
    landed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert landed.returncode == 0, landed.stdout[-3000:] + landed.stderr[-3000:]
    assert "cola: done (step_00000002.pt), reused" in landed.stdout and "cola: scoring it now" in landed.stdout
    assert ": training" not in landed.stdout and "cola" in json.loads((out / "runs.json").read_text())
    pd.testing.assert_frame_equal(pd.read_csv(out / "mini_lape.csv"), long)

    more = [a if a != "2" else "3" for a in cmd[:cmd.index("--steps") + 2]] + cmd[cmd.index("--steps") + 2:]
    more[more.index("--methods") + 1:more.index("--ablations")] = ["cola"]
    more[more.index("--ablations"):more.index("--ablations") + 2] = []
    more[more.index("--pretrain-seeds") + 1:more.index("--pretrain-seeds") + 3] = ["1"]  # cola_seed1 only
    resumed = subprocess.run(more, env=env, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "cola_seed1: resuming from step_00000002.pt" in resumed.stdout and "cola:" not in resumed.stdout
    assert (runs / "cola_seed1" / "checkpoints" / "step_00000003.pt").is_file()
    assert not (runs / "cola" / "checkpoints" / "step_00000003.pt").exists()

    other = PretrainRun("slicer", mini_lape.CONFIGS / "demo.yaml",
                        {**mini_lape.budget_overrides(mini_lape.CONFIGS / "demo.yaml"), "data.path": str(tmp_path / "data" / "corpus"),
                         "data.batch_size": "16"}, runs / "slicer")
    with pytest.raises(ValueError, match="data.batch_size"):
        run_state(other, 2)


def test_a_freed_slot_trains_the_next_run_while_the_finished_one_is_scored(monkeypatch, tmp_path):
    """Three runs, one at a time, each finishing at its first poll: expects each next run launched
    before the finished one is scored, and every run scored once (the queue used to score first,
    leaving the slot idle for the 10-30 min a model takes to score), and a run found done scored
    once the new ones have started."""
    events = []

    class Finished:
        returncode = 0

        def poll(self):
            return 0

    runs = [PretrainRun(n, Path("c.yaml"), {}, tmp_path / n, "g", 0) for n in ("done", "a", "b", "c")]
    monkeypatch.setattr(mini_lape, "run_state",
                        lambda run, steps: ("done", tmp_path / "step_9.pt") if run.name == "done" else ("new", None))
    monkeypatch.setattr(mini_lape, "launch_run", lambda run, ckpt, env: events.append(f"launch {run.name}") or Finished())
    monkeypatch.setattr(mini_lape.time, "sleep", lambda seconds: None)
    failed = mini_lape.pretrain_all(runs, 10, 1, None, on_finished=lambda run: events.append(f"score {run.name}"))
    assert failed == []
    assert events == ["launch a", "score done", "launch b", "score a", "launch c", "score b", "score c"]
