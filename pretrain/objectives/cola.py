"""COLA (Saeed et al. 2021): segments of the same clip against other clips of the batch.

Legend: B batch, F mel bins, T frames, D encoder features (2048), E embedding (512).

One network, no teacher, no queue: encoder -> clip embedding (max + mean over time) ->
Linear(D, E) -> LayerNorm -> tanh (COLA's projection), then the bilinear similarity
``s(a, b) = a^T W b`` of every first segment with every second segment of the batch; the
diagonal holds the positives and the loss is a B-way cross-entropy
(`pretrain.losses.cola`).

Segments: COLA samples two random segments of one recording. `views_from_separate_crops`
makes the trainer decode two independent random 0.95 s crops of each file; each view
augments its own crop (the same mixup and random resize crop as the other methods, so
comparisons stay fair).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from hear_slicer.encoder import AudioNTT2020, EncoderConfig

from ..checks import Check, at_least
from ..distributed import DistContext
from ..losses.cola import cola_loss
from .base import Objective, ObjectiveOutput

__all__ = ["ColaConfig", "Cola"]


@dataclass
class ColaConfig:
    embedding_dim: int = 512  # E, COLA paper
    symmetric: bool = False  # COLA: one direction (first segment as anchor)
    CHECKS: ClassVar[dict[str, Check]] = {"embedding_dim": at_least(1)}

    def __post_init__(self) -> None:
        if self.embedding_dim <= 0:
            raise ValueError(f"cola embedding_dim must be positive, got {self.embedding_dim}")


class Cola(Objective):
    Config = ColaConfig
    #: COLA's positives are two independent random segments (crops) of one recording.
    views_from_separate_crops: ClassVar[bool] = True

    def __init__(self, encoder_cfg: EncoderConfig, cfg: ColaConfig, dist: DistContext | None = None):
        super().__init__(encoder_cfg, cfg, dist)
        self.encoder = AudioNTT2020(encoder_cfg)
        self.head = nn.Sequential(nn.Linear(encoder_cfg.d, cfg.embedding_dim), nn.LayerNorm(cfg.embedding_dim), nn.Tanh())
        self.similarity = nn.Linear(cfg.embedding_dim, cfg.embedding_dim, bias=False)  # weight = W (E, E)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, F, T) -> (B, E) in [-1, 1]."""
        return self.head(AudioNTT2020.pool(self.encoder(x)))

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> ObjectiveOutput:
        e_a, e_b = self._embed(view_a), self._embed(view_b)  # (B, E) each
        loss = cola_loss(e_a, e_b, self.similarity.weight, symmetric=self.cfg.symmetric)
        return ObjectiveOutput(loss, {})

    def encoder_for_export(self) -> AudioNTT2020:
        return self.encoder
