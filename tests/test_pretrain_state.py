"""Explicit training state: EMA math, the key queue, config loading and overrides."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pretrain.config import ConfigError, load_config
from pretrain.ema import copy_as_teacher, ema_update
from pretrain.optim import lr_at
from pretrain.queue import KeyQueue

torch.set_num_threads(1)


def test_ema_update_math():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = copy_as_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
        student[1].running_mean.fill_(5.0)
    before = copy.deepcopy(teacher.state_dict())
    ema_update(teacher, student, 0.9)
    for name, s in student.named_parameters():
        torch.testing.assert_close(dict(teacher.named_parameters())[name], 0.9 * before[name] + 0.1 * s.detach())
    torch.testing.assert_close(teacher[1].running_mean, before["1.running_mean"])  # buffers untouched
    ema_update(teacher, student, 0.0)
    for name, s in student.named_parameters():
        torch.testing.assert_close(dict(teacher.named_parameters())[name], s.detach())
    with pytest.raises(ValueError, match="momentum"):
        ema_update(teacher, student, 1.5)


def test_queue_fifo_wraps_around():
    q = KeyQueue(size=5, dim=2)
    keys = torch.arange(14, dtype=torch.float32).view(7, 2)  # key i = (2i, 2i+1)
    q.enqueue(keys[:3], torch.zeros(3, dtype=torch.long))
    q.enqueue(keys[3:7], torch.ones(4, dtype=torch.long))  # 7 keys into 5 slots: wraps
    # slot s holds the newest key written there by a loop of single writes
    expected = {}
    for i in range(7):
        expected[i % 5] = i
    for slot, i in expected.items():
        torch.testing.assert_close(q.keys[slot], keys[i])
    assert q.owners.tolist() == [1, 1, 0, 1, 1]
    assert int(q.ptr) == 2 and int(q.num_enqueued) == 7


def test_queue_more_keys_than_slots_keeps_newest():
    q = KeyQueue(size=4, dim=1)
    q.enqueue(torch.zeros(1, 1))
    q.enqueue(torch.arange(10, dtype=torch.float32).view(10, 1))
    ref = KeyQueue(size=4, dim=1)
    ref.enqueue(torch.zeros(1, 1))
    for i in range(10):
        ref.enqueue(torch.tensor([[float(i)]]))
    torch.testing.assert_close(q.keys, ref.keys)
    assert int(q.ptr) == int(ref.ptr)


def test_queue_checkpoint_round_trip(tmp_path):
    q = KeyQueue(size=6, dim=3)
    q.enqueue(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
    torch.save({"queue": q.state_dict()}, tmp_path / "q.pt")
    r = KeyQueue(size=6, dim=3)
    r.load_state_dict(torch.load(tmp_path / "q.pt", weights_only=True)["queue"])
    for name, buf in q.state_dict().items():
        torch.testing.assert_close(r.state_dict()[name], buf)
    new = torch.randn(3, 3)
    q.enqueue(new)
    r.enqueue(new)
    torch.testing.assert_close(q.keys, r.keys)


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config("pretrain/configs/slicer.yaml", ["optim.lr=1e-3", "objective.params.queue_size=512",
                                                       "augment.rrc.virtual_crop_scale=[1.0, 1.2]", "data.path=/x"])
    assert cfg.optim.lr == 1e-3 and cfg.objective.params.queue_size == 512
    assert cfg.augment.rrc.virtual_crop_scale == (1.0, 1.2) and cfg.data.path == "/x"
    assert cfg.objective.params.momentum == 0.999 and cfg.frontend.n_mels == 64  # RECIPE defaults
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="objective.params.queue_sise"):
        load_config(None, ["objective.params.queue_sise=1"])
    with pytest.raises(ConfigError, match="run.steps must be an integer"):
        load_config(None, ["run.steps=abc"])
    with pytest.raises(ConfigError, match="unknown objective"):
        load_config(None, ["objective.name=nope"])
    # a saved config reads back to the same config
    from pretrain.config import config_from_dict
    assert config_from_dict(cfg.to_dict()) == cfg


def test_cosine_schedule_with_warmup():
    from pretrain.config import OptimConfig
    c = OptimConfig(lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    assert [lr_at(s, c, 12) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_at(8, c, 12) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert lr_at(12, c, 12) == pytest.approx(0.1)
