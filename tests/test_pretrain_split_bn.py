"""Split BatchNorm on one process (MoCo's SplitBatchNorm for the key encoder).

Without it, a teacher key is computed with the BatchNorm statistics of the whole batch that
also holds its query's clip: every key depends on every other clip of the step, which MoCo
(section 3.3) calls cheating. With G groups, a key depends only on the clips of its own
(random) group, and equals the teacher run on that group alone.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hear_slicer.encoder import EncoderConfig
from pretrain.distributed import DistContext, shuffled_forward, split_forward
from pretrain.objectives import objective_class

torch.set_num_threads(1)
TINY = EncoderConfig(n_mels=16, channels=4, d=32, dropout=0.0)


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Linear(6, 3)).train()


def test_split_forward_runs_each_group_on_its_own_and_unshuffles():
    net, x = _bn_net(), torch.randn(12, 6)
    g = torch.Generator().manual_seed(3)
    out = split_forward(net, x, groups=3, generator=g)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    for group in perm.tensor_split(3):  # each clip's output is the net on its group only
        torch.testing.assert_close(out[group], net(x[group]))
    assert not torch.allclose(out, net(x))  # whole-batch statistics differ


def test_a_key_no_longer_depends_on_clips_outside_its_group():
    net, x = _bn_net(), torch.randn(16, 6)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(5))
    groups = perm.tensor_split(4)
    mine, other = groups[0], groups[1]
    y = x.clone()
    y[other] += 10 * torch.randn(len(other), 6)  # change every clip of another group
    a = split_forward(net, x, 4, torch.Generator().manual_seed(5))
    b = split_forward(net, y, 4, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a[mine], b[mine])  # keys of my group: unchanged
    assert not torch.allclose(a[other], b[other])
    # the leak it removes: with one group (a plain forward) every key moves
    full_a, full_b = split_forward(net, x, 1), split_forward(net, y, 1)
    assert not torch.allclose(full_a[mine], full_b[mine])


def test_split_forward_checks_groups():
    net, x = _bn_net(), torch.randn(4, 6)
    torch.testing.assert_close(split_forward(net, x, 1), net(x))
    with pytest.raises(ValueError, match="groups"):
        split_forward(net, x, 5)
    with pytest.raises(ValueError, match="groups"):
        split_forward(net, x, 0)


def test_shuffled_forward_on_one_process_uses_split_groups():
    net, x = _bn_net(), torch.randn(8, 6)
    torch.manual_seed(1)
    a = shuffled_forward(net, x, DistContext(), split_groups=2)
    torch.manual_seed(1)
    torch.testing.assert_close(a, split_forward(net, x, 2))


@pytest.mark.parametrize("groups", [1, 4])
def test_slicer_keys_are_the_teacher_on_each_group(groups):
    cls = objective_class("slicer")
    torch.manual_seed(0)
    obj = cls(TINY, cls.Config(instance_dim=8, n_clusters=4, queue_size=64, split_bn_groups=groups)).train()
    view_a, view_b = torch.randn(8, 16, 24), torch.randn(8, 16, 24)
    with torch.no_grad():
        torch.manual_seed(11)
        obj(view_a, view_b)
        keys = obj._pending_keys.clone()  # (2B, E): keys of view a then view b
        torch.manual_seed(11)
        expected = []
        for view in (view_a, view_b):
            perm = torch.randperm(8) if groups > 1 else torch.arange(8)
            k = torch.empty(8, 8)
            for group in perm.tensor_split(groups):
                k[group] = obj._teacher_keys(view[group])
            expected.append(k)
    torch.testing.assert_close(keys, torch.cat(expected))


@pytest.mark.parametrize("student_split", [False, True])
def test_slicer_student_split_bn_normalises_each_group_of_queries_on_its_own(student_split):
    """objective.params.student_split_bn: the queries too in split_bn_groups contiguous groups
    (MoCo's single-GPU SplitBatchNorm splits both encoders); off, the student sees the whole batch."""
    cls = objective_class("slicer")
    torch.manual_seed(0)
    obj = cls(TINY, cls.Config(instance_dim=8, n_clusters=4, queue_size=64, split_bn_groups=4,
                               student_split_bn=student_split)).train()
    x = torch.randn(8, 16, 24)
    q, p = obj._student(x)
    groups = x.tensor_split(4) if student_split else (x,)
    ref_h = torch.cat([obj.encoder.clip_embedding(part) for part in groups])
    torch.testing.assert_close(q, nn.functional.normalize(obj.instance_head(ref_h), dim=1))
    torch.testing.assert_close(p, obj.cluster_head(ref_h).softmax(dim=1))
    whole = nn.functional.normalize(obj.instance_head(obj.encoder.clip_embedding(x)), dim=1)
    assert torch.allclose(q, whole) != student_split  # split statistics give other queries
    q.sum().backward()  # gradients reach the encoder through every group
    assert obj.encoder.blocks[0][0].weight.grad.abs().sum() > 0
    if student_split:
        with pytest.raises(ValueError, match="student_split_bn"):
            obj._student(torch.randn(3, 16, 24))  # fewer clips than groups


def test_slicer_double_ema_update_equals_squared_momentum():
    cls = objective_class("slicer")
    torch.manual_seed(0)
    obj = cls(TINY, cls.Config(instance_dim=8, n_clusters=4, queue_size=64, ema_updates_per_step=2,
                               momentum=0.9)).train()
    with torch.no_grad():
        for p in obj.encoder.parameters():
            p.add_(torch.randn_like(p))
    before = {k: v.clone() for k, v in obj.teacher_encoder.named_parameters()}
    obj.after_step(1, 1)
    for name, s in obj.encoder.named_parameters():  # two updates of 0.9 = one of 0.81
        torch.testing.assert_close(dict(obj.teacher_encoder.named_parameters())[name],
                                   0.81 * before[name] + 0.19 * s.detach())
