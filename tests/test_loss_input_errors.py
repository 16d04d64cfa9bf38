"""Every loss rejects a bad input where it enters, with a message naming the shapes it got.

Each case is one condition of a check alone (the others satisfied), so a check that
tests the wrong condition, joins two with the wrong operator or drops the values from
its message fails here.
"""
from __future__ import annotations

import re

import pytest
import torch

from pretrain.losses.barlow import barlow_twins_loss, barlow_twins_terms, cross_correlation
from pretrain.losses.byol import byol_loss
from pretrain.losses.cluster import cluster_contrast, negative_entropy
from pretrain.losses.cola import bilinear_logits, cola_loss
from pretrain.losses.instance import info_nce


def unit(*shape):
    return torch.nn.functional.normalize(torch.randn(*shape), dim=-1)


def soft(*shape):
    return torch.randn(*shape).softmax(-1)


CASES = [
    # (call, expected message, as a regular expression)
    (lambda: info_nce(unit(4, 8), unit(5, 8), unit(3, 8), 0.1), r"query and key must both be \(B, D\), got \(4, 8\) and \(5, 8\)"),
    (lambda: info_nce(unit(2, 4, 8), unit(2, 4, 8), unit(3, 8), 0.1), r"got \(2, 4, 8\) and \(2, 4, 8\)"),
    (lambda: info_nce(unit(4, 8), unit(4, 8), unit(3, 7), 0.1), r"negatives must be \(K, 8\), got \(3, 7\)"),
    (lambda: info_nce(unit(4, 8), unit(4, 8), unit(2, 3, 8), 0.1), r"negatives must be \(K, 8\), got \(2, 3, 8\)"),
    (lambda: info_nce(unit(4, 8), unit(4, 8), unit(3, 8), 0.0), r"temperature must be positive, got 0.0"),
    (lambda: cluster_contrast(soft(4, 3), soft(5, 3)), r"expected two \(B, C\) assignment matrices, got \(4, 3\) and \(5, 3\)"),
    (lambda: cluster_contrast(soft(2, 4, 3), soft(2, 4, 3)), r"got \(2, 4, 3\) and \(2, 4, 3\)"),
    (lambda: cluster_contrast(soft(4, 3), soft(4, 3), 0.0), r"temperature must be positive, got 0.0"),
    (lambda: negative_entropy(soft(2, 4, 3)), r"expected a \(B, C\) assignment matrix, got \(2, 4, 3\)"),
    (lambda: cross_correlation(torch.randn(4, 3), torch.randn(4, 2)), r"same shape \(B, D\), got \(4, 3\) and \(4, 2\)"),
    (lambda: cross_correlation(torch.randn(2, 4, 3), torch.randn(2, 4, 3)), r"got \(2, 4, 3\) and \(2, 4, 3\)"),
    (lambda: cross_correlation(torch.randn(1, 3), torch.randn(1, 3)),
     r"^cross_correlation needs a batch of at least 2 to standardise features, got 1; raise the per-process batch size$"),
    (lambda: barlow_twins_terms(torch.randn(3, 4)), r"square \(D, D\) cross-correlation matrix, got \(3, 4\)"),
    (lambda: barlow_twins_terms(torch.randn(3)), r"got \(3,\)"),
    (lambda: barlow_twins_loss(torch.randn(1, 3), torch.randn(1, 3)), r"at least 2"),
    (lambda: byol_loss(torch.randn(4, 3), torch.randn(4, 2)), r"same shape \(B, D\), got \(4, 3\) and \(4, 2\)"),
    (lambda: byol_loss(torch.randn(2, 4, 3), torch.randn(2, 4, 3)), r"got \(2, 4, 3\) and \(2, 4, 3\)"),
    (lambda: bilinear_logits(torch.randn(4, 3), torch.randn(5, 3), torch.eye(3)), r"same shape \(B, D\), got \(4, 3\) and \(5, 3\)"),
    (lambda: bilinear_logits(torch.randn(2, 4, 3), torch.randn(2, 4, 3), torch.eye(3)), r"got \(2, 4, 3\) and \(2, 4, 3\)"),
    (lambda: bilinear_logits(torch.randn(4, 3), torch.randn(4, 3), torch.eye(2)), r"bilinear weight of shape \(3, 3\), got \(2, 2\)"),
    (lambda: cola_loss(torch.randn(4, 3), torch.randn(4, 3), torch.eye(2)), r"bilinear weight of shape \(3, 3\)"),
]


@pytest.mark.parametrize("call,message", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_bad_input_is_rejected_with_its_shapes(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert re.search(message, str(err.value)), str(err.value)


def test_valid_boundary_inputs_are_accepted():
    # the smallest valid cases next to the rejected ones: one key, one negative, tiny temperature
    assert torch.isfinite(info_nce(unit(1, 8), unit(1, 8), unit(1, 8), 1e-3))
    assert torch.isfinite(cluster_contrast(soft(1, 2), soft(1, 2), 1e-3))
    assert torch.isfinite(negative_entropy(soft(1, 2)))
    assert torch.isfinite(barlow_twins_loss(torch.randn(2, 3), torch.randn(2, 3)))


def test_cluster_contrast_default_temperature_is_one():
    """Contrastive Clustering's cluster temperature (and SLICER's released code): 1.0."""
    p_a, p_b = soft(8, 4), soft(8, 4)
    assert cluster_contrast(p_a, p_b).item() == cluster_contrast(p_a, p_b, 1.0).item()
    assert cluster_contrast(p_a, p_b).item() != pytest.approx(cluster_contrast(p_a, p_b, 2.0).item())
