"""Augmentations: mixup formula, k-mix partner choice, random resize crop, memories."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pretrain.augment import (AugmentConfig, AugmentPipeline, ClipMemory, CropParams, KMix, KMixConfig,
                              RandomResizeCropConfig, clip_descriptor, kmix_partners, log_mixup_exp,
                              random_crop_params, random_resize_crop, resized_crop)

torch.set_num_threads(1)


def test_log_mixup_exp_formula():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 4, 5, generator=g, dtype=torch.float64), torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    lam = torch.tensor([0.0, 0.25, 0.4], dtype=torch.float64)
    got = log_mixup_exp(x, y, lam).numpy()
    xn, yn = x.numpy(), y.numpy()
    for i, l in enumerate(lam.tolist()):
        np.testing.assert_allclose(got[i], np.log((1 - l) * np.exp(xn[i]) + l * np.exp(yn[i])), rtol=1e-10)


def test_kmix_partner_among_r_farthest_on_planted_centroids():
    torch.manual_seed(0)
    f, m, r = 16, 200, 10
    centroids = F.normalize(torch.randn(4, f), dim=1)
    memory = F.normalize(torch.randn(m, f), dim=1)
    clips = F.normalize(centroids[[2, 2, 0, 3]] + 0.01 * torch.randn(4, f), dim=1)  # planted near centroids 2, 2, 0, 3
    seen = [set() for _ in range(4)]
    for _ in range(300):
        idx = kmix_partners(clips, centroids, memory, r)
        for i, j in enumerate(idx.tolist()):
            seen[i].add(j)
    for i, c in enumerate([2, 2, 0, 3]):
        dist = 1 - memory @ centroids[c]  # (M,) distances to the planted centroid
        farthest = set(torch.argsort(dist, descending=True)[:r].tolist())
        assert seen[i] == farthest  # only the r farthest, and (after 300 draws) all of them


def test_kmix_random_partner_until_memory_holds_r():
    cfg = KMixConfig(memory=64, r=32, k=2)
    kmix = KMix(cfg, n_mels=8, n_frames=16)
    kmix.set_centroids(torch.randn(2, 8))
    x = torch.randn(5, 8, 16)
    torch.testing.assert_close(kmix(x), x)  # empty memory: identity
    kmix.memory.push(torch.randn(4, 8, 16))
    out = kmix(x)
    assert out.shape == x.shape and not torch.allclose(out, x)


def test_pipeline_views_do_not_change_memory_and_remember_pushes():
    cfg = AugmentConfig()
    cfg.mixup.memory, cfg.kmix.memory, cfg.kmix.r, cfg.kmix.k = 8, 8, 4, 2
    aug = AugmentPipeline(cfg, n_mels=16, n_frames=24)
    aug.kmix.set_centroids(torch.randn(2, 16))
    x = torch.randn(3, 16, 24)
    state = {k: v.clone() for k, v in aug.state_dict().items()}
    aug(x)
    aug(x)
    for k, v in aug.state_dict().items():
        torch.testing.assert_close(v, state[k])
    aug.remember(x)
    assert len(aug.mixup.memory) == 3 and len(aug.kmix.memory) == 3
    torch.testing.assert_close(aug.mixup.memory.clips[:3], x)
    torch.testing.assert_close(aug.kmix.memory.desc[:3], clip_descriptor(x))


def test_clip_memory_fifo():
    mem = ClipMemory(size=4, n_mels=2, n_frames=3)
    batches = [torch.full((3, 2, 3), float(i)) for i in range(3)]  # 9 clips into 4 slots
    for b in batches:
        mem.push(b)
    assert len(mem) == 4
    # slots hold clips 4..8 of the stream (values 1,1,2,2,2 minus the oldest): slot s <- clip with s = idx % 4
    stream = [float(i) for i in range(3) for _ in range(3)]
    expected = {i % 4: v for i, v in enumerate(stream)}
    assert [float(mem.clips[s, 0, 0]) for s in range(4)] == [expected[s] for s in range(4)]


