"""End to end: short CPU runs on real audio (espeak-ng, fluidsynth) with bad files mixed in,
checkpoints loadable by the HEAR plugin, exact resume, NaN stop, and a 2-process torchrun run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hear_slicer
from hear_slicer.checkpoint import load_checkpoint
from pretrain.__main__ import main as pretrain_main
from pretrain.config import load_config
from pretrain.train import TrainingDiverged, train

from test_pretrain_corpus import BAD_FILES, make_corpus

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]

TINY = [
    "encoder.d=64", "encoder.channels=8", "data.batch_size=4", "data.num_workers=0",
    "objective.params.queue_size=40", "objective.params.n_clusters=8", "objective.params.instance_dim=16",
    "augment.mixup.memory=16", "augment.kmix.memory=16", "augment.kmix.r=4", "stats.min_files=8",
    "optim.warmup_steps=2", "run.log_every=1", "run.progress=false",
]


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("pretrain_corpus"), n_speech=6, n_music=4)


def tiny_config(audio: Path, out: Path, *extra: str):
    return load_config(REPO / "pretrain/configs/slicer.yaml", TINY + [f"data.path={audio}", f"run.out={out}", *extra])


def test_short_run_skips_bad_files_and_exports_a_hear_model(audio, tmp_path):
    out = tmp_path / "run"
    code = pretrain_main(["--config", str(REPO / "pretrain/configs/slicer.yaml"), "--out", str(out),
                          "--set", *TINY, f"data.path={audio}", "data.num_workers=2", "run.steps=4",
                          "run.checkpoint_every=2", "run.keep_last=1"])
    assert code == 0
    ckpts = sorted((out / "checkpoints").glob("step_*.pt"))
    assert [p.name for p in ckpts] == ["step_00000004.pt"]  # keep_last=1 pruned step 2
    log = (out / "run.log").read_text()
    for name in BAD_FILES:
        assert name in log  # every bad file listed in the run log
    assert "4 file(s) skipped" in log
    assert (out / "loss.png").stat().st_size > 0
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,lr,loss") and len(rows) == 5
    ck = load_checkpoint(ckpts[0])
    assert ck.provenance["steps"] == 4 and ck.train_config["objective"]["name"] == "slicer"
    assert ck.training_state["objective"]["queue.num_enqueued"].item() == 4 * 2 * 4  # 4 steps x 2 views x B
    model = hear_slicer.load_model(str(ckpts[0]))
    emb = hear_slicer.get_scene_embeddings(torch.rand(2, 16000) * 2 - 1, model)
    assert emb.shape == (2, 64) and torch.isfinite(emb).all()
    # the student weights in the checkpoint are the trained ones, not the initial ones
    assert not torch.equal(ck.student["fc.0.weight"], ck.teacher["fc.0.weight"])


def test_resume_equals_uninterrupted(audio, tmp_path):
    full = train(tiny_config(audio, tmp_path / "full", "run.steps=6", "run.checkpoint_every=3"))
    half = tmp_path / "full" / "checkpoints" / "step_00000003.pt"
    resumed = train(tiny_config(audio, tmp_path / "resumed", "run.steps=6", "run.checkpoint_every=3"), resume=half)
    a, b = load_checkpoint(full).training_state, load_checkpoint(resumed).training_state
    assert a["step"] == b["step"] == 6
    for name, tensor in a["objective"].items():
        assert torch.equal(tensor, b["objective"][name]), name  # exact, incl. teacher, heads, queue
    for name, tensor in a["augment"].items():
        assert torch.equal(tensor, b["augment"][name]), name
    for pid, st in a["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg"], b["optimizer"]["state"][pid]["exp_avg"])
    # and the run really trained between the two checkpoints
    early = load_checkpoint(half).training_state["objective"]
    assert not torch.equal(early["encoder.fc.0.weight"], a["objective"]["encoder.fc.0.weight"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(audio, tmp_path):
    cfg = tiny_config(audio, tmp_path / "nan", "run.steps=8", "run.checkpoint_every=1", "optim.warmup_steps=0",
                      "optim.lr=1e30", "optim.grad_clip=0")
    with pytest.raises(TrainingDiverged, match="last good checkpoint is .*step_"):
        train(cfg)
    kept = sorted((tmp_path / "nan" / "checkpoints").glob("step_*.pt"))
    assert kept
    ck = load_checkpoint(kept[-1])  # still a readable checkpoint
    assert ck.training_state["step"] < 8


@pytest.mark.slow
def test_torchrun_two_processes(audio, tmp_path):
    out = tmp_path / "ddp"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "pretrain", "--config",
           str(REPO / "pretrain/configs/slicer.yaml"), "--out", str(out), "--set", *TINY, f"data.path={audio}",
           "run.steps=3", "run.checkpoint_every=3", "run.save_rank_states=true", "objective.params.queue_size=64"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(out / "rank0_final.pt", weights_only=True)
    r1 = torch.load(out / "rank1_final.pt", weights_only=True)
    for name, tensor in r0.items():
        if "running_" in name or "num_batches_tracked" in name:
            continue  # BatchNorm statistics are per process (no SyncBN)
        assert torch.equal(tensor, r1[name]), f"{name} differs between ranks"
    owners = r0["queue.owners"]
    assert int(r0["queue.num_enqueued"]) == 3 * 2 * 2 * 4  # steps x ranks x views x B
    assert (owners == 0).sum() == (owners == 1).sum() == 3 * 2 * 4  # half of the keys from each rank
    ck = load_checkpoint(out / "checkpoints" / "step_00000003.pt")
    assert ck.provenance["processes"] == 2
    assert torch.equal(ck.training_state["objective"]["queue.keys"], r0["queue.keys"])
