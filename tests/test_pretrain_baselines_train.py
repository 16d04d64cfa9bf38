"""The baselines end to end in the shared trainer: `python -m pretrain --config
pretrain/configs/<objective>.yaml` on a folder of real audio (espeak-ng speech, fluidsynth
instruments, plus corrupt/empty/silent files), checkpoints loading with
`hear_slicer.load_model`, exact resume, and 2-process torchrun runs on CPU.

The shipped config files are used as they are; only sizes are shrunk with `--set`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hear_slicer
from eval_suites.synthetic.synth import espeak
from hear_slicer.checkpoint import load_checkpoint
from pretrain.__main__ import main
from test_pretrain_corpus import make_corpus

from fast_subset import first_fast

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = {
    "byol_a": ["objective.params.projection_dim=16", "objective.params.projector_hidden=32",
               "objective.params.predictor_hidden=32"],
    "delores_s": ["objective.params.projector_dim=16"],
    "delores_m": ["objective.params.queue_size=32", "objective.params.head_dim=16",
                  "objective.params.block_projector_dim=16"],
    "cola": ["objective.params.embedding_dim=16"],
}
NAMES = sorted(TINY)
WITH_TEACHER = {"byol_a", "delores_m"}


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"), n_speech=4, n_music=4)


def _argv(name: str, audio: Path, out: Path, steps: int, extra=()) -> list[str]:
    return ["--config", str(ROOT / "pretrain" / "configs" / f"{name}.yaml"), "--set",
            f"data.path={audio}", f"run.out={out}", f"run.steps={steps}", "data.batch_size=4",
            "data.num_workers=0", "encoder.channels=8", "encoder.d=64", "run.checkpoint_every=2",
            "run.progress=false", "run.log_every=1", "stats.min_files=4", "optim.warmup_steps=1",
            "augment.mixup.memory=8", *TINY[name], *extra]


def _objective_state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).training_state["objective"]


@pytest.mark.parametrize("name", first_fast(NAMES))
def test_config_trains_exports_and_resumes_exactly(name, audio, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(_argv(name, audio, straight, steps=4)) == 0
    final = straight / "checkpoints" / "step_00000004.pt"

    # The checkpoint is the project's format: the plugin loads it and embeds real audio.
    ckpt = load_checkpoint(final)
    assert ckpt.provenance["objective"] == name and ckpt.provenance["steps"] == 4
    assert (ckpt.teacher is not None) == (name in WITH_TEACHER)
    assert ckpt.train_config["objective"]["name"] == name
    model = hear_slicer.load_model(str(final))
    speech = torch.from_numpy(espeak("testing the checkpoint", voice="en"))[None, :24000]
    emb = hear_slicer.get_scene_embeddings(speech, model)
    assert emb.shape == (1, model.scene_embedding_size) and torch.isfinite(emb).all()
    log = (straight / "log.csv").read_text().splitlines()
    assert len(log) == 1 + 4  # header + one row per step (log_every=1)

    # 2 steps, stop, resume to 4: the same state as 4 uninterrupted steps.
    assert main(_argv(name, audio, split, steps=2)) == 0
    assert main(["--resume", str(split), "--set", "run.steps=4"]) == 0
    a, b = _objective_state(final), _objective_state(split / "checkpoints" / "step_00000004.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{name}: {key} differs after resume"


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WITH_TEACHER))
def test_two_process_torchrun(name, audio, tmp_path):
    out = tmp_path / "ddp"
    cmd = [str(BIN / "torchrun"), "--nnodes=1", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "pretrain", *_argv(name, audio, out, steps=3, extra=["run.save_rank_states=true"])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    ranks = [torch.load(out / f"rank{r}_final.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        if "running_" in key or "num_batches_tracked" in key:
            continue  # each process keeps its own BatchNorm statistics
        assert torch.equal(ranks[0][key], ranks[1][key]), f"{name}: {key} differs between ranks"
    teacher_keys = [k for k in ranks[0] if k.startswith("teacher") and "running_" not in k]
    student_of = {"byol_a": lambda k: k.replace("teacher_", ""), "delores_m": lambda k: k.replace("teacher.", "student.")}
    assert any(not torch.equal(ranks[0][k], ranks[0][student_of[name](k)]) for k in teacher_keys), \
        "the teacher should lag the student"
    if name == "delores_m":
        owners = ranks[0]["queue.owners"]
        assert set(owners.tolist()) >= {0, 1}, "the queue should hold keys from both processes"
        assert int(ranks[0]["queue.num_enqueued"]) == 3 * 2 * 4  # steps x processes x batch
    ckpt = load_checkpoint(out / "checkpoints" / "step_00000003.pt")
    assert ckpt.provenance["processes"] == 2
    hear_slicer.load_model(str(out / "checkpoints" / "step_00000003.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_baseline_checkpoint_passes_hear_validator(name, audio, tmp_path):
    out = tmp_path / "run"
    assert main(_argv(name, audio, out, steps=2)) == 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [str(BIN / "hear-validator"), "hear_slicer", "--model", str(out / "checkpoints" / "step_00000002.pt")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"hear-validator failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
