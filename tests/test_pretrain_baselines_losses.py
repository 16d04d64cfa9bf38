"""Baseline losses (BYOL, Barlow Twins, COLA) and the MLP builder, against slow references
and analytic cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pretrain.losses.barlow import barlow_twins_loss, barlow_twins_terms, cross_correlation
from pretrain.losses.byol import byol_loss
from pretrain.losses.cola import bilinear_logits, cola_loss
from pretrain.projector import build_mlp

torch.set_num_threads(1)


# ---------------------------------------------------------------- BYOL

def _byol_reference(p: torch.Tensor, z: torch.Tensor) -> float:
    total = 0.0
    for pb, zb in zip(p.double().tolist(), z.double().tolist()):
        npb = math.sqrt(sum(v * v for v in pb))
        nzb = math.sqrt(sum(v * v for v in zb))
        total += sum((a / npb - b / nzb) ** 2 for a, b in zip(pb, zb))
    return total / len(p)


def test_byol_matches_squared_distance_of_unit_vectors():
    g = torch.Generator().manual_seed(0)
    p, z = torch.randn(6, 9, generator=g), torch.randn(6, 9, generator=g)
    assert byol_loss(p, z).item() == pytest.approx(_byol_reference(p, z), rel=1e-5)
    # short vectors (norms ~ 1e-3, as a projection near init can give) are normalised too
    assert byol_loss(1e-3 * p, 1e-3 * z).item() == pytest.approx(_byol_reference(p, z), rel=1e-5)


def test_byol_analytic_cases():
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(5, 7, generator=g), dim=1)
    assert byol_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    # Only the direction matters: positive rescaling of either side changes nothing.
    scale = torch.tensor([[0.01], [0.5], [0.9], [1.0], [7.0]])
    assert byol_loss(3.0 * x, x * scale).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(x * scale, 3.0 * x).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(x, -x).item() == pytest.approx(4.0, abs=1e-5)
    e = torch.eye(4)
    assert byol_loss(e, e.roll(1, dims=1)).item() == pytest.approx(2.0, abs=1e-6)


def test_byol_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        byol_loss(torch.randn(4, 8), torch.randn(4, 7))


# ---------------------------------------------------------------- Barlow Twins

def _pearson_reference(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """C_ij as the Pearson correlation of column i of z1 and column j of z2, by loops."""
    z1, z2 = z1.double(), z2.double()
    d = z1.shape[1]
    c = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d):
        a = z1[:, i] - z1[:, i].mean()
        for j in range(d):
            b = z2[:, j] - z2[:, j].mean()
            c[i, j] = (a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum())
    return c


def test_cross_correlation_is_pearson_correlation():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g) * 3 + 1
    c = cross_correlation(z1, z2, eps=0.0)
    torch.testing.assert_close(c.double(), _pearson_reference(z1, z2), atol=1e-5, rtol=1e-5)


def test_cross_correlation_equals_non_affine_batchnorm():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    bn = nn.BatchNorm1d(6, affine=False).train()
    expected = bn(z1).T @ bn(z2) / 10
    torch.testing.assert_close(cross_correlation(z1, z2, eps=bn.eps), expected)


def test_barlow_identical_views_have_zero_on_diagonal_loss():
    z = torch.randn(32, 8)
    z = (z - z.mean(0)) / z.std(0, unbiased=False)  # standardised view
    on_diag, off_diag = barlow_twins_terms(cross_correlation(z, z, eps=0.0))
    assert on_diag.item() == pytest.approx(0.0, abs=1e-8)
    assert off_diag.item() > 0.0  # random features are correlated a little


def test_barlow_decorrelated_identical_views_give_zero_loss():
    # Columns of a Hadamard matrix (minus the constant one) are zero-mean and orthogonal:
    # their cross-correlation with themselves is exactly the identity.
    h = torch.tensor([[1.0]])
    for _ in range(3):
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)  # (8, 8)
    z = h[:, 1:]  # (8, 7)
    c = cross_correlation(z, z, eps=0.0)
    torch.testing.assert_close(c, torch.eye(7), atol=1e-6, rtol=0)
    assert barlow_twins_loss(z, z, eps=0.0).item() == pytest.approx(0.0, abs=1e-10)


def test_barlow_loss_against_reference_and_lape_scaling():
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(12, 4, generator=g), torch.randn(12, 4, generator=g)
    c = _pearson_reference(z1, z2)
    on = sum((1 - c[i, i]) ** 2 for i in range(4))
    off = sum(c[i, j] ** 2 for i in range(4) for j in range(4) if i != j)
    got = barlow_twins_loss(z1, z2, lambd=0.0051, eps=0.0).item()
    assert got == pytest.approx(float(on + 0.0051 * off), rel=1e-5)
    # LAPE's code: lambda_barlow * (on / 32) + lambda_barlow * (off / 32).
    lape = 5e-5 * on / 32 + 5e-5 * off / 32
    got = barlow_twins_loss(z1, z2, lambd=1.0, scale=5e-5 / 32, eps=0.0).item()
    assert got == pytest.approx(float(lape), rel=1e-5)


def test_lape_weighting_cannot_tell_aligned_views_from_independent_ones():
    """The degeneracy that made the study's DeLoRes-S the Barlow Twins paper's weighting.

    At the study's batch (32) and feature count (2,048), with LAPE's weights (lambd 1, both
    terms equal) the off-diagonal sum of 2,048 x 2,047 squared chance correlations (each about
    1 / B) dwarfs the 2,048 invariance terms: perfectly aligned views and independent views
    give losses within 2 % of each other, so the loss barely rewards agreement. With the
    Barlow Twins paper's lambd = 0.0051, aligned views score far lower (< 35 % of independent).
    """
    torch.manual_seed(0)
    b, d = 32, 2048
    z = torch.randn(b, d)
    aligned, independent = (z, z.clone()), (z, torch.randn(b, d))
    lape = [barlow_twins_loss(*views, lambd=1.0, scale=1.0).item() for views in (aligned, independent)]
    paper = [barlow_twins_loss(*views, lambd=0.0051, scale=1.0).item() for views in (aligned, independent)]
    assert abs(lape[0] - lape[1]) / lape[1] < 0.02  # measured: 135,259 vs 137,256
    assert paper[0] < 0.35 * paper[1]
    # what the configs ship: the study's DeLoRes-S uses the paper's weighting
    from pretrain.config import load_config

    p = load_config("pretrain/configs/delores_s.yaml").objective.params
    assert (p.lambd, p.scale) == (0.0051, 1.0)


def test_barlow_invariant_to_per_feature_affine_maps():
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(20, 5, generator=g), torch.randn(20, 5, generator=g)
    scale, shift = torch.rand(5, generator=g) + 0.5, torch.randn(5, generator=g)
    a = barlow_twins_loss(z1, z2, eps=0.0)
    b = barlow_twins_loss(z1 * scale + shift, z2, eps=0.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-4)


def test_barlow_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        cross_correlation(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        cross_correlation(torch.randn(1, 3), torch.randn(1, 3))


# ---------------------------------------------------------------- COLA

def _cola_reference(a: torch.Tensor, p: torch.Tensor, w: torch.Tensor) -> float:
    a, p, w = a.double(), p.double(), w.double()
    b, d = a.shape
    s = [[sum(a[i, k] * w[k, l] * p[j, l] for k in range(d) for l in range(d)).item() for j in range(b)]
         for i in range(b)]
    return sum(-s[i][i] + math.log(sum(math.exp(v) for v in s[i])) for i in range(b)) / b


def test_cola_loss_matches_loop_reference():
    g = torch.Generator().manual_seed(5)
    a, p, w = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g), torch.randn(3, 3, generator=g)
    assert cola_loss(a, p, w).item() == pytest.approx(_cola_reference(a, p, w), rel=1e-5)
    sym = 0.5 * (_cola_reference(a, p, w) + _cola_reference(p, a, w.T))
    assert cola_loss(a, p, w, symmetric=True).item() == pytest.approx(sym, rel=1e-5)


def test_cola_perfect_bilinear_match_ranks_positive_first():
    g = torch.Generator().manual_seed(6)
    d = 6
    a = torch.randn(d, d, generator=g)
    w = torch.randn(d, d, generator=g) + 3 * torch.eye(d)
    # Positives chosen so that A W P^T = 10 I: each anchor matches only its own positive.
    p = torch.linalg.solve(a @ w, 10 * torch.eye(d)).T
    logits = bilinear_logits(a, p, w)
    assert torch.equal(logits.argmax(dim=1), torch.arange(d))
    assert cola_loss(a, p, w).item() < cola_loss(a, p.roll(1, dims=0), w).item()


def test_cola_uniform_similarities_give_log_batch():
    a, p = torch.randn(7, 4), torch.randn(7, 4)
    assert cola_loss(a, p, torch.zeros(4, 4)).item() == pytest.approx(math.log(7), rel=1e-6)


def test_cola_rejects_bad_weight():
    with pytest.raises(ValueError, match="bilinear weight"):
        cola_loss(torch.randn(3, 4), torch.randn(3, 4), torch.zeros(4, 5))


# ---------------------------------------------------------------- MLP builder

def test_build_mlp_byol_a_shapes_and_layers():
    proj = build_mlp([2048, 4096, 256])
    assert [type(m) for m in proj] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    n_params = sum(p.numel() for p in proj.parameters())
    assert n_params == (2048 * 4096 + 4096) + 2 * 4096 + (4096 * 256 + 256)
    assert proj.train()(torch.randn(3, 2048)).shape == (3, 256)


def test_build_mlp_delores_projector_has_no_bias_and_optional_non_affine_output_bn():
    proj = build_mlp([32, 16, 16, 8], bias=False, last_bn=True, last_bn_affine=False)
    kinds = [type(m) for m in proj]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear, nn.BatchNorm1d]
    assert all(m.bias is None for m in proj if isinstance(m, nn.Linear))
    assert proj[-1].weight is None and proj[-1].bias is None
    out = proj.train()(torch.randn(10, 32))
    torch.testing.assert_close(out.mean(0), torch.zeros(8), atol=1e-5, rtol=0)


def test_build_mlp_rejects_bad_dims():
    with pytest.raises(ValueError, match="at least two"):
        build_mlp([2048])


def test_cross_correlation_is_non_affine_batchnorm_standardisation():
    """Features far from zero mean and one constant feature: C = BN(z1)^T BN(z2) / B, where
    BN is torch's BatchNorm1d(affine=False) in training mode (eps 1e-5 inside the root)."""
    g = torch.Generator().manual_seed(3)
    z1 = 5.0 + 2.0 * torch.randn(10, 4, generator=g, dtype=torch.float64)
    z2 = -3.0 + torch.randn(10, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    z1[:, 2] = 7.0  # zero variance: standardised to 0 by the eps, not NaN
    bn = nn.BatchNorm1d(4, affine=False, eps=1e-5).double().train()
    expected = bn(z1).T @ bn(z2) / 10
    got = cross_correlation(z1, z2)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    # the defaults are the paper's: lambd 0.0051, scale 1, eps 1e-5
    on, off = barlow_twins_terms(expected)
    assert barlow_twins_loss(z1, z2).item() == pytest.approx((on + 0.0051 * off).item(), rel=1e-5)
    assert cross_correlation(z1, z2, eps=1.0).double().sub(expected).abs().max() > 1e-3  # eps is used
