"""Mini-LAPE (`python -m studies.mini_lape`) and its log-mel statistics reference."""
from __future__ import annotations

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
from studies.mini_lape import (ABLATIONS, METHODS, PretrainRun, _comparable, _desired_config, _diff,
                                   aggregate, markdown_table, plan_runs, run_state)
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
        assert cfg["objective"]["name"] == METHODS[name][0].replace(".yaml", "").replace("demo", "slicer")
        assert cfg["data"]["batch_size"] == 32 and cfg["data"]["crop_seconds"] == 0.95
        assert cfg["run"]["steps"] == 600 and cfg["optim"]["warmup_steps"] == 50
        assert cfg["optim"]["lr"] == 3e-4 and cfg["augment"]["mixup"]["memory"] == 512
        assert cfg["frontend"] == configs["slicer"]["frontend"] and cfg["encoder"] == configs["slicer"]["encoder"]
        assert cfg["augment"]["rrc"] == configs["slicer"]["augment"]["rrc"]
        assert cfg["augment"]["kmix"]["enabled"] == (name == "slicer")  # k-mix is SLICER's contribution
    assert configs["delores_m"]["objective"]["params"]["queue_size"] == \
        configs["slicer"]["objective"]["params"]["queue_size"] == 512


def test_pretraining_seeds_name_and_seed_the_runs():
    runs = plan_runs(Path("r"), Path("c"), 600, ["slicer", "cola"], ["slicer_no_kmix"], seeds=[0, 3])
    assert [(r.name, r.group, r.seed) for r in runs] == [
        ("slicer", "slicer", 0), ("slicer_seed3", "slicer", 3), ("cola", "cola", 0), ("cola_seed3", "cola", 3),
        ("slicer_no_kmix", "slicer_no_kmix", 0)]
    configs = {r.name: _comparable(_desired_config(r)) for r in runs}
    assert _diff(configs["slicer_seed3"], configs["slicer"]) == ["run.seed: 3 (run) vs 0 (wanted)"]
    assert runs[1].out == Path("r/slicer_seed3")


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


def test_slicer_under_the_budget_is_the_demo_recipe_but_for_time_only_crops():
    """pretrain/configs/demo.yaml (the shipped default's recipe) = SLICER's mini-LAPE run with
    time-only random resize crops, so the mini-LAPE rows describe the default model."""
    from pretrain.config import load_config

    slicer = plan_runs(Path("r"), Path("demo_data/corpus"), 600, ["slicer"], [],
                       overrides={"augment.rrc.frequency": "false"}, tag="t")[0]
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
    assert "0.800 ± 0.141" in lines[3]


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
    assert (out / "mini_lape.png").stat().st_size > 10_000
    for name in trained:
        assert (runs / name / "checkpoints" / "step_00000002.pt").is_file()
        assert (runs / name / f"{name}.pt").is_file()

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reused") == 5 and ": training" not in again.stdout

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
                        {**mini_lape.BUDGET, "data.path": str(tmp_path / "data" / "corpus"),
                         "data.batch_size": "16"}, runs / "slicer")
    with pytest.raises(ValueError, match="data.batch_size"):
        run_state(other, 2)
