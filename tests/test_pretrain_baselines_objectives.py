"""BYOL-A, DeLoRes-S, DeLoRes-M and COLA objectives on a fixed batch of real audio.

The batch: espeak-ng speech and fluidsynth instruments written to wav files, read back,
two different 0.95 s crops of each file turned into log-mels by the project's frontend
(two views of the same clips). A tiny encoder keeps each step to milliseconds.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import soundfile as sf
import torch

from eval_suites.synthetic.synth import Note, espeak, fluidsynth_render, write_wav
from hear_slicer.encoder import EncoderConfig
from hear_slicer.frontend import LogMelFrontend
from pretrain.objectives import objective_class

from fast_subset import first_fast

torch.set_num_threads(1)

SR = 16000
CROP = int(0.95 * SR)
TINY_ENCODER = EncoderConfig(n_mels=64, channels=8, d=64, dropout=0.0)
TINY_PARAMS = {
    "byol_a": dict(projection_dim=16, projector_hidden=32, predictor_hidden=32),
    "delores_s": dict(projector_dim=8, projector_layers=3),
    "delores_m": dict(queue_size=256, head_dim=16, block_projector_dim=8),
    "cola": dict(embedding_dim=16),
}
NAMES = sorted(TINY_PARAMS)


@pytest.fixture(scope="module")
def views(tmp_path_factory) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views (16, 64, 96): different crops of the same 16 real recordings."""
    folder = tmp_path_factory.mktemp("audio")
    phrases = ["the quick brown fox", "jumps over the lazy dog", "seven silver swans", "hello world again"]
    clips = [espeak(p, voice=v) for p in phrases for v in ("en", "de")]
    for program in (0, 24, 40, 56, 73, 19, 33, 11):
        notes = [Note(program=program, pitch=48 + 5 * i, velocity=100, start=0.3 * i, duration=0.5) for i in range(6)]
        clips.append(fluidsynth_render(notes, duration=2.0))
    waves_a, waves_b = [], []
    rng = np.random.default_rng(0)
    for i, clip in enumerate(clips):
        path = folder / f"clip{i}.wav"
        write_wav(path, clip, SR)
        x, sr = sf.read(path, dtype="float32")
        assert sr == SR and len(x) > CROP
        starts = rng.integers(0, len(x) - CROP, size=2)
        waves_a.append(x[starts[0]:starts[0] + CROP])
        waves_b.append(x[starts[1]:starts[1] + CROP])
    frontend = LogMelFrontend()
    with torch.no_grad():
        mel_a = frontend.log_mel(torch.from_numpy(np.stack(waves_a)))
        mel_b = frontend.log_mel(torch.from_numpy(np.stack(waves_b)))
    both = torch.cat([mel_a, mel_b])
    mean, std = both.mean().item(), both.std().item()
    return (mel_a - mean) / std, (mel_b - mean) / std


def _make(name: str, seed: int = 0):
    torch.manual_seed(seed)
    cls = objective_class(name)
    return cls(TINY_ENCODER, cls.Config(**TINY_PARAMS[name])).train()


def _loss_with_queue(obj, queue_state, view_a, view_b) -> float:
    """Loss of the batch with the queue reset to `queue_state` (MoCo objectives), no state change."""
    probe = copy.deepcopy(obj)
    if queue_state is not None:
        probe.queue.load_state_dict(queue_state)
    with torch.no_grad():
        return probe(view_a, view_b).loss.item()


@pytest.mark.parametrize("name", first_fast(NAMES))
def test_overfitting_a_fixed_batch_lowers_the_loss(name, views):
    view_a, view_b = views
    obj = _make(name)
    # A MoCo queue would fill with keys of the very clips being fitted (copies of the
    # positives), so while overfitting one batch the negatives are held at the initial queue.
    queue0 = copy.deepcopy(obj.queue.state_dict()) if hasattr(obj, "queue") else None
    before = _loss_with_queue(obj, queue0, view_a, view_b)
    opt = torch.optim.Adam(obj.trainable_parameters(), lr=1e-3)
    for step in range(1, 41):
        out = obj(view_a, view_b)
        assert torch.isfinite(out.loss) and all(torch.isfinite(v) for v in out.metrics.values())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        obj.after_step(step, 40)
        if queue0 is not None:
            obj.queue.load_state_dict(queue0)
    after = _loss_with_queue(obj, queue0, view_a, view_b)
    assert after < 0.8 * before, f"{name}: loss {before:.4f} -> {after:.4f} after 40 steps on one batch"


@pytest.mark.parametrize("name", NAMES)
def test_forward_leaves_state_alone_and_state_dict_round_trips(name, views):
    view_a, view_b = views
    obj = _make(name, seed=1)
    opt = torch.optim.Adam(obj.trainable_parameters(), lr=1e-3)
    for step in (1, 2):
        out = obj(view_a, view_b)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        obj.after_step(step, 3)
    state = copy.deepcopy(obj.state_dict())
    obj(view_a, view_b)  # the contract: forward changes no state used by later steps
    for key, value in obj.state_dict().items():
        if "running_" in key or "num_batches_tracked" in key:
            continue  # BatchNorm statistics follow every forward in train mode
        assert torch.equal(value, state[key]), f"{name}: forward changed {key}"
    fresh = _make(name, seed=2)
    fresh.load_state_dict(state)
    obj.load_state_dict(state)
    torch.manual_seed(3)
    expected = obj(view_a, view_b).loss
    torch.manual_seed(3)
    assert fresh(view_a, view_b).loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_byol_a_target_is_the_ema_of_the_online_network(views):
    obj = _make("byol_a")
    m = obj.cfg.momentum
    opt = torch.optim.SGD(obj.trainable_parameters(), lr=0.1)
    out = obj(*views)
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    teacher_before = {k: v.clone() for k, v in obj.teacher_encoder.named_parameters()}
    assert not all(p.requires_grad for p in obj.teacher_encoder.parameters())
    obj.after_step(1, 1)
    for name, s in obj.encoder.named_parameters():
        expected = m * teacher_before[name] + (1 - m) * s.detach()
        torch.testing.assert_close(dict(obj.teacher_encoder.named_parameters())[name], expected)
    assert set(map(id, obj.trainable_parameters())).isdisjoint(map(id, obj.teacher_projector.parameters()))
    assert obj.teacher_for_export() is obj.teacher_encoder and obj.encoder_for_export() is obj.encoder


def test_delores_m_enqueues_the_teacher_keys_of_the_step(views):
    obj = _make("delores_m")
    view_a, view_b = views
    b = view_a.shape[0]
    with torch.no_grad():
        torch.manual_seed(7)
        obj(view_a, view_b)
        keys = obj._pending_keys.clone()  # (B, H) teacher keys of view b
        # They are the teacher's unit keys of view b, computed in split-BN groups: the same
        # permutation (same seed), each group through its own forward.
        torch.manual_seed(7)
        perm = torch.randperm(b)
        teacher = copy.deepcopy(obj.teacher)
        expected = torch.empty_like(keys)
        for group in perm.tensor_split(obj.cfg.split_bn_groups):
            expected[group] = teacher(view_b[group])[0]
    assert obj.cfg.split_bn_groups > 1
    torch.testing.assert_close(keys, expected)
    torch.testing.assert_close(keys.norm(dim=1), torch.ones(b))
    obj.after_step(1, 1)
    torch.testing.assert_close(obj.queue.keys[:b], keys)
    assert int(obj.queue.ptr) == b and obj.queue.owners[:b].eq(0).all()


def test_delores_m_block_projectors_match_the_conv_blocks():
    cls = objective_class("delores_m")
    obj = cls(EncoderConfig(), cls.Config(queue_size=8, block_projector_dim=4))
    # 64 channels x (64 / 2^k) mel bins after block k: LAPE's 2048, 1024, 512.
    assert obj.block_dims == [2048, 1024, 512]
    assert [p[0].in_features for p in obj.block_projectors] == [2048, 1024, 512]
    assert all(p[0].bias is None for p in obj.block_projectors)


def test_delores_s_projector_is_the_recipe_one():
    cls = objective_class("delores_s")
    obj = cls(EncoderConfig(), cls.Config())
    linears = [m for m in obj.projector if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 2048)] * 3
    assert all(m.bias is None for m in linears)


def test_cola_has_no_teacher_and_uses_its_bilinear_weight(views):
    obj = _make("cola")
    assert obj.teacher_for_export() is None
    out = obj(*views)
    out.loss.backward()
    assert obj.similarity.weight.grad is not None and obj.similarity.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_bad_params_are_rejected(name):
    cls = objective_class(name)
    field = {"byol_a": "momentum", "delores_s": "projector_dim", "delores_m": "temperature",
             "cola": "embedding_dim"}[name]
    with pytest.raises(ValueError, match=name.replace("_", "_")):
        cls.Config(**{field: -1})
