"""The one MLP builder behind every projector and predictor head of the objectives.

Legend: B batch, D features.

``build_mlp([d0, d1, ..., dn])`` is ``Linear(d0, d1) [BN] ReLU ... Linear(d_{n-1}, dn)
[output BN]``, i.e. every layer but the last is followed by (optional) BatchNorm and the
activation. The recipes that use it (``../shared/RECIPE.md``):

  * BYOL-A projector ``[2048, 4096, 256]`` and predictor ``[256, 4096, 256]`` (bias, BN);
  * DeLoRes-S projector ``[2048, 2048, 2048, 2048]`` with ``bias=False`` (Linear no bias, BN,
    ReLU, twice, then Linear); its "non-affine BN on the outputs" is the feature
    standardisation inside :func:`pretrain.losses.barlow.cross_correlation`;
  * DeLoRes-M's per-block projectors ``[C*F_k, 2048, 2048, 2048]``, same form.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

__all__ = ["build_mlp"]


def build_mlp(
    dims: Sequence[int],
    *,
    bn: bool = True,
    bias: bool = True,
    last_bn: bool = False,
    last_bn_affine: bool = False,
) -> nn.Sequential:
    """An MLP mapping (B, dims[0]) to (B, dims[-1]).

    Args:
        dims: layer widths, input first; at least two entries (one Linear layer).
        bn: BatchNorm1d after every hidden Linear (before the ReLU).
        bias: bias of every Linear layer (Barlow Twins projectors use ``False``).
        last_bn: a BatchNorm1d on the output.
        last_bn_affine: whether that output BatchNorm has a learnable scale and shift.

    Returns:
        ``nn.Sequential`` of Linear / BatchNorm1d / ReLU modules.
    """
    dims = [int(d) for d in dims]
    if len(dims) < 2 or any(d <= 0 for d in dims):
        raise ValueError(f"build_mlp needs at least two positive widths (input, output), got {dims}")
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-2], dims[1:-1]):
        layers.append(nn.Linear(d_in, d_out, bias=bias))
        if bn:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Linear(dims[-2], dims[-1], bias=bias))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=last_bn_affine))
    return nn.Sequential(*layers)
