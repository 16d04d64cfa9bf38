"""BYOL-A (Niizumi et al. 2021): BYOL on two augmented views of a clip's log-mel.

Legend: B batch, F mel bins, T frames, T' = T // 8 encoder frames, D encoder features
(2048), P projection dimension (256).

Online network: encoder -> clip embedding (max + mean over time) -> projector
[D, 4096, P] -> predictor [P, 4096, P]. Target network: EMA copy of encoder + projector
(momentum 0.99, no predictor). Loss, symmetric:

    byol_loss(pred(a), target(b)) + byol_loss(pred(b), target(a)),  byol_loss = 2 - 2 cos

The target is updated by `after_step`, never inside `forward`. Sources: BYOL-A paper and
``nttcslab/byol-a`` (EMA 0.99, projection 256, hidden 4096, lr 3e-4, batch 256).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from hear_slicer.encoder import AudioNTT2020, EncoderConfig

from ..checks import Check, at_least, between
from ..distributed import DistContext, shuffled_forward
from ..ema import copy_as_teacher, ema_update
from ..losses.byol import byol_loss
from ..projector import build_mlp
from .base import Objective, ObjectiveOutput

__all__ = ["ByolAConfig", "ByolA"]


@dataclass
class ByolAConfig:
    momentum: float = 0.99  # EMA of the target network
    projection_dim: int = 256  # P: projector output = predictor input and output
    projector_hidden: int = 4096
    predictor_hidden: int = 4096
    export: Literal["student", "teacher"] = "student"  # the online encoder is BYOL-A's representation
    CHECKS: ClassVar[dict[str, Check]] = {"momentum": between(0, 1), "projection_dim": at_least(1),
                                          "projector_hidden": at_least(1), "predictor_hidden": at_least(1)}

    def __post_init__(self) -> None:
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"byol_a momentum must be in [0, 1], got {self.momentum}")
        if min(self.projection_dim, self.projector_hidden, self.predictor_hidden) <= 0:
            raise ValueError(f"byol_a projector/predictor widths must be positive, got {self}")


class ByolA(Objective):
    Config = ByolAConfig

    def __init__(self, encoder_cfg: EncoderConfig, cfg: ByolAConfig, dist: DistContext | None = None):
        super().__init__(encoder_cfg, cfg, dist)
        self.encoder = AudioNTT2020(encoder_cfg)
        self.projector = build_mlp([encoder_cfg.d, cfg.projector_hidden, cfg.projection_dim])
        self.predictor = build_mlp([cfg.projection_dim, cfg.predictor_hidden, cfg.projection_dim])
        self.teacher_encoder = copy_as_teacher(self.encoder)
        self.teacher_projector = copy_as_teacher(self.projector)

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, F, T) -> target projection (B, P)."""
        return self.teacher_projector(AudioNTT2020.pool(self.teacher_encoder(x)))

    def _online(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, F, T) -> online prediction (B, P)."""
        return self.predictor(self.projector(AudioNTT2020.pool(self.encoder(x))))

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> ObjectiveOutput:
        p_a, p_b = self._online(view_a), self._online(view_b)  # (B, P) each
        with torch.no_grad():
            z_a = shuffled_forward(self._target, view_a, self.dist)  # (B, P)
            z_b = shuffled_forward(self._target, view_b, self.dist)  # (B, P)
        loss_ab, loss_ba = byol_loss(p_a, z_b), byol_loss(p_b, z_a)
        loss = loss_ab + loss_ba
        metrics = {"cos_sim": (1.0 - 0.25 * loss).detach()}  # mean cosine of the two directions
        return ObjectiveOutput(loss, metrics)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        ema_update(self.teacher_encoder, self.encoder, self.cfg.momentum)
        ema_update(self.teacher_projector, self.projector, self.cfg.momentum)

    def encoder_for_export(self) -> AudioNTT2020:
        return self.encoder

    def teacher_for_export(self) -> AudioNTT2020:
        return self.teacher_encoder
