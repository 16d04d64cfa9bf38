"""BYOL's normalised mean-squared error (Grill et al. 2020; BYOL-A, Niizumi et al. 2021).

Legend: B batch, D features.

For one pair, ``|| p/|p| - z/|z| ||^2 = 2 - 2 cos(p, z)``. The loss is a pure function of
its two tensors: which side is the online prediction and which side the (gradient-free)
target projection is the caller's choice; the caller detaches the target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..precision import float32_loss

__all__ = ["byol_loss"]


@float32_loss
def byol_loss(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Mean over the batch of ``2 - 2 cos(prediction_b, target_b)``.

    Args:
        prediction: (B, D) online network's predictions.
        target: (B, D) target network's projections (detach them before calling).
        eps: floor of the norm in the L2 normalisation (as in ``F.normalize``).

    Returns:
        Scalar float32 tensor in [0, 4]; 0 when each pair points the same way.
    """
    if prediction.dim() != 2 or prediction.shape != target.shape:
        raise ValueError(
            "byol_loss expects prediction and target of the same shape (B, D), got "
            f"{tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    p = F.normalize(prediction.float(), dim=1, eps=eps)  # (B, D)
    z = F.normalize(target.float(), dim=1, eps=eps)  # (B, D)
    return (2.0 - 2.0 * (p * z).sum(dim=1)).mean()
