"""End-to-end runs of manifests: two HEAR models (hear_slicer and the toy module), a
scene task and an event task made from real synthesised audio, both protocols;
interrupt-and-resume; failing cells that do not stop or lose the others."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from eval_suites.__main__ import main
from eval_suites.core.clip_outputs import load_outputs
from eval_suites.core.intervals import point_value, supports
from eval_suites.synthetic.demo_tasks import build_event_task, build_instrument_task
from eval_suites.core.manifest import load_manifest
from eval_suites.core.results import CSV_COLUMNS, cell_dir, collect_results
from eval_suites.core.runner import pending_cells, run_manifest

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tasks_root(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tasks")
    # piano vs brass: fluidsynth renders, an easy 2-class scene task (chance 0.5)
    build_instrument_task(root, families=("piano", "brass"), clips_per_class_per_split=4)
    build_event_task(root, n_clips_per_split=3, clip_seconds=3.0)
    return root


def manifest_text(root: Path, protocols: str, models: str | None = None, extra_tasks: str = "") -> str:
    models = models or ("  - {name: toy, module: hear_toy_module}\n"
                        "  - {name: slicer, module: hear_slicer}\n")
    return (f"suite: demo\ntasks_root: {root}\nmodels:\n{models}"
            f"tasks:\n  - {{name: instruments, path: demo-instruments-v1-full}}\n"
            f"  - {{name: events, path: demo-events-v1-full}}\n{extra_tasks}"
            f"protocols:\n{protocols}")


@pytest.mark.slow
def test_cli_runs_both_protocols_for_two_models(tasks_root, tmp_path):
    m = tmp_path / "demo.yaml"
    m.write_text(manifest_text(tasks_root, "  linear: {epochs: 20}\n"
                                           "  heareval: {grid: faster, grid_points: 1,\n"
                                           "             param_grid: {batch_size: [4], max_epochs: [40], hidden_layers: [0]}}\n"))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "eval_suites", "run", str(m), "--out", str(out),
                           "--no-progress"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "8 cell(s) ok, 0 failed" in proc.stdout

    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == CSV_COLUMNS
    assert len(df) == 2 * 2 * 2 * 2  # models x tasks x protocols x metrics
    assert (df.status == "ok").all()
    # heareval's event scorer (sed_eval) gives NaN when a model predicts no event at all
    # (precision 0/0); every other value must be a number.
    heareval_events = (df.protocol == "heareval") & df.metric.isin(["event_onset_200ms_fms", "segment_1s_er"])
    assert df[~heareval_events].value.notna().all()
    assert set(df.protocol) == {"linear", "heareval"} and set(df.model) == {"toy", "slicer"}
    for metric in ("top1_acc", "mAP", "event_onset_200ms_fms"):
        v = df[df.metric == metric].value.dropna()
        assert ((v >= 0) & (v <= 1)).all(), (metric, v.tolist())
    assert (df[df.metric == "segment_1s_er"].value.dropna() >= 0).all()
    # Every cell kept its per-clip test outputs (linear and heareval, scene and event), and they
    # give back the protocol's own score.
    for _, r in df.iterrows():
        outputs = load_outputs(cell_dir(out, r.model, r.task, r.protocol))
        assert outputs is not None, (r.model, r.task, r.protocol)
        if not supports(r.metric):
            assert math.isnan(r.ci_low)
        elif not math.isnan(r.value):
            assert point_value(outputs, r.metric) == pytest.approx(r.value, abs=1e-6), tuple(r)
            assert 0 <= r.ci_low <= r.ci_high <= 1, tuple(r)
    assert (df.folds == 1).all() and df["std"].isna().all() and (df.seconds > 0).all()
    # The easy task is above chance (0.5) with the linear protocol. heareval's scores are
    # checked for validity only: on 8 training clips of the toy model's unstandardised
    # features its MLP stays near chance (tests/test_hear_tools.py checks heareval above
    # chance on hear_slicer). The manifest's param_grid must reach heareval's metadata.
    easy = df[(df.model == "toy") & (df.task == "instruments") & (df.metric == "top1_acc")
              & (df.protocol == "linear")]
    assert len(easy) == 1 and easy.value.iloc[0] >= 0.75, easy
    task_meta = next((cell_dir(out, "toy", "instruments", "heareval") / "work").rglob("task_metadata.json"))
    grid = json.loads(task_meta.read_text())["evaluation_params"]["task_specific_param_grid"]
    assert grid == {"batch_size": [4], "max_epochs": [40], "hidden_layers": [0]}

    md = (out / "results.md").read_text()
    for s in ("## Protocol `linear`", "## Protocol `heareval`", "| model | events | instruments | mean demo |",
              "| toy |", "| slicer |"):
        assert s in md
    assert "[n/a]" not in md.split("`[low, high]`")[0]  # every shown score has its interval
    png = (out / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # heareval really ran, in the cell's own folder, on links into the shared cache
    scores = list((cell_dir(out, "toy", "events", "heareval") / "work").rglob("test.predicted-scores.json"))
    assert len(scores) == 1
    cache = out / "embeddings"
    assert not list(cache.rglob("test.predicted-scores.json"))  # the cache stays clean
    assert len([d for d in cache.glob("*/*") if d.is_dir()]) == 4  # 2 models x 2 tasks

    # `report` rebuilds the same table from the cells
    before = (out / "results.csv").read_text()
    (out / "results.csv").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "results.csv").read_text() == before


class Interrupt(KeyboardInterrupt):
    pass


def test_interrupted_run_resumes_only_unfinished_cells(tasks_root, tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text(manifest_text(tasks_root, "  linear: {epochs: 3}\n",
                               models="  - {name: toy, module: hear_toy_module}\n"))
    manifest = load_manifest(m)
    out = tmp_path / "out"

    def stop(_):
        raise Interrupt()

    with pytest.raises(Interrupt):
        run_manifest(manifest, out, progress=False, on_cell=stop)
    first = collect_results(out)
    assert len(first) == 1 and first[0].ok
    done_file = cell_dir(out, first[0].model, first[0].task, "linear") / "result.json"
    stamp = done_file.stat().st_mtime_ns
    assert len(pending_cells(manifest, out)) == 1

    ran = []
    results = run_manifest(manifest, out, progress=False, on_cell=ran.append)
    assert len(ran) == 1 and ran[0].task != first[0].task
    assert done_file.stat().st_mtime_ns == stamp
    assert len(results) == 2 and all(r.ok for r in results)
    ran.clear()
    run_manifest(manifest, out, progress=False, on_cell=ran.append)
    assert ran == []  # everything finished: nothing is redone

    # other protocol settings (here the probe's seed) make every cell stale: all are redone
    import dataclasses
    manifest.linear = dataclasses.replace(manifest.linear, seed=1)
    assert len(pending_cells(manifest, out)) == 2
    run_manifest(manifest, out, progress=False, on_cell=ran.append)
    assert len(ran) == 2 and all(json.loads((cell_dir(out, r.model, r.task, "linear") / "result.json")
                                            .read_text())["details"]["fingerprint"]["protocol"]["seed"] == 1
                                 for r in ran)


def test_a_changed_checkpoint_makes_its_cells_stale(tasks_root, tmp_path):
    """Retraining a model under the same name must not reuse its old scores."""
    from hear_slicer.checkpoint import Checkpoint, save_checkpoint
    from hear_slicer.encoder import AudioNTT2020, EncoderConfig
    from hear_slicer.frontend import FrontendConfig

    ckpt = tmp_path / "model.pt"
    weights = AudioNTT2020(EncoderConfig()).state_dict()
    save_checkpoint(Checkpoint(FrontendConfig(), EncoderConfig(), 0.0, 1.0, weights), ckpt)
    m = tmp_path / "m.yaml"
    m.write_text(manifest_text(tasks_root, "  linear: {epochs: 2}\n",
                               models=f"  - {{name: net, module: hear_slicer, checkpoint: {ckpt}}}\n"))
    manifest = load_manifest(m).select(None, ["instruments"])
    out = tmp_path / "out"
    run_manifest(manifest, out, progress=False)
    assert pending_cells(manifest, out) == []
    save_checkpoint(Checkpoint(FrontendConfig(), EncoderConfig(), 1.0, 2.0, weights), ckpt)  # retrained
    assert len(pending_cells(manifest, out)) == 1


def test_failing_cells_do_not_stop_or_lose_the_others(tasks_root, tmp_path):
    broken = tmp_path / "tasks" / "broken-v1-full"
    shutil.copytree(tasks_root / "demo-instruments-v1-full", broken)
    victim = sorted((broken / "16000" / "test").iterdir())[0]
    victim.write_bytes(b"RIFF not really a wav file")
    m = tmp_path / "m.yaml"
    m.write_text(manifest_text(
        tasks_root, "  linear: {epochs: 3}\n",
        models="  - {name: toy, module: hear_toy_module}\n"
               "  - {name: badopt, module: hear_toy_module, options: {no_such_option: 1}}\n",
        extra_tasks=f"  - {{name: broken, path: {broken}}}\n"))
    out = tmp_path / "out"
    assert main(["run", str(m), "--out", str(out), "--no-progress"]) == 1  # some cell failed

    results = {(r.model, r.task): r for r in collect_results(out)}
    assert len(results) == 6
    assert results[("toy", "instruments")].ok and results[("toy", "events")].ok
    assert not results[("toy", "broken")].ok
    assert victim.name in results[("toy", "broken")].error
    for task in ("instruments", "events", "broken"):
        r = results[("badopt", task)]
        assert not r.ok and "no_such_option" in r.error
    md = (out / "results.md").read_text()
    assert "FAILED" in md and "toy / broken" in md
    df = pd.read_csv(out / "results.csv")
    assert (df[df.status == "failed"].value.isna()).all()
    ok = df[(df.status == "ok") & (df.metric == "top1_acc")].value
    assert len(ok) == 1 and not math.isnan(ok.iloc[0])

    # Fixing the task and rerunning redoes only the failed cells of the good model.
    shutil.copy(tasks_root / "demo-instruments-v1-full" / "16000" / "test" / victim.name, victim)
    ran = []
    run_manifest(load_manifest(m).select(models=["toy"]), out, progress=False, on_cell=ran.append)
    assert [(r.task, r.ok) for r in ran] == [("broken", True)]


def test_manifest_error_stops_before_any_work(tmp_path, capsys):
    m = tmp_path / "m.yaml"
    m.write_text("models: [{name: a, module: no_such_hear_module}]\ntasks: [missing-v1-full]\n")
    out = tmp_path / "out"
    assert main(["run", str(m), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no_such_hear_module" in err and "missing-v1-full" in err
    assert not out.exists()


def test_suite_mean_never_averages_an_error_rate_with_accuracies():
    from eval_suites.core.report import larger_is_better, markdown_report
    from eval_suites.core.results import CellResult, MetricScore

    def cell(task, metric, value):
        return CellResult(model="m", task=task, suite="s", protocol="linear", status="ok",
                          metrics=[MetricScore(metric=metric, value=value, std=None, folds=1)])

    assert larger_is_better("top1_acc") and larger_is_better("mAP")
    assert not larger_is_better("segment_1s_er")
    table = markdown_report([cell("a", "top1_acc", 0.8), cell("b", "top1_acc", 0.6),
                             cell("c", "segment_1s_er", 0.9)])
    row = next(line for line in table.splitlines() if line.startswith("| m |"))
    assert row.split("|")[-2].strip() == "0.700* [n/a]"  # (0.8 + 0.6) / 2, the error rate left out; no outputs stored
    assert "error-rate tasks are never averaged" in table
