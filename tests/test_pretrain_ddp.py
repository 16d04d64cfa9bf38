"""DDP at scale: two torchrun "nodes" (c10d rendezvous on localhost) training SLICER, exact
resume of a 2-process run (per-process augmentation memories, BatchNorm statistics and RNG
states), and the SyncBatchNorm option."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hear_slicer.checkpoint import load_checkpoint
from hear_slicer.encoder import AudioNTT2020, EncoderConfig
from pretrain.config import load_config
from pretrain.distributed import DistContext, sync_batchnorm
from pretrain.rank_state import batchnorm_buffers, rank_state_path
from pretrain.train import _train

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = [
    "encoder.d=32", "encoder.channels=4", "data.batch_size=4", "data.num_workers=0",
    "objective.params.queue_size=64", "objective.params.n_clusters=4", "objective.params.instance_dim=8",
    "augment.mixup.memory=8", "augment.kmix.memory=8", "augment.kmix.r=2", "stats.min_files=8",
    "optim.warmup_steps=1", "run.log_every=1", "run.progress=false", "run.save_rank_states=true",
]


def tone_corpus(root: Path, n: int = 8) -> Path:
    """n short stereo files of distinct tone mixtures, at 44.1 and 16 kHz, WAV and FLAC."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        sr = 44100 if i % 2 else 16000
        t = np.arange(int(1.5 * sr)) / sr
        x = sum(a * np.sin(2 * np.pi * f * t) for f, a in zip(rng.uniform(100, 4000, 3), rng.uniform(0.05, 0.3, 3)))
        x = np.stack([x, 0.5 * x], axis=1) + 0.01 * rng.standard_normal((len(t), 2))
        sf.write(root / f"clip{i}.{'flac' if i % 3 else 'wav'}", x.astype(np.float32), sr)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def two_nodes(tmp: Path, *args: str) -> None:
    """`torchrun --nnodes=2 --nproc_per_node=1` twice on this machine, one c10d rendezvous."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    port = free_port()
    cmd = [torchrun, "--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=localhost:{port}",
           f"--rdzv-id=test{port}", "-m", "pretrain", *args]
    logs = [open(tmp / f"node{i}_{port}.log", "w") for i in range(2)]
    nodes = [subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        codes = [node.wait(timeout=400) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
        for log in logs:
            log.close()
    assert codes == [0, 0], "\n".join((tmp / f"node{i}_{port}.log").read_text()[-3000:] for i in range(2))


def rank_files(out: Path, step: int) -> tuple[dict, dict]:
    """(rank 0's training state from the checkpoint, rank 1's saved part) at `step`."""
    ckpt = out / "checkpoints" / f"step_{step:08d}.pt"
    return load_checkpoint(ckpt).training_state, torch.load(rank_state_path(ckpt, 1), weights_only=True)


def assert_same(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
def test_two_nodes_agree_and_a_stopped_run_resumes_bit_for_bit(tmp_path):
    audio = tone_corpus(tmp_path / "audio")
    base = ["--config", str(REPO / "pretrain/configs/slicer.yaml"), "--set", *TINY, f"data.path={audio}",
            "run.steps=4", "run.checkpoint_every=2", "run.keep_last=2"]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    two_nodes(tmp_path, *base, "--out", str(full))
    two_nodes(tmp_path, "--resume", str(full / "checkpoints" / "step_00000002.pt"), "--out", str(resumed))

    # the two nodes trained one model: every weight, the teacher and the queue agree
    r0, r1 = (torch.load(full / f"rank{r}_final.pt", weights_only=True) for r in (0, 1))
    per_process = set(batchnorm_buffers_names(r0))
    for name, tensor in r0.items():
        if name not in per_process:
            assert torch.equal(tensor, r1[name]), f"{name} differs between the nodes"
    owners = r0["queue.owners"]
    assert (owners == 0).sum() == (owners == 1).sum() == 4 * 2 * 4 and int(r0["queue.num_enqueued"]) == 4 * 2 * 2 * 4
    # ... while memories and BN statistics are per process: restoring rank 0's on rank 1 could not match
    s0, s1 = rank_files(full, 4)
    assert not torch.equal(s0["augment"]["mixup.memory.clips"], s1["augment"]["mixup.memory.clips"])
    assert any(not torch.equal(r0[k], r1[k]) for k in per_process)
    assert load_checkpoint(full / "checkpoints" / "step_00000004.pt").provenance["processes"] == 2

    # stopped at step 2 and resumed to 4 == 4 uninterrupted, on both processes, bit for bit
    for r in (0, 1):
        assert_same(torch.load(full / f"rank{r}_final.pt", weights_only=True),
                    torch.load(resumed / f"rank{r}_final.pt", weights_only=True), f"rank {r} final state")
    (a0, a1), (b0, b1) = rank_files(full, 4), rank_files(resumed, 4)
    assert_same(a1, b1, "rank 1's memories and BN statistics")
    a0, b0 = dict(a0), dict(b0)
    assert dict(map(tuple, a0.pop("skipped"))) == dict(map(tuple, b0.pop("skipped")))
    assert_same(a0, b0, "training_state")  # objective, rank 0's memories, optimiser, every rank's RNG
    # pruning removes a checkpoint's rank files with it (keep_last=2: steps 2 and 4 kept in full)
    assert sorted(p.name for p in (resumed / "checkpoints" / "ranks").iterdir()) == [
        "step_00000004.rank1.pt"] and sorted(p.name for p in (full / "checkpoints" / "ranks").iterdir()) == [
        "step_00000002.rank1.pt", "step_00000004.rank1.pt"]


def batchnorm_buffers_names(state: dict) -> list[str]:
    """Names of BatchNorm statistics in a Slicer state dict (per process without SyncBatchNorm)."""
    return [k for k in state if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]


def test_sync_batchnorm_keeps_names_and_is_refused_on_cpu(tmp_path):
    cfg_enc = EncoderConfig(d=32, channels=4)
    enc = AudioNTT2020(cfg_enc)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    synced = sync_batchnorm(enc)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in synced.modules())
    AudioNTT2020(cfg_enc).load_state_dict(synced.state_dict())  # exported weights load into the plain encoder
    assert_same(before, dict(synced.state_dict()), "state after conversion")
    assert set(batchnorm_buffers(synced)) == set(batchnorm_buffers_names(before))

    cfg = load_config(REPO / "pretrain/configs/slicer.yaml", ["run.sync_batchnorm=true", "run.device=cpu",
                                                               f"run.out={tmp_path / 'run'}"])
    with pytest.raises(ValueError, match="run.sync_batchnorm=true needs CUDA"):
        _train(cfg, None, DistContext(rank=0, world_size=2))  # refused before any collective call
    with pytest.raises(ValueError, match="run.sync_batchnorm must be true or false"):
        load_config(None, ["run.sync_batchnorm=2"])


def test_rank_state_round_trip_and_prune(tmp_path):
    """A process's memories and BN statistics come back exactly; a checkpoint's pruning takes them along."""
    from pretrain.augment import AugmentConfig, AugmentPipeline
    from pretrain.objectives.slicer import Slicer, SlicerConfig
    from pretrain.rank_state import load_rank_state, prune_rank_states, save_rank_state

    def parts(seed: int):
        torch.manual_seed(seed)
        aug = AugmentPipeline(AugmentConfig(), 16, 12)
        obj = Slicer(EncoderConfig(n_mels=16, d=32, channels=4), SlicerConfig(queue_size=8, n_clusters=4,
                                                                             instance_dim=8))
        aug.remember(torch.randn(3, 16, 12))
        obj.train()
        obj._student(torch.randn(4, 16, 12))  # moves the BN running statistics
        return aug, obj

    ckpt = tmp_path / "checkpoints" / "step_00000007.pt"
    aug, obj = parts(0)
    path = save_rank_state(ckpt, 3, aug, obj)
    assert path == tmp_path / "checkpoints" / "ranks" / "step_00000007.rank3.pt"
    aug2, obj2 = parts(1)
    assert not torch.equal(aug.mixup.memory.clips, aug2.mixup.memory.clips)
    assert load_rank_state(ckpt, 3, aug2, obj2) and not load_rank_state(ckpt, 2, aug2, obj2)
    assert_same(dict(aug.state_dict()), dict(aug2.state_dict()), "memories")
    assert_same(batchnorm_buffers(obj), batchnorm_buffers(obj2), "BatchNorm statistics")
    with pytest.raises(ValueError, match="process 3, not 4"):
        path.rename(rank_state_path(ckpt, 4))
        load_rank_state(ckpt, 4, aug2, obj2)
    rank_state_path(ckpt, 4).rename(path)
    other = tmp_path / "checkpoints" / "step_00000008.pt"
    save_rank_state(other, 1, aug, obj)
    prune_rank_states(ckpt)
    assert sorted(p.name for p in path.parent.iterdir()) == ["step_00000008.rank1.pt"]
