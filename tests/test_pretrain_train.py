"""End to end: short CPU runs on real audio (espeak-ng, fluidsynth) with bad files mixed in,
checkpoints loadable by the HEAR plugin and accepted by hear-validator, exact resume (also
after a real SIGKILL of `python -m pretrain`), atomic checkpoints, NaN stop, the views of
objectives that ask for separate crops (COLA), and a 2-process torchrun run."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import hear_slicer
from hear_slicer.checkpoint import load_checkpoint
from hear_slicer.frontend import LogMelFrontend
from pretrain.__main__ import main as pretrain_main
from pretrain.augment import AugmentConfig, AugmentPipeline, KMixConfig, MixupConfig, RandomResizeCropConfig
from pretrain.config import load_config
from pretrain.data import AudioCrops, find_audio_files, make_loader, scan_files
from pretrain.objectives.cola import Cola
from pretrain.objectives.slicer import Slicer
from pretrain.train import TrainingDiverged, latest_checkpoint, train, two_views

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


def test_keep_steps_checkpoints_are_never_pruned(audio, tmp_path):
    """run.keep_steps keeps a learning curve's checkpoints; keep_last prunes only the others."""
    out = tmp_path / "run"
    train(tiny_config(audio, out, "run.steps=6", "run.checkpoint_every=1", "run.keep_last=1", "run.keep_steps=[2, 4]"))
    assert [p.name for p in sorted((out / "checkpoints").glob("step_*.pt"))] == [
        "step_00000002.pt", "step_00000004.pt", "step_00000006.pt"]


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


# ----------------------------------------------------------------------------- views from separate crops
def test_two_views_takes_one_view_per_crop_and_remembers_the_first():
    b, f, t = 3, 8, 12
    x = torch.randn(b, 2, f, t)  # (B, V, F, T)
    augment = AugmentPipeline(AugmentConfig(mixup=MixupConfig(memory=8), rrc=RandomResizeCropConfig(enabled=False),
                                            kmix=KMixConfig(enabled=False)), f, t)
    view_a, view_b = two_views(x, augment)  # mixup is the identity while its memory is empty
    assert torch.equal(view_a, x[:, 0]) and torch.equal(view_b, x[:, 1])
    assert len(augment.mixup.memory) == b and torch.equal(augment.mixup.memory.clips[:b], x[:, 0])
    one_crop = x[:, :1]
    view_a, view_b = two_views(one_crop, AugmentPipeline(AugmentConfig(
        mixup=MixupConfig(enabled=False), rrc=RandomResizeCropConfig(enabled=False), kmix=KMixConfig(enabled=False)), f, t))
    assert torch.equal(view_a, one_crop[:, 0]) and torch.equal(view_b, one_crop[:, 0])


NO_AUGMENT = ["augment.mixup.enabled=false", "augment.rrc.enabled=false", "augment.kmix.enabled=false"]


@pytest.mark.parametrize("objective, separate", [(Cola, True), (Slicer, False)])
def test_views_in_the_loop_come_from_separate_crops_only_when_asked(objective, separate, audio, tmp_path,
                                                                    monkeypatch):
    """The first step's views, with augmentations off, are exactly the log-mels of the loader's
    crops: crop 0 and crop 1 of each file for COLA, crop 0 twice for SLICER."""
    seen = []
    original = objective.forward

    def spy(self, view_a, view_b):
        seen.append((view_a.detach().clone(), view_b.detach().clone()))
        return original(self, view_a, view_b)

    monkeypatch.setattr(objective, "forward", spy)
    name = "cola" if objective is Cola else "slicer"
    sizes = [o for o in TINY if not o.startswith(("augment.", "objective."))]
    params = ["objective.params.embedding_dim=16"] if objective is Cola else [
        o for o in TINY if o.startswith("objective.")]
    cfg = load_config(REPO / f"pretrain/configs/{name}.yaml", [
        *sizes, *params, *NO_AUGMENT, f"data.path={audio}", f"run.out={tmp_path / 'run'}", "run.steps=1"])
    ckpt = load_checkpoint(train(cfg))
    view_a, view_b = seen[0]

    files, _ = scan_files(find_audio_files(audio))
    dataset = AudioCrops(files, 16000, round(cfg.data.crop_seconds * 16000), cfg.data.silence_peak,
                         crops_per_item=2)
    wave = next(iter(make_loader(dataset, cfg.data.batch_size, 0, seed=cfg.run.seed))).wave  # (B, 2, N)
    frontend = LogMelFrontend(cfg.frontend, ckpt.norm_mean, ckpt.norm_std)
    with torch.no_grad():
        first, second = frontend(wave[:, 0]), frontend(wave[:, 1])
    torch.testing.assert_close(view_a, first)
    torch.testing.assert_close(view_b, second if separate else first)
    assert not torch.allclose(first, second, atol=1e-2)  # the two crops really differ


# ----------------------------------------------------------------------------- a real kill
def _subprocess_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))


def _assert_same(a, b, where: str = "") -> None:
    """Exact equality of nested checkpoint state (dicts, lists, tensors, numbers)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ"
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _step_of(path: Path) -> int:
    return int(re.fullmatch(r"step_(\d{8})\.pt", path.name).group(1))


def _assert_checkpoints_complete(out: Path) -> None:
    """Every visible checkpoint loads and holds the step its name says; latest is the newest."""
    found = sorted((out / "checkpoints").glob("step_*.pt"))
    assert found, "no checkpoint"
    for path in found:
        assert load_checkpoint(path).training_state["step"] == _step_of(path), path
    assert latest_checkpoint(out) == found[-1]


@pytest.mark.slow  # a subprocess end to end (make test-fast skips it)
@pytest.mark.timeout(900)
def test_sigkill_then_resume_equals_uninterrupted(audio, tmp_path):
    """N steps, SIGKILL, --resume to 2N == 2N uninterrupted (weights, teacher, queue, memories,
    optimiser, RNG states, data position), resuming from whatever step the kill left."""
    n = 5
    argv = ["--config", str(REPO / "pretrain/configs/slicer.yaml"), "--set", *TINY, f"data.path={audio}",
            "data.num_workers=2", f"run.steps={2 * n}", "run.checkpoint_every=1", f"run.keep_last={2 * n}"]
    cmd = [sys.executable, "-m", "pretrain"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = subprocess.run([*cmd, *argv, "--out", str(straight)], cwd=tmp_path, env=_subprocess_env(),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]

    run = subprocess.Popen([*cmd, *argv, "--out", str(killed)], cwd=tmp_path, env=_subprocess_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # A hang here is ended by the test's pytest-timeout, not by a wall-clock assertion.
        while not any(_step_of(p) >= n for p in (killed / "checkpoints").glob("step_*.pt")):
            assert run.poll() is None, f"the run ended (code {run.returncode}) before reaching step {n}"
            time.sleep(0.02)
        assert run.poll() is None, "the run finished before it could be killed"
        os.killpg(run.pid, signal.SIGKILL)  # the trainer and its loader workers, mid-run
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL

    _assert_checkpoints_complete(killed)
    resumed_from = _step_of(latest_checkpoint(killed))
    assert n <= resumed_from < 2 * n
    proc = subprocess.run([*cmd, "--resume", str(killed)], cwd=tmp_path, env=_subprocess_env(),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming {latest_checkpoint(killed).parent / f'step_{resumed_from:08d}.pt'}" in (
        killed / "run.log").read_text()

    a = load_checkpoint(straight / "checkpoints" / f"step_{2 * n:08d}.pt")
    b = load_checkpoint(killed / "checkpoints" / f"step_{2 * n:08d}.pt")
    _assert_same(a.student, b.student, "student")
    _assert_same(a.teacher, b.teacher, "teacher")
    ta, tb = dict(a.training_state), dict(b.training_state)
    assert dict(map(tuple, ta.pop("skipped"))) == dict(map(tuple, tb.pop("skipped")))
    _assert_same(ta, tb, "training_state")  # objective (queue too), augment memories, optimizer, rng, ...
    assert int(ta["objective"]["queue.num_enqueued"]) == 2 * n * 2 * 4  # 2N steps x 2 views x B
    assert len(ta["augment"]) > 0 and int(ta["augment"]["mixup.memory.count"]) == 16


_WRITER = """
import sys, torch
from hear_slicer.checkpoint import Checkpoint, save_checkpoint
from hear_slicer.encoder import EncoderConfig, AudioNTT2020
from hear_slicer.frontend import FrontendConfig
enc = EncoderConfig(d=64, channels=8)
student = AudioNTT2020(enc).state_dict()
big = torch.randn(8_000_000)  # 32 MB of training state: each write takes a while
for i in range(1, 10_000):
    save_checkpoint(Checkpoint(frontend=FrontendConfig(), encoder=enc, norm_mean=0.0, norm_std=1.0, student=student,
                               training_state={"step": i, "big": big}), sys.argv[1] + f"/step_{i:08d}.pt")
    print(i, flush=True)
"""


@pytest.mark.slow  # a subprocess end to end (make test-fast skips it)
def test_a_kill_mid_write_never_leaves_a_partial_checkpoint_as_latest(tmp_path):
    """SIGKILL a process that writes checkpoints back to back: whatever the moment, every
    `step_*.pt` is complete and `latest_checkpoint` is the newest complete one."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    interrupted = 0
    for attempt in range(3):
        for p in folder.iterdir():
            p.unlink()
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder)], env=_subprocess_env(),
                                  stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            for _ in range(2 + attempt):  # let a few writes complete, then kill during the next
                writer.stdout.readline()
            time.sleep(0.01 * attempt)
            os.killpg(writer.pid, signal.SIGKILL)
            writer.wait(timeout=30)
        finally:
            if writer.poll() is None:
                os.killpg(writer.pid, signal.SIGKILL)
                writer.wait(timeout=30)
        partial = list(folder.glob(".step_*.tmp"))
        interrupted += bool(partial)
        found = sorted(folder.glob("step_*.pt"))
        assert len(found) >= 2 + attempt
        for path in found:
            assert load_checkpoint(path).training_state["step"] == _step_of(path)
        assert latest_checkpoint(tmp_path) == found[-1]
        assert all(p not in found for p in partial)
    assert interrupted > 0, "no kill landed mid-write; the test did not exercise the partial-file case"


# ----------------------------------------------------------------------------- hear-validator
@pytest.mark.slow
def test_slicer_checkpoint_passes_hear_validator(audio, tmp_path):
    out = tmp_path / "run"
    assert pretrain_main(["--config", str(REPO / "pretrain/configs/slicer.yaml"), "--out", str(out),
                          "--set", *TINY, f"data.path={audio}", "run.steps=2"]) == 0
    ckpt = out / "checkpoints" / "step_00000002.pt"
    assert load_checkpoint(ckpt).train_config["objective"]["name"] == "slicer"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([str(Path(sys.executable).parent / "hear-validator"), "hear_slicer", "--model", str(ckpt)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"hear-validator failed ({proc.returncode}):\n{output[-3000:]}"
    assert "Looks good!" in output, output[-3000:]
