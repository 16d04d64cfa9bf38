"""SLICER (Seth et al., ICASSP 2023): symmetric instance-level MoCo + cluster-level contrast.

Legend: B batch, F mel bins, T frames, D encoder features, E instance-head dim, K queue, C clusters.

Student f = encoder + instance head + cluster head; teacher h = EMA copy of encoder +
instance head. With views a, b of the same clips:

    L = w_i [ L_i(f(a), h(b)) + L_i(f(b), h(a)) ] + w_c [ CC(p_a, p_b) + w_e (NE(p_a) + NE(p_b)) ]

L_i: InfoNCE against the queue of teacher keys (`pretrain.losses.instance`); CC: cluster-level
contrast of the student's soft assignments p (`pretrain.losses.cluster`); NE: negative entropy
of cluster usage (Contrastive Clustering; commented out in the released SLICER code).
After each optimiser step the teacher moves by EMA and the keys of both views from every
process are enqueued (`after_step`).
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
from ..losses.cluster import cluster_contrast, negative_entropy
from ..losses.instance import info_nce
from ..queue import KeyQueue
from .base import Objective, ObjectiveOutput

__all__ = ["SlicerConfig", "Slicer"]


@dataclass
class SlicerConfig:
    instance_dim: int = 128  # E; poster: not given, research snapshot 256
    n_clusters: int = 128  # C, released code
    cluster_hidden: int = 0  # hidden width of the cluster head; 0 = encoder d (released code: 2048)
    queue_size: int = 65536  # K
    instance_temperature: float = 0.07
    cluster_temperature: float = 1.0
    momentum: float = 0.999  # teacher EMA per update (poster, released code)
    ema_updates_per_step: int = 1  # EMA updates after each step; released code: 2 (= momentum**2 per step)
    entropy_term: bool = True  # Contrastive Clustering's negative-entropy term (released SLICER code: off)
    entropy_weight: float = 1.0
    instance_weight: float = 1.0
    cluster_weight: float = 1.0
    shuffle_bn: bool = True  # shuffle-BN for the teacher's keys (across processes under DDP)
    split_bn_groups: int = 4  # one process: keys in G shuffled groups with their own BN statistics (MoCo)
    # one process: the student's queries in the same G groups (contiguous), as MoCo's single-GPU
    # SplitBatchNorm does for its query encoder too (moco_cifar10_demo: both encoders are built
    # with bn_splits); false: only the teacher's keys are split (the studies so far)
    student_split_bn: bool = False
    export: Literal["student", "teacher"] = "student"  # encoder the HEAR plugin embeds with
    CHECKS: ClassVar[dict[str, Check]] = {
        "instance_dim": at_least(1), "n_clusters": at_least(2), "cluster_hidden": at_least(0),
        "queue_size": at_least(1), "instance_temperature": above(0.0), "cluster_temperature": above(0.0),
        "momentum": between(0, 1), "entropy_weight": at_least(0.0), "instance_weight": at_least(0.0),
        "cluster_weight": at_least(0.0), "ema_updates_per_step": at_least(1), "split_bn_groups": at_least(1)}


class Slicer(Objective):
    Config = SlicerConfig

    def __init__(self, encoder_cfg: EncoderConfig, cfg: SlicerConfig, dist: DistContext | None = None):
        super().__init__(encoder_cfg, cfg, dist)
        d = encoder_cfg.d
        hidden = cfg.cluster_hidden or d
        self.encoder = AudioNTT2020(encoder_cfg)
        self.instance_head = nn.Linear(d, cfg.instance_dim)
        self.cluster_head = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, cfg.n_clusters))
        self.teacher_encoder = copy_as_teacher(self.encoder)
        self.teacher_instance_head = copy_as_teacher(self.instance_head)
        self.queue = KeyQueue(cfg.queue_size, cfg.instance_dim)
        self._pending_keys: torch.Tensor | None = None  # (2B, E) keys of this step, enqueued in after_step

    def _student(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, F, T) -> (unit query (B, E), cluster probabilities (B, C))."""
        groups = self.cfg.split_bn_groups if self.cfg.student_split_bn and not self.dist.enabled else 1
        if groups > x.shape[0]:
            raise ValueError(f"objective.params.student_split_bn splits the batch into split_bn_groups={groups} "
                             f"groups, more than the batch of {x.shape[0]}; lower split_bn_groups")
        # split BatchNorm: each group of queries normalised with its own statistics (contiguous, as MoCo)
        h = torch.cat([self.encoder.clip_embedding(part) for part in x.tensor_split(groups)])  # (B, D)
        q = F.normalize(self.instance_head(h).float(), dim=1)  # (B, E)
        p = self.cluster_head(h).float().softmax(dim=1)  # (B, C)
        return q, p

    def _teacher_keys(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) -> unit keys (B, E), no gradient."""
        return F.normalize(self.teacher_instance_head(self.teacher_encoder.clip_embedding(x)).float(), dim=1)

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> ObjectiveOutput:
        cfg = self.cfg
        q_a, p_a = self._student(view_a)  # (B, E), (B, C)
        q_b, p_b = self._student(view_b)
        with torch.no_grad():
            if cfg.shuffle_bn:
                k_a = shuffled_forward(self._teacher_keys, view_a, self.dist, cfg.split_bn_groups)  # (B, E)
                k_b = shuffled_forward(self._teacher_keys, view_b, self.dist, cfg.split_bn_groups)
            else:
                k_a, k_b = self._teacher_keys(view_a), self._teacher_keys(view_b)
        negatives = self.queue.keys.clone()  # (K, E), as of before this step's enqueue
        loss_instance = info_nce(q_a, k_b, negatives, cfg.instance_temperature) + info_nce(
            q_b, k_a, negatives, cfg.instance_temperature)
        loss_cluster = cluster_contrast(p_a, p_b, cfg.cluster_temperature)
        loss_entropy = negative_entropy(p_a) + negative_entropy(p_b)
        cluster_total = loss_cluster + (cfg.entropy_weight * loss_entropy if cfg.entropy_term else 0.0)
        loss = cfg.instance_weight * loss_instance + cfg.cluster_weight * cluster_total
        self._pending_keys = torch.cat([k_a, k_b], dim=0).detach()  # (2B, E)
        metrics = {
            "loss_instance": loss_instance.detach(),
            "loss_cluster": loss_cluster.detach(),
            "neg_entropy": loss_entropy.detach(),
            "pos_similarity": 0.5 * ((q_a * k_b).sum(1).mean() + (q_b * k_a).sum(1).mean()).detach(),
            "clusters_used": torch.cat([p_a, p_b]).argmax(dim=1).unique().numel() * torch.ones((), device=p_a.device),
        }
        return ObjectiveOutput(loss, metrics)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """EMA the teacher, then enqueue every process's keys of this step (rank order)."""
        for _ in range(self.cfg.ema_updates_per_step):
            ema_update(self.teacher_encoder, self.encoder, self.cfg.momentum)
            ema_update(self.teacher_instance_head, self.instance_head, self.cfg.momentum)
        if self._pending_keys is None:
            return
        keys = all_gather_nograd(self._pending_keys, self.dist)  # (P * 2B, E)
        per_rank = self._pending_keys.shape[0]
        owners = torch.arange(self.dist.world_size, device=keys.device).repeat_interleave(per_rank)  # (P * 2B,)
        self.queue.enqueue(keys, owners)
        self._pending_keys = None

    def encoder_for_export(self) -> AudioNTT2020:
        return self.encoder

    def teacher_for_export(self) -> AudioNTT2020:
        return self.teacher_encoder
