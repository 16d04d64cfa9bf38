"""The SLICER objective (pretrain/objectives/slicer.py) against a loss written out by hand.

The reference recomputes, from the objective's own modules and the same two views, the
student queries and cluster probabilities and the teacher keys, then the loss with
literal per-sample loops in float64 (InfoNCE against the queue, Contrastive Clustering's
column NT-Xent and negative entropy), without calling `pretrain.losses`. Weights and
temperatures are all different from 1 and from each other, so a swapped or dropped
term changes the number.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from hear_slicer.encoder import EncoderConfig
from pretrain.distributed import DistContext, shuffled_forward
from pretrain.objectives.slicer import Slicer, SlicerConfig

torch.set_num_threads(1)

TINY_ENCODER = EncoderConfig(n_mels=64, channels=8, d=64, dropout=0.0)
B, FR = 6, 96


def _config(**over) -> SlicerConfig:
    params = dict(instance_dim=16, n_clusters=8, cluster_hidden=32, queue_size=40, instance_temperature=0.2,
                  cluster_temperature=0.5, momentum=0.9, entropy_term=True, entropy_weight=0.3,
                  instance_weight=0.7, cluster_weight=1.9, shuffle_bn=False)
    names = {f.name for f in dataclasses.fields(SlicerConfig)}
    if "split_bn_groups" in names:  # a single-process split BN of the teacher: off for the reference
        params["split_bn_groups"] = 1
    params.update(over)
    return SlicerConfig(**params)


def _make(seed: int = 0, **over) -> Slicer:
    torch.manual_seed(seed)
    return Slicer(TINY_ENCODER, _config(**over)).train()


def _views(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(B, 64, FR, generator=g)
    return base + 0.3 * torch.randn(B, 64, FR, generator=g), base + 0.3 * torch.randn(B, 64, FR, generator=g)


def _info_nce_by_hand(q, k, negatives, t) -> float:
    total = 0.0
    for b in range(q.shape[0]):
        pos = math.exp(float(q[b] @ k[b]) / t)
        neg = sum(math.exp(float(q[b] @ n) / t) for n in negatives)
        total += -math.log(pos / (pos + neg))
    return total / q.shape[0]


def _cluster_contrast_by_hand(p_a, p_b, t) -> float:
    c = p_a.shape[1]
    cols = [p_a[:, j] / p_a[:, j].norm() for j in range(c)] + [p_b[:, j] / p_b[:, j].norm() for j in range(c)]
    total = 0.0
    for i in range(2 * c):
        partner = (i + c) % (2 * c)
        denom = sum(math.exp(float(cols[i] @ cols[j]) / t) for j in range(2 * c) if j != i)
        total += -math.log(math.exp(float(cols[i] @ cols[partner]) / t) / denom)
    return total / (2 * c)


def _neg_entropy_by_hand(p) -> float:
    usage = p.sum(0) / p.sum()
    return math.log(p.shape[1]) + sum(float(u) * math.log(float(u)) for u in usage)


def _reference(obj: Slicer, view_a, view_b, negatives) -> dict[str, float]:
    """The loss and its parts from the objective's modules, written out sample by sample."""
    cfg = obj.cfg
    with torch.no_grad():
        parts = {}
        for name, v in (("a", view_a), ("b", view_b)):
            h = obj.encoder.clip_embedding(v)
            parts["q" + name] = F.normalize(obj.instance_head(h), dim=1).double()
            parts["p" + name] = obj.cluster_head(h).softmax(dim=1).double()
            parts["k" + name] = F.normalize(obj.teacher_instance_head(obj.teacher_encoder.clip_embedding(v)),
                                            dim=1).double()
    neg = negatives.double()
    instance = (_info_nce_by_hand(parts["qa"], parts["kb"], neg, cfg.instance_temperature)
                + _info_nce_by_hand(parts["qb"], parts["ka"], neg, cfg.instance_temperature))
    cluster = _cluster_contrast_by_hand(parts["pa"], parts["pb"], cfg.cluster_temperature)
    entropy = _neg_entropy_by_hand(parts["pa"]) + _neg_entropy_by_hand(parts["pb"])
    cluster_total = cluster + (cfg.entropy_weight * entropy if cfg.entropy_term else 0.0)
    pos = 0.5 * (float((parts["qa"] * parts["kb"]).sum(1).mean()) + float((parts["qb"] * parts["ka"]).sum(1).mean()))
    return dict(loss=cfg.instance_weight * instance + cfg.cluster_weight * cluster_total,
                loss_instance=instance, loss_cluster=cluster, neg_entropy=entropy, pos_similarity=pos,
                keys=torch.cat([parts["ka"], parts["kb"]]).float(),
                clusters_used=len(set(torch.cat([parts["pa"], parts["pb"]]).argmax(1).tolist())))


@pytest.mark.parametrize("entropy_term,shuffle_bn", [(True, False), (False, False), (True, True)])
def test_loss_equals_the_hand_written_reference(entropy_term, shuffle_bn):
    """shuffle_bn on one process is a plain teacher forward: the same reference."""
    obj = _make(seed=0, entropy_term=entropy_term, shuffle_bn=shuffle_bn)
    # A teacher that differs from the student, so a query/key mix-up changes the number.
    with torch.no_grad():
        for p in list(obj.teacher_encoder.parameters()) + list(obj.teacher_instance_head.parameters()):
            p.add_(0.05 * torch.randn_like(p))
    view_a, view_b = _views()
    with torch.no_grad():  # sharp, centred cluster logits: the clips spread over several clusters
        last = obj.cluster_head[2]
        last.weight.mul_(30.0)
        hidden = obj.cluster_head[:2](copy.deepcopy(obj.encoder).clip_embedding(torch.cat([view_a, view_b])))
        last.bias.copy_(-(hidden @ last.weight.T).mean(0))
    expected = _reference(copy.deepcopy(obj), view_a, view_b, obj.queue.keys.clone())
    assert expected["clusters_used"] >= 3
    out = obj(view_a, view_b)
    assert out.loss.item() == pytest.approx(expected["loss"], rel=1e-5, abs=1e-6)
    for name in ("loss_instance", "loss_cluster", "neg_entropy", "pos_similarity"):
        assert out.metrics[name].item() == pytest.approx(expected[name], rel=1e-5, abs=1e-6), name
    assert int(out.metrics["clusters_used"]) == expected["clusters_used"]
    # The keys stashed for after_step: teacher keys of view a then view b.
    torch.testing.assert_close(obj._pending_keys, expected["keys"], atol=1e-5, rtol=1e-5)


def test_the_loss_reads_the_queue_as_negatives():
    obj = _make(seed=0)
    view_a, view_b = _views()
    other = F.normalize(torch.randn_like(obj.queue.keys), dim=1)
    expected = _reference(copy.deepcopy(obj), view_a, view_b, other)
    obj.queue.keys.copy_(other)
    assert obj(view_a, view_b).loss.item() == pytest.approx(expected["loss"], rel=1e-5, abs=1e-6)


def test_after_step_moves_the_teacher_by_ema_and_enqueues_both_views_keys():
    obj = _make(seed=4)
    view_a, view_b = _views(1)
    opt = torch.optim.SGD(obj.trainable_parameters(), lr=0.5)
    out = obj(view_a, view_b)
    keys = obj._pending_keys.clone()  # (2B, E)
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    before = {n: p.clone() for n, p in obj.teacher_encoder.named_parameters()}
    before.update({"head." + n: p.clone() for n, p in obj.teacher_instance_head.named_parameters()})
    queue_before = obj.queue.keys.clone()
    obj.after_step(1, 10)
    m = obj.cfg.momentum
    for n, s in obj.encoder.named_parameters():
        torch.testing.assert_close(dict(obj.teacher_encoder.named_parameters())[n], m * before[n] + (1 - m) * s)
    for n, s in obj.instance_head.named_parameters():
        torch.testing.assert_close(dict(obj.teacher_instance_head.named_parameters())[n],
                                   m * before["head." + n] + (1 - m) * s)
    torch.testing.assert_close(obj.queue.keys[:2 * B], keys)  # FIFO slots 0 .. 2B-1, view a first
    torch.testing.assert_close(obj.queue.keys[2 * B:], queue_before[2 * B:])
    assert int(obj.queue.ptr) == 2 * B and obj.queue.owners[:2 * B].eq(0).all()
    assert obj._pending_keys is None
    obj.after_step(2, 10)  # nothing pending: the queue stays
    assert int(obj.queue.ptr) == 2 * B
    assert obj.teacher_for_export() is obj.teacher_encoder and obj.encoder_for_export() is obj.encoder
    assert not any(p.requires_grad for p in obj.teacher_encoder.parameters())
    assert set(map(id, obj.trainable_parameters())).isdisjoint(map(id, obj.teacher_instance_head.parameters()))


def test_overfitting_a_fixed_batch_lowers_the_loss():
    obj = _make(seed=1, entropy_term=False)
    view_a, view_b = _views(2)
    queue0 = copy.deepcopy(obj.queue.state_dict())  # negatives held fixed (see the baselines' test)

    def loss_now() -> float:
        probe = copy.deepcopy(obj)
        probe.queue.load_state_dict(queue0)
        with torch.no_grad():
            return probe(view_a, view_b).loss.item()

    before = loss_now()
    opt = torch.optim.Adam(obj.trainable_parameters(), lr=1e-3)
    for step in range(1, 41):
        out = obj(view_a, view_b)
        assert torch.isfinite(out.loss)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        obj.after_step(step, 40)
        obj.queue.load_state_dict(queue0)
    after = loss_now()
    assert after < 0.8 * before, f"loss {before:.4f} -> {after:.4f} after 40 steps on one batch"


def test_forward_leaves_state_alone_and_state_dict_round_trips():
    obj = _make(seed=1)
    view_a, view_b = _views(3)
    opt = torch.optim.Adam(obj.trainable_parameters(), lr=1e-3)
    for step in (1, 2):
        out = obj(view_a, view_b)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        obj.after_step(step, 3)
    state = copy.deepcopy(obj.state_dict())
    obj(view_a, view_b)
    for key, value in obj.state_dict().items():
        if "running_" in key or "num_batches_tracked" in key:
            continue
        assert torch.equal(value, state[key]), f"forward changed {key}"
    fresh = _make(seed=2)
    fresh.load_state_dict(state)
    obj.load_state_dict(state)
    assert fresh(view_a, view_b).loss.item() == pytest.approx(obj(view_a, view_b).loss.item(), rel=1e-6)


@pytest.mark.parametrize("cluster_hidden,width", [(0, 64), (32, 32)])
def test_modules_follow_the_config(cluster_hidden, width):
    """Cluster head Linear(d, hidden) - ReLU - Linear(hidden, C), hidden = d when 0 (released code)."""
    ctx = DistContext()
    torch.manual_seed(0)
    obj = Slicer(TINY_ENCODER, _config(cluster_hidden=cluster_hidden), ctx)
    assert obj.encoder_cfg is TINY_ENCODER and obj.dist is ctx and obj.cfg.cluster_hidden == cluster_hidden
    kinds = [type(m) for m in obj.cluster_head]
    assert kinds == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    assert (obj.cluster_head[0].in_features, obj.cluster_head[0].out_features) == (64, width)
    assert (obj.cluster_head[2].in_features, obj.cluster_head[2].out_features) == (width, 8)
    assert (obj.instance_head.in_features, obj.instance_head.out_features) == (64, 16)
    assert tuple(obj.queue.keys.shape) == (40, 16)


def test_after_step_before_any_forward_only_moves_the_teacher():
    obj = _make(seed=5)
    queue = copy.deepcopy(obj.queue.state_dict())
    obj.after_step(1, 1)
    for key, value in obj.queue.state_dict().items():
        assert torch.equal(value, queue[key]), key


def test_split_bn_groups_reach_the_teacher_forward():
    """On one process the teacher's keys come from `split_bn_groups` shuffled sub-batches
    (pretrain.distributed.split_forward, tested there); the config value must reach it."""
    names = {f.name for f in dataclasses.fields(SlicerConfig)}
    if "split_bn_groups" not in names:
        pytest.skip("no split BatchNorm in this version")
    view_a, view_b = _views(4)
    keys = {}
    for groups in (1, 3):
        obj = _make(seed=6, shuffle_bn=True, split_bn_groups=groups)
        torch.manual_seed(8)
        obj(view_a, view_b)
        keys[groups] = obj._pending_keys
        torch.manual_seed(8)
        with torch.no_grad():
            expected = torch.cat([shuffled_forward(obj._teacher_keys, v, DistContext(), groups)
                                  for v in (view_a, view_b)])
        torch.testing.assert_close(keys[groups], expected)
    assert not torch.allclose(keys[1], keys[3], atol=1e-4)  # BatchNorm saw other batches
