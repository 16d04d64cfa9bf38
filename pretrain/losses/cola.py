"""COLA: contrastive learning of general-purpose audio representations (Saeed et al. 2021).

Legend: B batch, D features.

Two segments of the same clip are a positive pair; the other clips of the batch are the
negatives (no queue, no momentum encoder). Similarity is bilinear, ``s(a, p) = a^T W p``, so
the logits of the whole batch are ``A W P^T`` (B, B) with the positives on the diagonal, and
the loss is a B-way cross-entropy per anchor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..precision import float32_loss

__all__ = ["bilinear_logits", "cola_loss"]


def bilinear_logits(anchors: torch.Tensor, positives: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """All-pairs bilinear similarities.

    Args:
        anchors: (B, D) embeddings of the first segments.
        positives: (B, D) embeddings of the second segments (row b pairs with anchor b).
        weight: (D, D) bilinear matrix W.

    Returns:
        (B, B) logits, ``logits[i, j] = anchors[i] @ W @ positives[j]``.
    """
    if anchors.dim() != 2 or anchors.shape != positives.shape:
        raise ValueError(
            "bilinear_logits expects anchors and positives of the same shape (B, D), got "
            f"{tuple(anchors.shape)} and {tuple(positives.shape)}"
        )
    d = anchors.shape[1]
    if weight.shape != (d, d):
        raise ValueError(f"expected a bilinear weight of shape ({d}, {d}), got {tuple(weight.shape)}")
    return anchors.float() @ weight.float() @ positives.float().T  # (B, B), float32 inputs


@float32_loss
def cola_loss(
    anchors: torch.Tensor, positives: torch.Tensor, weight: torch.Tensor, symmetric: bool = False
) -> torch.Tensor:
    """B-way cross-entropy of bilinear similarities with in-batch negatives.

    Args:
        anchors: (B, D) embeddings of the first segments.
        positives: (B, D) embeddings of the second segments.
        weight: (D, D) bilinear matrix W.
        symmetric: also use each second segment as an anchor against all first segments
            and average the two directions (the COLA paper uses one direction).

    Returns:
        Scalar tensor; ``log(B)`` when all similarities are equal.
    """
    logits = bilinear_logits(anchors, positives, weight)  # (B, B)
    labels = torch.arange(logits.shape[0], device=logits.device)  # (B,)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, labels))
    return loss
