"""Mixed precision (`run.precision`, `pretrain.precision`): every objective trains a few bf16 steps
on CPU with finite losses and resumes exactly; losses and the key queue stay float32 while the
encoder really runs in bfloat16; fp16 is refused on CPU before any work; checkpoints whose
config still says `run.amp` load and resume. The `cuda`-marked tests run bf16 and fp16 on a GPU
(skipped without CUDA; `pytest -m cuda` on a GPU machine, or `python benchmarks/gpu.py`)."""
from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hear_slicer.checkpoint import load_checkpoint, save_checkpoint
from hear_slicer.encoder import EncoderConfig
from pretrain.__main__ import main
from pretrain.config import ConfigError, config_from_dict, load_config
from pretrain.losses.instance import info_nce
from pretrain.objectives.slicer import Slicer, SlicerConfig
from pretrain import precision as precision_mod
from pretrain.precision import PrecisionError, autocast, autocast_dtype, cpu_bf16_note, float32_loss

from fast_subset import first_fast

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "slicer": ["objective.params.queue_size=32", "objective.params.n_clusters=8", "objective.params.instance_dim=16",
               "augment.kmix.memory=8", "augment.kmix.r=4"],
    "byol_a": ["objective.params.projection_dim=16", "objective.params.projector_hidden=32",
               "objective.params.predictor_hidden=32"],
    "delores_s": ["objective.params.projector_dim=16"],
    "delores_m": ["objective.params.queue_size=32", "objective.params.head_dim=16",
                  "objective.params.block_projector_dim=16"],
    "cola": ["objective.params.embedding_dim=16"],
}
QUEUED = {"slicer", "delores_m"}


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    """Eight 1-2 s clips of harmonic tones, chirps and noise bursts, written with soundfile only
    (no espeak-ng or fluidsynth), so that the `cuda` tests also run on a bare GPU machine."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for i in range(8):
        t = np.arange(int(16000 * (1.0 + 0.15 * i))) / 16000
        f0 = 110.0 * 2 ** (i / 3)
        if i % 3 == 0:
            x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
        elif i % 3 == 1:
            x = np.sin(2 * np.pi * (f0 * t + 400.0 * t ** 2))
        else:
            x = rng.normal(size=t.size) * (np.sin(2 * np.pi * 3 * t) > 0)
        sf.write(root / f"clip{i}.wav", (0.3 * x / np.abs(x).max()).astype(np.float32), 16000)
    return root


def _argv(name: str, audio: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["--config", str(ROOT / "pretrain" / "configs" / f"{name}.yaml"), "--set",
            f"data.path={audio}", f"run.out={out}", f"run.steps={steps}", "data.batch_size=4",
            "data.num_workers=0", "encoder.channels=8", "encoder.d=64", "run.checkpoint_every=2",
            "run.progress=false", "run.log_every=1", "stats.min_files=4", "optim.warmup_steps=1",
            "augment.mixup.memory=8", *TINY[name], *extra]


def _losses(run: Path) -> list[float]:
    with open(run / "log.csv") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


# ----------------------------------------------------------------------------- unit level
def test_autocast_dtype_per_precision_and_device():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("auto", cpu) is None  # the old run.amp=true: nothing on CPU
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(PrecisionError, match=r"run.precision=fp16 needs a CUDA device.*run.precision=bf16"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(PrecisionError, match=r"must be one of \['auto', 'fp32', 'bf16', 'fp16'\], got 'fp8'"):
        autocast_dtype("fp8", cpu)


def test_bf16_autocast_runs_the_encoder_in_bf16_and_the_loss_in_fp32():
    torch.manual_seed(0)
    model = Slicer(EncoderConfig(channels=8, d=64), SlicerConfig(queue_size=16, n_clusters=4, instance_dim=8))
    seen = {}
    model.encoder.fc[0].register_forward_hook(lambda m, i, o: seen.update(fc=o.dtype) and None)
    x = torch.randn(4, 64, 96)
    with autocast(torch.device("cpu"), torch.bfloat16):
        out = model(x, x.flip(0))
    assert seen["fc"] == torch.bfloat16  # the encoder really ran in bfloat16
    assert out.loss.dtype == torch.float32 and math.isfinite(out.loss.item())
    model.after_step(1, 10)
    assert model.queue.keys.dtype == torch.float32  # the queue stays float32
    assert model.teacher_encoder.fc[0].weight.dtype == torch.float32


def test_float32_loss_matches_the_loss_computed_in_float32_outside_autocast():
    """Under bf16 autocast a wrapped loss equals the plain float32 computation (autocast would
    otherwise run its matmuls in bfloat16, off by about 1e-2)."""
    g = torch.Generator().manual_seed(0)
    q, k = [torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1) for _ in range(2)]
    neg = torch.nn.functional.normalize(torch.randn(64, 16, generator=g), dim=1)
    reference = info_nce(q, k, neg, 0.07)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        wrapped = info_nce(q.bfloat16(), k, neg, 0.07)
        unwrapped = info_nce.__wrapped__(q, k, neg, 0.07)  # the same code without the wrapper
    assert wrapped.dtype == torch.float32
    torch.testing.assert_close(wrapped, info_nce(q.bfloat16().float(), k, neg, 0.07), rtol=0, atol=0)
    assert (unwrapped.float() - reference).abs().item() > 1e-4  # autocast does change an unwrapped loss

    @float32_loss
    def dtype_of(x):
        return (x @ x.T).dtype

    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert dtype_of(torch.randn(3, 3)) == torch.float32


# ----------------------------------------------------------------------------- config
def test_legacy_amp_key_maps_to_precision_with_a_note():
    base = load_config(ROOT / "pretrain/configs/slicer.yaml").to_dict()
    assert base["run"]["precision"] == "auto" and "amp" not in base["run"]
    for amp, expected in ((True, "auto"), (False, "fp32")):
        old = {**base, "run": {k: v for k, v in base["run"].items() if k != "precision"} | {"amp": amp}}
        with pytest.warns(FutureWarning, match=f"run.amp={str(amp).lower()} is replaced by run.precision; "
                                               f"read as run.precision={expected}"):
            assert config_from_dict(old).run.precision == expected
    with pytest.raises(ConfigError, match="run.amp=True and run.precision='bf16' are both set"):
        config_from_dict({**base, "run": {**base["run"], "amp": True, "precision": "bf16"}})
    with pytest.raises(ConfigError, match="run.amp must be true or false, got 'yes'"):
        config_from_dict({"run": {"amp": "yes"}})
    with pytest.raises(ConfigError, match=r"run.precision must be one of \['auto', 'fp32', 'bf16', 'fp16'\]"):
        load_config(None, ["run.precision=half"])


def test_fp16_on_cpu_is_refused_before_any_work(audio, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv("slicer", audio, out, 2, "run.device=cpu", "run.precision=fp16")) == 2
    err = capsys.readouterr().err
    assert "run.precision=fp16 needs a CUDA device" in err and "run.precision=bf16" in err
    assert not out.exists()  # nothing written: no statistics, no log, no checkpoint


def test_bf16_on_a_cpu_without_it_in_hardware_is_warned_and_nowhere_else():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    note = cpu_bf16_note(cpu, torch.bfloat16, {"avx2", "fma"})
    assert note and "run.precision=fp32" in note and "23x" in note
    assert cpu_bf16_note(cpu, torch.bfloat16, {"avx2", "avx512_bf16"}) is None
    assert cpu_bf16_note(cpu, torch.bfloat16, {"amx_bf16"}) is None
    assert cpu_bf16_note(cpu, None, {"avx2"}) is None  # fp32
    assert cpu_bf16_note(cuda, torch.bfloat16, {"avx2"}) is None  # the GPU does the matmuls


def test_a_bf16_run_logs_the_warning_where_the_cpu_lacks_bf16(audio, tmp_path, monkeypatch):
    monkeypatch.setattr(precision_mod, "_cpu_flags", lambda: {"avx2"})
    out = tmp_path / "run"
    assert main(_argv("slicer", audio, out, 1, "run.device=cpu", "run.precision=bf16")) == 0
    assert "warning: run.precision=bf16 on a CPU without bfloat16 in hardware" in (out / "run.log").read_text()
    monkeypatch.setattr(precision_mod, "_cpu_flags", lambda: {"avx2", "amx_bf16"})
    again = tmp_path / "again"
    assert main(_argv("slicer", audio, again, 1, "run.device=cpu", "run.precision=bf16")) == 0
    assert "without bfloat16" not in (again / "run.log").read_text()


# ----------------------------------------------------------------------------- end to end, bf16 on CPU
@pytest.mark.parametrize("name", first_fast(sorted(TINY)))
def test_every_objective_trains_in_bf16_on_cpu_and_resumes_exactly(name, audio, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(_argv(name, audio, straight, 3, "run.device=cpu", "run.precision=bf16")) == 0
    losses = _losses(straight)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses), losses
    assert "autocast bfloat16 on cpu" in (straight / "run.log").read_text()
    final = load_checkpoint(straight / "checkpoints" / "step_00000003.pt").training_state
    assert final["scaler"] == {}  # no GradScaler for bf16
    if name in QUEUED:
        assert final["objective"]["queue.keys"].dtype == torch.float32
    # step 2's checkpoint, resumed for one step, gives step 3 exactly
    (split / "checkpoints").mkdir(parents=True)
    (split / "checkpoints" / "step_00000002.pt").write_bytes(
        (straight / "checkpoints" / "step_00000002.pt").read_bytes())
    assert main(["--resume", str(split), "--out", str(split), "--set", "run.steps=3"]) == 0
    resumed = load_checkpoint(split / "checkpoints" / "step_00000003.pt").training_state
    for key, tensor in final["objective"].items():
        assert torch.equal(tensor, resumed["objective"][key]), f"{name}: {key} differs after resume"


def test_bf16_changes_the_training_against_fp32(audio, tmp_path):
    """The planted difference: the same run in fp32 and bf16 ends with different weights
    (if autocast were silently off, they would be equal)."""
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(_argv("slicer", audio, out, 1, "run.device=cpu", f"run.precision={precision}")) == 0
        runs[precision] = load_checkpoint(out / "checkpoints" / "step_00000001.pt").student
    assert not torch.equal(runs["fp32"]["fc.0.weight"], runs["bf16"]["fc.0.weight"])
    torch.testing.assert_close(runs["fp32"]["fc.0.weight"], runs["bf16"]["fc.0.weight"], rtol=0, atol=1e-2)


def test_the_log_mel_frontend_runs_outside_autocast_in_a_bf16_run(audio, tmp_path, monkeypatch):
    """A bf16 run on CPU with the training step's frontend spied on: expects every batch's
    log-mels computed with autocast off, in float32 and equal to the float32 computation
    (inside bf16 autocast nnAudio's STFT convolution runs in bfloat16, off by about 1e-2
    everywhere: a planted bug that the run's finite losses did not show)."""
    import pretrain.train as train

    calls = []

    class SpiedFrontend(train.LogMelFrontend):
        def forward(self, wave):
            out = super().forward(wave)
            with torch.autocast("cpu", enabled=False):
                reference = super().forward(wave)
            calls.append((torch.is_autocast_enabled("cpu"), out.dtype, torch.equal(out, reference)))
            return out

    monkeypatch.setattr(train, "LogMelFrontend", SpiedFrontend)
    assert main(_argv("slicer", audio, tmp_path / "run", 1, "run.device=cpu", "run.precision=bf16")) == 0
    assert len(calls) == 1 and all(c == (False, torch.float32, True) for c in calls), calls


def test_a_checkpoint_with_the_old_amp_key_resumes(audio, tmp_path):
    out = tmp_path / "old"
    assert main(_argv("slicer", audio, out, 2, "run.device=cpu")) == 0
    path = out / "checkpoints" / "step_00000002.pt"
    ckpt = load_checkpoint(path)
    run = {k: v for k, v in ckpt.train_config["run"].items() if k != "precision"}
    ckpt.train_config["run"] = {**run, "amp": True}  # as written before run.precision existed
    save_checkpoint(ckpt, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["--resume", str(out), "--set", "run.steps=3"]) == 0
    assert any("run.amp=true is replaced by run.precision" in str(w.message) for w in caught)
    resumed = load_checkpoint(out / "checkpoints" / "step_00000003.pt")
    assert resumed.train_config["run"]["precision"] == "auto" and "amp" not in resumed.train_config["run"]


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", sorted(TINY))
def test_cuda_mixed_precision_trains_and_resumes(name, precision, audio, tmp_path):
    straight = tmp_path / "straight"
    assert main(_argv(name, audio, straight, 3, "run.device=cuda", f"run.precision={precision}")) == 0
    losses = _losses(straight)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses), losses
    dtype = "bfloat16" if precision == "bf16" else "float16"
    assert f"autocast {dtype} on cuda" in (straight / "run.log").read_text()
    state = load_checkpoint(straight / "checkpoints" / "step_00000002.pt").training_state
    assert bool(state["scaler"]) == (precision == "fp16")  # GradScaler state only for fp16
    if name in QUEUED:
        assert state["objective"]["queue.keys"].dtype == torch.float32
    split = tmp_path / "split"
    (split / "checkpoints").mkdir(parents=True)
    (split / "checkpoints" / "step_00000002.pt").write_bytes(
        (straight / "checkpoints" / "step_00000002.pt").read_bytes())
    assert main(["--resume", str(split), "--out", str(split), "--set", "run.steps=3"]) == 0
    a = load_checkpoint(straight / "checkpoints" / "step_00000003.pt").training_state["objective"]
    b = load_checkpoint(split / "checkpoints" / "step_00000003.pt").training_state["objective"]
    for key in a:  # GPU kernels may be non-deterministic: close, not bit-equal
        torch.testing.assert_close(a[key].float(), b[key].float(), rtol=1e-2, atol=1e-2, msg=key)
