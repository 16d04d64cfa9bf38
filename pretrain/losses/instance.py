"""Instance-level contrastive loss against a queue of negatives (MoCo InfoNCE).

Legend: B batch, D key dimension, K queue size.

    L(q, k) = -log( exp(q.k+/t) / (exp(q.k+/t) + sum_{j<K} exp(q.n_j/t)) ),  mean over B

with q the student's query, k+ the teacher's key of the other view of the same clip and
n_j the queued keys. SLICER uses it symmetrically: `info_nce(q_a, k_b, Q) + info_nce(q_b, k_a, Q)`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..precision import float32_loss

__all__ = ["info_nce"]


@float32_loss
def info_nce(query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean InfoNCE loss of each query against its positive key and K negatives.

    query: (B, D) and key: (B, D), L2-normalised rows (the positive pairs);
    negatives: (K, D) L2-normalised, treated as constants; temperature > 0.
    Returns a 0-d tensor. Computed in float32 whatever the input dtype.
    """
    if query.shape != key.shape or query.dim() != 2:
        raise ValueError(f"query and key must both be (B, D), got {tuple(query.shape)} and {tuple(key.shape)}")
    if negatives.dim() != 2 or negatives.shape[1] != query.shape[1]:
        raise ValueError(f"negatives must be (K, {query.shape[1]}), got {tuple(negatives.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    q, k, n = query.float(), key.float(), negatives.detach().float()
    l_pos = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
    l_neg = q @ n.T  # (B, K)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # (B, 1 + K)
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # the positive is column 0
    return F.cross_entropy(logits, labels)
