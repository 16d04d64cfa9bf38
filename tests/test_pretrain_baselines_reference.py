"""BYOL-A, COLA, DeLoRes-S and DeLoRes-M losses against the formulas written out by hand.

Each objective's modules are run on two random views; the reference recomputes the loss
from their outputs with per-sample loops in float64 (cosines, bilinear cross-entropy,
BatchNorm-standardised cross-correlation, InfoNCE), without calling `pretrain.losses`.
Hyper-parameters differ from 1 and from each other so that a swapped or dropped term
changes the number. The configs' own checks (`__post_init__`) are tested at their
boundaries; the stricter YAML-level CHECKS are pretrain.config's.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from hear_slicer.encoder import AudioNTT2020, EncoderConfig
from pretrain.distributed import DistContext
from pretrain.objectives import objective_class

torch.set_num_threads(1)

ENC = EncoderConfig(n_mels=64, channels=8, d=64, dropout=0.0)
B = 6


def _views(seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(B, 64, 64, generator=g)
    return base + 0.5 * torch.randn(B, 64, 64, generator=g), base + 0.5 * torch.randn(B, 64, 64, generator=g)


def _make(name, seed=0, **params):
    torch.manual_seed(seed)
    cls = objective_class(name)
    ctx = DistContext()
    obj = cls(ENC, cls.Config(**params), ctx).train()
    assert obj.encoder_cfg is ENC and obj.dist is ctx
    return obj


def _one_bn_group(name):
    """split_bn_groups=1 where the config has it: the teacher's plain forward, as the reference."""
    fields = {f.name for f in dataclasses.fields(objective_class(name).Config)}
    return {"split_bn_groups": 1} if "split_bn_groups" in fields else {}


def _perturb_teacher(*modules):
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _byol_by_hand(p, z):
    return sum(2 - 2 * _cos(pb, zb) for pb, zb in zip(p.double().tolist(), z.double().tolist())) / len(p)


def _barlow_by_hand(z1, z2, lambd, scale, eps):
    z1, z2 = z1.double(), z2.double()
    n, d = z1.shape

    def standardise(z):
        mean = z.mean(0)
        var = ((z - mean) ** 2).mean(0)
        return (z - mean) / torch.sqrt(var + eps)

    a, b = standardise(z1), standardise(z2)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = float(sum(a[k, i] * b[k, j] for k in range(n)) / n)
            total += (1 - c) ** 2 if i == j else lambd * c * c
    return scale * total


def _info_nce_by_hand(q, k, negatives, t):
    total = 0.0
    for qb, kb in zip(q.double(), k.double()):
        pos = math.exp(float(qb @ kb) / t)
        total += -math.log(pos / (pos + sum(math.exp(float(qb @ n) / t) for n in negatives.double())))
    return total / len(q)


def test_byol_a_loss_is_the_sum_of_both_directions():
    obj = _make("byol_a", projection_dim=8, projector_hidden=16, predictor_hidden=16)
    _perturb_teacher(obj.teacher_encoder, obj.teacher_projector)
    view_a, view_b = _views()
    probe = copy.deepcopy(obj)
    with torch.no_grad():
        p = [probe.predictor(probe.projector(AudioNTT2020.pool(probe.encoder(v)))) for v in (view_a, view_b)]
        z = [probe.teacher_projector(AudioNTT2020.pool(probe.teacher_encoder(v))) for v in (view_a, view_b)]
    expected = _byol_by_hand(p[0], z[1]) + _byol_by_hand(p[1], z[0])
    out = obj(view_a, view_b)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert set(out.metrics) == {"cos_sim"}
    assert out.metrics["cos_sim"].item() == pytest.approx(1 - expected / 4, rel=1e-5)


@pytest.mark.parametrize("symmetric", [False, True])
def test_cola_loss_is_bilinear_cross_entropy(symmetric):
    obj = _make("cola", embedding_dim=8, symmetric=symmetric)
    view_a, view_b = _views(1)
    assert obj.similarity.bias is None  # COLA's similarity is the bilinear g(x)^T W g(y), W alone
    linear, norm = obj.head[0], obj.head[1]
    with torch.no_grad():  # COLA's head: a dense layer, layer normalisation, tanh
        e = [torch.tanh(F.layer_norm(F.linear(AudioNTT2020.pool(obj.encoder(v)), linear.weight, linear.bias), (8,),
                                     norm.weight, norm.bias)).double() for v in (view_a, view_b)]
        w = obj.similarity.weight.double()

    def direction(anchors, positives):
        total = 0.0
        for i in range(B):
            logits = [float(anchors[i] @ w @ positives[j]) for j in range(B)]
            total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
        return total / B

    if symmetric:  # the second direction: second segments as anchors against all first segments
        expected = 0.5 * (direction(e[0], e[1]) + sum(
            -float(e[0][i] @ w @ e[1][i]) + math.log(sum(math.exp(float(e[0][j] @ w @ e[1][i])) for j in range(B)))
            for i in range(B)) / B)
    else:
        expected = direction(e[0], e[1])
    assert obj(view_a, view_b).loss.item() == pytest.approx(expected, rel=1e-5)


def test_delores_s_loss_is_barlow_twins_with_its_config():
    obj = _make("delores_s", projector_dim=6, projector_layers=2, lambd=0.3, scale=0.7, bn_eps=1e-3)
    view_a, view_b = _views(2)
    with torch.no_grad():
        z = [copy.deepcopy(obj).projector(AudioNTT2020.pool(obj.encoder(v))) for v in (view_a, view_b)]
    expected = _barlow_by_hand(z[0], z[1], 0.3, 0.7, 1e-3)
    assert obj(view_a, view_b).loss.item() == pytest.approx(expected, rel=1e-5)


def test_delores_m_loss_is_moco_plus_block_barlow_terms():
    obj = _make("delores_m", queue_size=20, head_dim=8, block_projector_dim=4, block_projector_layers=2,
                temperature=0.3, lambd=0.4, scale=0.6, bn_eps=1e-3, **_one_bn_group("delores_m"))
    _perturb_teacher(obj.teacher)
    view_a, view_b = _views(3)
    probe = copy.deepcopy(obj)
    with torch.no_grad():
        q, q_blocks = probe.student(view_a)
        k, k_blocks = probe.teacher(view_b)
        moco = _info_nce_by_hand(q, k, obj.queue.keys, 0.3)
        barlow = [_barlow_by_hand(proj(a), proj(b), 0.4, 0.6, 1e-3)
                  for proj, a, b in zip(probe.block_projectors, q_blocks, k_blocks)]
    out = obj(view_a, view_b)
    assert out.loss.item() == pytest.approx(moco + sum(barlow), rel=1e-5)
    assert out.metrics["moco"].item() == pytest.approx(moco, rel=1e-5)
    for i, b in enumerate(barlow):
        assert out.metrics[f"barlow_b{i + 1}"].item() == pytest.approx(b, rel=1e-5)
    torch.testing.assert_close(obj._pending_keys, k)
    queue = obj.queue.keys.clone()
    obj.after_step(1, 1)
    torch.testing.assert_close(obj.queue.keys[:B], k)
    torch.testing.assert_close(obj.queue.keys[B:], queue[B:])
    assert obj.queue.owners[:B].eq(0).all() and obj._pending_keys is None
    obj.after_step(2, 2)  # nothing pending: the queue stays
    assert int(obj.queue.ptr) == B


# (objective, field, accepted boundary values, rejected values)
BOUNDARIES = [
    ("byol_a", "momentum", [0.0, 1.0], [-0.01, 1.01]),
    ("byol_a", "projection_dim", [1], [0]),
    ("byol_a", "projector_hidden", [1], [0]),
    ("byol_a", "predictor_hidden", [1], [0]),
    ("cola", "embedding_dim", [1], [0]),
    ("delores_s", "projector_dim", [1], [0]),
    ("delores_s", "projector_layers", [1], [0]),
    ("delores_s", "lambd", [0.0], [-0.01]),
    ("delores_s", "scale", [1e-9], [0.0]),
    ("delores_s", "bn_eps", [0.0], [-1e-9]),
    ("delores_m", "queue_size", [1], [0]),
    ("delores_m", "head_dim", [1], [0]),
    ("delores_m", "momentum", [0.0, 1.0], [-0.01, 1.01]),
    ("delores_m", "temperature", [1e-9], [0.0]),
    ("delores_m", "block_projector_dim", [1], [0]),
    ("delores_m", "block_projector_layers", [1], [0]),
    ("delores_m", "lambd", [0.0], [-0.01]),
    ("delores_m", "scale", [0.0], [-0.01]),
    ("delores_m", "bn_eps", [0.0], [-1e-9]),
]


@pytest.mark.parametrize("name,field,ok,bad", BOUNDARIES, ids=[f"{n}-{f}" for n, f, _, _ in BOUNDARIES])
def test_config_boundaries(name, field, ok, bad):
    cls = objective_class(name).Config
    for value in ok:
        assert getattr(cls(**{field: value}), field) == value
    for value in bad:
        with pytest.raises(ValueError, match=name) as err:
            cls(**{field: value})
        assert str(value) in str(err.value)
