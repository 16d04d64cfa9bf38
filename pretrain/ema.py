"""Exponential moving average of weights (the momentum teacher of MoCo, BYOL, SLICER).

`teacher <- momentum * teacher + (1 - momentum) * student`, parameter by parameter.
Buffers (BatchNorm running statistics) are not averaged: the teacher keeps those of its own
forward passes, as in MoCo and BYOL.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ema_update", "copy_as_teacher"]


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place: every teacher parameter t becomes `momentum * t + (1 - momentum) * s`.

    The two modules must have the same parameter names and shapes (teacher is a copy of
    the student). momentum in [0, 1]: 1 freezes the teacher, 0 copies the student.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    t_params = dict(teacher.named_parameters())
    s_params = dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        raise ValueError("teacher and student have different parameters; build the teacher with copy_as_teacher")
    for name, t in t_params.items():
        t.mul_(momentum).add_(s_params[name].detach(), alpha=1.0 - momentum)


def copy_as_teacher(student: nn.Module) -> nn.Module:
    """A deep copy of `student` with gradients off: the initial EMA teacher."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
