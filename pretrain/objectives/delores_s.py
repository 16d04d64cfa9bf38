"""DeLoRes-S (Ghosh et al. 2022): Barlow Twins on two augmented views of a clip's log-mel.

Legend: B batch, F mel bins, T frames, D encoder features (2048), E projector width (2048).

One network, no teacher, no queue: encoder -> clip embedding (max + mean over time) ->
projector [D, E, E, E] (Linear without bias, BatchNorm, ReLU, twice, then Linear), and the
Barlow Twins loss of the two views' projections (`pretrain.losses.barlow`), whose feature
standardisation is the "non-affine BatchNorm on the outputs" of the released code.

Sources: the DeLoRes paper and ``Sreyan88/LAPE`` ``src/upstream/delores_s`` (projector
2048-2048-2048). Loss weights: LAPE's code, which produced the SLICER paper's table, by
default: ``5e-5 * (on + off) / 32``, i.e. ``lambd: 1.0, scale: 1.5625e-6``; the Barlow Twins
paper's ``on + 0.0051 off`` (``lambd: 0.0051, scale: 1.0``) as a variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from hear_slicer.encoder import AudioNTT2020, EncoderConfig

from ..checks import Check, above, at_least
from ..distributed import DistContext
from ..losses.barlow import barlow_twins_loss
from ..projector import build_mlp
from .base import Objective, ObjectiveOutput

__all__ = ["DeLoResSConfig", "DeLoResS"]


@dataclass
class DeLoResSConfig:
    projector_dim: int = 2048  # E: width of every projector layer
    projector_layers: int = 3  # Linear layers in the projector
    lambd: float = 1.0  # weight of the off-diagonal (redundancy) term; LAPE 1.0 (Barlow Twins paper: 0.0051)
    scale: float = 5e-5 / 32  # overall loss multiplier; LAPE 5e-5 / 32 (Barlow Twins paper: 1.0)
    bn_eps: float = 1e-5  # variance floor of the output standardisation
    CHECKS: ClassVar[dict[str, Check]] = {"projector_dim": at_least(1), "projector_layers": at_least(1),
                                          "lambd": at_least(0.0), "scale": above(0.0), "bn_eps": above(0.0)}

    def __post_init__(self) -> None:
        if self.projector_dim <= 0 or self.projector_layers < 1:
            raise ValueError(f"delores_s projector needs positive width and >= 1 layer, got {self}")
        if self.lambd < 0 or self.scale <= 0 or self.bn_eps < 0:
            raise ValueError(f"delores_s needs lambd >= 0, scale > 0, bn_eps >= 0, got {self}")


class DeLoResS(Objective):
    Config = DeLoResSConfig

    def __init__(self, encoder_cfg: EncoderConfig, cfg: DeLoResSConfig, dist: DistContext | None = None):
        super().__init__(encoder_cfg, cfg, dist)
        self.encoder = AudioNTT2020(encoder_cfg)
        dims = [encoder_cfg.d] + [cfg.projector_dim] * cfg.projector_layers
        self.projector = build_mlp(dims, bias=False)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, F, T) -> projection (B, E)."""
        return self.projector(AudioNTT2020.pool(self.encoder(x)))

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> ObjectiveOutput:
        z_a, z_b = self._project(view_a), self._project(view_b)  # (B, E) each
        loss = barlow_twins_loss(z_a, z_b, lambd=self.cfg.lambd, scale=self.cfg.scale, eps=self.cfg.bn_eps)
        return ObjectiveOutput(loss, {})

    def encoder_for_export(self) -> AudioNTT2020:
        return self.encoder
