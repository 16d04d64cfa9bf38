"""Barlow Twins redundancy reduction (Zbontar et al. 2021), used by DeLoRes-S and DeLoRes-M.

Legend: B batch, D features.

``cross_correlation`` standardises each feature over the batch (exactly what a non-affine
``BatchNorm1d`` does in training mode: biased variance, ``eps`` inside the square root) and
returns ``C = z1n^T z2n / B``. ``barlow_twins_loss`` is

    scale * ( sum_i (1 - C_ii)^2  +  lambd * sum_{i != j} C_ij^2 )

Two published settings, both expressible through ``lambd`` and ``scale``:
  * standard Barlow Twins (paper, facebookresearch/barlowtwins): ``lambd=0.0051, scale=1``;
  * LAPE's DeLoRes code (``Sreyan88/LAPE``, ``src/upstream/delores_*``) multiplies *both*
    terms by ``lambda_barlow = 5e-5`` and ``loss_scale = 1/32``, i.e. ``lambd=1.0,
    scale=5e-5/32``.

The loss is local to one process: under data parallelism every rank standardises with its
own batch (as unsynchronised BatchNorm would) and DDP averages the gradients.
"""

from __future__ import annotations

import torch

from ..precision import float32_loss

__all__ = ["cross_correlation", "barlow_twins_terms", "barlow_twins_loss"]


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Empirical cross-correlation of two views, features standardised over the batch.

    Args:
        z1: (B, D) first view's projections.
        z2: (B, D) second view's projections.
        eps: added to the batch variance before the square root (BatchNorm's ``eps``).

    Returns:
        (D, D) float32 matrix ``C[i, j] = mean_b z1n[b, i] * z2n[b, j]``; ``C_ii`` is close
        to 1 when the two views agree on feature i.
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            "cross_correlation expects two views of the same shape (B, D), got "
            f"{tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    batch = z1.shape[0]
    if batch < 2:
        raise ValueError(
            f"cross_correlation needs a batch of at least 2 to standardise features, got {batch}; "
            "raise the per-process batch size"
        )
    z1, z2 = z1.float(), z2.float()  # float32 statistics, also under mixed precision
    z1n = (z1 - z1.mean(dim=0)) / torch.sqrt(z1.var(dim=0, unbiased=False) + eps)  # (B, D)
    z2n = (z2 - z2.mean(dim=0)) / torch.sqrt(z2.var(dim=0, unbiased=False) + eps)  # (B, D)
    return z1n.T @ z2n / batch  # (D, D)


def barlow_twins_terms(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Invariance and redundancy terms of a (D, D) cross-correlation matrix.

    Returns:
        ``(on_diag, off_diag)``: ``sum_i (1 - C_ii)^2`` and ``sum_{i != j} C_ij^2``, scalars.
    """
    if c.dim() != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"expected a square (D, D) cross-correlation matrix, got {tuple(c.shape)}")
    diag = torch.diagonal(c)  # (D,)
    on_diag = (1.0 - diag).pow(2).sum()
    off_diag = c.pow(2).sum() - diag.pow(2).sum()
    return on_diag, off_diag


@float32_loss
def barlow_twins_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    lambd: float = 0.0051,
    scale: float = 1.0,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Barlow Twins loss ``scale * (on_diag + lambd * off_diag)`` of two (B, D) views.

    Args:
        z1: (B, D) first view's projections.
        z2: (B, D) second view's projections.
        lambd: weight of the off-diagonal (redundancy) term; 0.0051 in the paper.
        scale: overall multiplier; 1 in the paper, ``5e-5 / 32`` with ``lambd=1`` in LAPE.
        eps: BatchNorm-style variance floor of the standardisation.

    Returns:
        Scalar tensor.
    """
    on_diag, off_diag = barlow_twins_terms(cross_correlation(z1, z2, eps=eps))
    return scale * (on_diag + lambd * off_diag)
