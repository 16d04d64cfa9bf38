"""Losses against slow, obviously-correct references and analytic cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pretrain.losses.cluster import cluster_contrast, negative_entropy
from pretrain.losses.instance import info_nce

torch.set_num_threads(1)


def slow_info_nce(q, k, queue, t):
    total = 0.0
    for i in range(q.shape[0]):
        pos = math.exp(float(q[i] @ k[i]) / t)
        neg = sum(math.exp(float(q[i] @ queue[j]) / t) for j in range(queue.shape[0]))
        total += -math.log(pos / (pos + neg))
    return total / q.shape[0]


def slow_cluster_contrast(pa, pb, t):
    cols = [pa[:, c] for c in range(pa.shape[1])] + [pb[:, c] for c in range(pb.shape[1])]
    n, c = len(cols), pa.shape[1]
    cos = lambda u, v: float(u @ v) / (float(u.norm()) * float(v.norm()))  # noqa: E731
    total = 0.0
    for i in range(n):
        partner = (i + c) % n
        denom = sum(math.exp(cos(cols[i], cols[j]) / t) for j in range(n) if j != i)
        total += -math.log(math.exp(cos(cols[i], cols[partner]) / t) / denom)
    return total / n


def test_info_nce_matches_reference():
    g = torch.Generator().manual_seed(0)
    q, k = (F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=1) for _ in range(2))
    queue = F.normalize(torch.randn(13, 8, generator=g, dtype=torch.float64), dim=1)
    got = info_nce(q, k, queue, 0.07)
    assert got.item() == pytest.approx(slow_info_nce(q, k, queue, 0.07), rel=1e-5)


def test_info_nce_uniform_similarities_give_log_k_plus_1():
    d, n_queue = 4, 37
    q = F.normalize(torch.ones(3, d), dim=1)
    queue = q[:1].repeat(n_queue, 1)  # every negative equals the positive
    assert info_nce(q, q.clone(), queue, 0.07).item() == pytest.approx(math.log(n_queue + 1), rel=1e-6)


def test_info_nce_gradient_reaches_query_not_queue():
    q = F.normalize(torch.randn(4, 6), dim=1).requires_grad_()
    queue = F.normalize(torch.randn(10, 6), dim=1).requires_grad_()
    info_nce(q, F.normalize(torch.randn(4, 6), dim=1), queue, 0.1).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert queue.grad is None


def test_cluster_contrast_matches_reference():
    g = torch.Generator().manual_seed(1)
    pa = torch.randn(7, 5, generator=g, dtype=torch.float64).softmax(1)
    pb = torch.randn(7, 5, generator=g, dtype=torch.float64).softmax(1)
    for t in (1.0, 0.5):
        assert cluster_contrast(pa, pb, t).item() == pytest.approx(slow_cluster_contrast(pa, pb, t), rel=1e-5)


def test_cluster_contrast_invariant_to_permuting_clusters_of_both_views():
    g = torch.Generator().manual_seed(2)
    pa, pb = (torch.randn(16, 10, generator=g).softmax(1) for _ in range(2))
    perm = torch.randperm(10, generator=g)
    base = cluster_contrast(pa, pb)
    torch.testing.assert_close(cluster_contrast(pa[:, perm], pb[:, perm]), base)
    # permuting only one view breaks the pairing: the loss must change
    assert not torch.allclose(cluster_contrast(pa[:, perm], pb), base)


def test_negative_entropy_analytic():
    c = 8
    uniform = torch.full((4, c), 1.0 / c)
    assert negative_entropy(uniform).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = F.one_hot(torch.zeros(4, dtype=torch.long), c).float()
    assert negative_entropy(collapsed).item() == pytest.approx(math.log(c), rel=1e-6)
    balanced = F.one_hot(torch.arange(c), c).float()  # hard but balanced use
    assert negative_entropy(balanced).item() == pytest.approx(0.0, abs=1e-6)
