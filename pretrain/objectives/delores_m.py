"""DeLoRes-M (Ghosh et al. 2022): MoCo-v2 plus Barlow Twins between student and teacher blocks.

Legend: B batch, F mel bins, T frames, D encoder features (2048), H contrastive head (128),
K queue size, C conv channels, F_k = F / 2^k and T_k = T / 2^k the size after conv block k,
G_k = C * F_k (2048, 1024, 512 with 64 mels and 64 channels), E block projector width.

Student: encoder -> clip embedding (max + mean over time) -> Linear(D, H) -> L2 norm, the
query of view a. Teacher: EMA copy (momentum 0.999) of encoder + head, giving the key of
view b (shuffle-BN under data parallelism). The MoCo part is one-directional (not
symmetric): ``info_nce(q_a, k_b, queue, t=0.07)``, and `after_step` enqueues every
process's keys into the FIFO queue (65,536).

Barlow Twins part: for each conv block k = 1, 2, 3, the block's output averaged over time
(B, C, F_k, T_k) -> (B, G_k) for the student on view a and the teacher on view b, both
through the block's own projector [G_k, E, E, E] (no bias, BN, ReLU; the teacher side is a
constant), then ``barlow_twins_loss`` with LAPE's weights ``5e-5 * (on + off) / 32``
(``lambd: 1.0, scale: 1.5625e-6``), which keeps the three terms small beside InfoNCE.

Sources: DeLoRes paper; ``Sreyan88/LAPE`` ``src/upstream/delores_m`` (MoCo-v2 settings,
block projectors, lambda_barlow 5e-5 and loss_scale 1/32).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from hear_slicer.encoder import AudioNTT2020, EncoderConfig

from ..checks import Check, above, at_least, between
from ..distributed import DistContext, all_gather_nograd, shuffled_forward
from ..ema import copy_as_teacher, ema_update
from ..losses.barlow import barlow_twins_loss
from ..losses.instance import info_nce
from ..projector import build_mlp
from ..queue import KeyQueue
from .base import Objective, ObjectiveOutput

__all__ = ["DeLoResMConfig", "DeLoResM"]

N_BLOCKS = 3  # AudioNTT2020's conv blocks


@dataclass
class DeLoResMConfig:
    queue_size: int = 65536  # K
    momentum: float = 0.999  # EMA of the teacher
    temperature: float = 0.07
    head_dim: int = 128  # H
    block_projector_dim: int = 2048  # E
    block_projector_layers: int = 3
    lambd: float = 1.0  # off-diagonal weight of each block's Barlow Twins term
    scale: float = 5e-5 / 32  # multiplier of each block's Barlow Twins term
    bn_eps: float = 1e-5
    export: Literal["student", "teacher"] = "student"  # encoder the HEAR plugin embeds with
    split_bn_groups: int = 4  # one process: keys in G shuffled groups with their own BN statistics (MoCo)
    CHECKS: ClassVar[dict[str, Check]] = {
        "queue_size": at_least(1), "momentum": between(0, 1), "temperature": above(0.0), "head_dim": at_least(1),
        "block_projector_dim": at_least(1), "block_projector_layers": at_least(1), "lambd": at_least(0.0),
        "scale": above(0.0), "bn_eps": above(0.0), "split_bn_groups": at_least(1)}

    def __post_init__(self) -> None:
        if self.queue_size <= 0 or self.head_dim <= 0:
            raise ValueError(f"delores_m needs positive queue_size and head_dim, got {self}")
        if not 0.0 <= self.momentum <= 1.0 or self.temperature <= 0:
            raise ValueError(f"delores_m needs momentum in [0, 1] and temperature > 0, got {self}")
        if self.block_projector_dim <= 0 or self.block_projector_layers < 1:
            raise ValueError(f"delores_m block projectors need positive width and >= 1 layer, got {self}")
        if self.lambd < 0 or self.scale < 0 or self.bn_eps < 0:
            raise ValueError(f"delores_m needs lambd, scale, bn_eps >= 0, got {self}")


def _time_average(block_out: torch.Tensor) -> torch.Tensor:
    """(B, C, F_k, T_k) -> (B, C * F_k), the block's output averaged over time."""
    return block_out.mean(dim=3).flatten(1)


class _KeyNet(nn.Module):
    """Encoder + contrastive head; forward gives (unit query/key (B, H), [(B, G_k)] per block)."""

    def __init__(self, encoder: AudioNTT2020, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        frames, blocks = self.encoder.forward_blocks(x)  # (B, T', D), [(B, C, F_k, T_k)]
        q = F.normalize(self.head(AudioNTT2020.pool(frames)).float(), dim=1)  # (B, H)
        return q, [_time_average(b) for b in blocks]


class DeLoResM(Objective):
    Config = DeLoResMConfig

    def __init__(self, encoder_cfg: EncoderConfig, cfg: DeLoResMConfig, dist: DistContext | None = None):
        super().__init__(encoder_cfg, cfg, dist)
        self.student = _KeyNet(AudioNTT2020(encoder_cfg), nn.Linear(encoder_cfg.d, cfg.head_dim))
        self.teacher = copy_as_teacher(self.student)
        self.block_dims = [encoder_cfg.channels * encoder_cfg.n_mels // 2**k for k in range(1, N_BLOCKS + 1)]
        self.block_projectors = nn.ModuleList(
            build_mlp([g] + [cfg.block_projector_dim] * cfg.block_projector_layers, bias=False)
            for g in self.block_dims
        )
        self.queue = KeyQueue(cfg.queue_size, cfg.head_dim)
        self._pending_keys: torch.Tensor | None = None  # this step's keys, enqueued by after_step

    def _teacher_packed(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, F, T) -> (B, H + sum_k G_k): the teacher's key and block averages side by side
        (one tensor, so that shuffle-BN can gather and un-shuffle it)."""
        k, blocks = self.teacher(x)
        return torch.cat([k] + blocks, dim=1)

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> ObjectiveOutput:
        q, q_blocks = self.student(view_a)  # (B, H), [(B, G_k)]
        with torch.no_grad():
            packed = shuffled_forward(self._teacher_packed, view_b, self.dist, self.cfg.split_bn_groups)  # (B, H + sum G_k)
            k, *k_blocks = packed.split([self.cfg.head_dim] + self.block_dims, dim=1)
        loss_moco = info_nce(q, k, self.queue.keys, self.cfg.temperature)
        barlow = [
            barlow_twins_loss(proj(qb), proj(kb), lambd=self.cfg.lambd, scale=self.cfg.scale, eps=self.cfg.bn_eps)
            for proj, qb, kb in zip(self.block_projectors, q_blocks, k_blocks)
        ]
        loss = loss_moco + sum(barlow)
        self._pending_keys = k.detach()
        metrics = {"moco": loss_moco.detach()}
        metrics.update({f"barlow_b{i + 1}": b.detach() for i, b in enumerate(barlow)})
        return ObjectiveOutput(loss, metrics)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        ema_update(self.teacher, self.student, self.cfg.momentum)
        if self._pending_keys is None:  # no forward since the last update
            return
        keys = all_gather_nograd(self._pending_keys, self.dist)  # (P * B, H)
        b = self._pending_keys.shape[0]
        owners = torch.arange(self.dist.world_size, device=keys.device).repeat_interleave(b)  # (P * B,)
        self.queue.enqueue(keys, owners)
        self._pending_keys = None

    def encoder_for_export(self) -> AudioNTT2020:
        return self.student.encoder

    def teacher_for_export(self) -> AudioNTT2020:
        return self.teacher.encoder
