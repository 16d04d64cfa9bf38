"""Cluster-level contrastive loss (Contrastive Clustering, Li et al. 2021), as used by SLICER.

Legend: B batch, C clusters.

Each view gives soft cluster assignments P (B, C), rows summing to 1. Column c of P (the
batch's membership profile of cluster c, a B-vector) is a "cluster representation". The
2C columns of both views are contrasted: column c of view a is pulled towards column c of
view b and pushed from the other 2C - 2 columns, by cosine similarity / t (NT-Xent in
column space), averaged over all 2C anchors.

`negative_entropy` is Contrastive Clustering's collapse regulariser: log C - H(p) with
p the batch marginal of the assignments; it is 0 for uniform use of the clusters and
log C when everything falls into one cluster.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..precision import float32_loss

__all__ = ["cluster_contrast", "negative_entropy"]


@float32_loss
def cluster_contrast(p_a: torch.Tensor, p_b: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """NT-Xent between cluster columns of two views. p_a, p_b: (B, C) soft assignments -> 0-d tensor."""
    if p_a.shape != p_b.shape or p_a.dim() != 2:
        raise ValueError(f"expected two (B, C) assignment matrices, got {tuple(p_a.shape)} and {tuple(p_b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    c = p_a.shape[1]
    cols = F.normalize(torch.cat([p_a.T, p_b.T], dim=0).float(), dim=1)  # (2C, B) unit cluster columns
    sim = cols @ cols.T / temperature  # (2C, 2C)
    self_mask = torch.eye(2 * c, dtype=torch.bool, device=sim.device)
    sim = sim.masked_fill(self_mask, float("-inf"))  # an anchor is not its own candidate
    positives = torch.cat([torch.arange(c, 2 * c), torch.arange(0, c)]).to(sim.device)  # (2C,) partner column
    return F.cross_entropy(sim, positives)


@float32_loss
def negative_entropy(p: torch.Tensor) -> torch.Tensor:
    """log C - H(mean cluster usage). p: (B, C) soft assignments -> 0-d tensor in [0, log C]."""
    if p.dim() != 2:
        raise ValueError(f"expected a (B, C) assignment matrix, got {tuple(p.shape)}")
    marginal = p.float().sum(dim=0)
    marginal = marginal / marginal.sum()  # (C,)
    return math.log(p.shape[1]) + (marginal * torch.log(marginal.clamp_min(1e-12))).sum()
