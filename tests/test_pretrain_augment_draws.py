"""The random draws of mixup and k-mix, read back from their outputs.

Planted memories make each draw recoverable: every memory clip has log(2) in mel bin 0
and log(i + 2) in mel bin 1 (i its identity), and the input is 0 in those two bins, so
log-mixup-exp gives exp(out[0]) - 1 = lambda and (exp(out[1]) - 1) / lambda - 1 = i.
The other bins carry a random signature that decides k-mix's centroid distances.
Random resize crop's draws are tested in tests/test_pretrain_augment.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from pretrain.augment import (AugmentConfig, AugmentPipeline, ClipMemory, KMix, KMixConfig, Mixup, MixupConfig,
                              RandomResizeCrop, clip_descriptor, kmix_partners, random_crop_params,
                              random_resize_crop)

torch.set_num_threads(1)

FB, FR = 12, 5  # mel bins, frames


def _planted_clips(ids, seed: int = 0) -> torch.Tensor:
    """(len(ids), F, T): bin 0 = log 2, bin 1 = log(id + 2), other bins a per-clip signature."""
    g = torch.Generator().manual_seed(seed)
    clips = torch.randn(len(ids), FB, FR, generator=g, dtype=torch.float64)
    clips[:, 0] = np.log(2.0)
    clips[:, 1] = torch.log(torch.tensor(ids, dtype=torch.float64) + 2.0)[:, None]
    return clips


def _inputs(n: int, seed: int = 1) -> torch.Tensor:
    """(n, F, T) inputs, 0 in bins 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FB, FR, generator=g, dtype=torch.float64)
    x[:, :2] = 0.0
    return x


def _read_draws(out: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(lambda (B,), partner identity (B,)) from a mixed batch (ids only where lambda > 0.02)."""
    e = torch.exp(out[:, :2, 0]).numpy()
    lam = e[:, 0] - 1.0
    ids = np.where(lam > 0.02, (e[:, 1] - 1.0) / np.maximum(lam, 1e-12) - 1.0, np.nan)
    return lam, ids


@pytest.mark.parametrize("alpha", [0.4, 0.9])
def test_mixup_lambda_is_uniform_on_zero_alpha(alpha):
    mix = Mixup(MixupConfig(memory=8, alpha=alpha), FB, FR).double()
    mix.memory.push(_planted_clips([0, 1, 2]))
    torch.manual_seed(0)
    lam, _ = _read_draws(mix(_inputs(4000)))
    assert lam.min() >= -1e-9 and lam.max() <= alpha + 1e-9
    assert stats.kstest(lam / alpha, "uniform").pvalue > 1e-3
    assert lam.max() > 0.97 * alpha and lam.min() < 0.03 * alpha


def test_mixup_partner_is_uniform_over_the_filled_memory_only():
    mix = Mixup(MixupConfig(memory=16, alpha=0.4), FB, FR).double()
    mix.memory.push(_planted_clips(list(range(5))))  # 5 of 16 slots filled
    torch.manual_seed(1)
    _, ids = _read_draws(mix(_inputs(3000)))
    ids = ids[~np.isnan(ids)]
    np.testing.assert_allclose(ids, np.round(ids), atol=1e-6)
    counts = np.bincount(np.round(ids).astype(int), minlength=5)
    assert len(counts) == 5  # never an empty slot (its id would read as -2) or an unknown clip
    assert stats.chisquare(counts).pvalue > 1e-3


def test_mixup_memory_is_a_fifo_of_the_remembered_batches():
    """After 3 batches of 4 into a memory of 6, mixup draws exactly the last 6 clips."""
    cfg = AugmentConfig()
    cfg.mixup.memory, cfg.rrc.enabled, cfg.kmix.enabled = 6, False, False
    aug = AugmentPipeline(cfg, FB, FR).double()
    for start in (0, 4, 8):
        aug.remember(_planted_clips(list(range(start, start + 4)), seed=start))
    assert len(aug.mixup.memory) == 6 and int(aug.mixup.memory.ptr) == 0
    torch.manual_seed(2)
    _, ids = _read_draws(aug(_inputs(2000)))
    seen = set(np.round(ids[~np.isnan(ids)]).astype(int).tolist())
    assert seen == set(range(6, 12))
    # one batch larger than the memory keeps only its newest clips
    aug.remember(_planted_clips(list(range(20, 30)), seed=20))
    _, ids = _read_draws(aug(_inputs(2000)))
    assert set(np.round(ids[~np.isnan(ids)]).astype(int).tolist()) == set(range(24, 30))


def _farthest_by_hand(x: torch.Tensor, centroids: torch.Tensor, memory: torch.Tensor, r: int) -> list[set[int]]:
    """Brute-force k-mix candidates: per clip, the r memory clips farthest (cosine) from its closest centroid."""
    def unit(v):
        return v / np.linalg.norm(v)

    cents = [unit(c) for c in centroids.numpy()]
    mem = [unit(m.mean(axis=-1)) for m in memory.numpy()]
    out = []
    for clip in x.numpy():
        d = unit(clip.mean(axis=-1))
        closest = max(range(len(cents)), key=lambda j: float(d @ cents[j]))
        dist = [1.0 - float(cents[closest] @ m) for m in mem]
        out.append(set(sorted(range(len(mem)), key=lambda i: -dist[i])[:r]))
    return out


def test_kmix_draws_among_the_r_farthest_of_the_closest_centroid():
    m, r = 24, 6
    kmix = KMix(KMixConfig(memory=32, r=r, alpha=0.4, k=3), FB, FR).double()
    centroids = torch.randn(3, FB, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 3
    kmix.set_centroids(centroids)
    memory = _planted_clips(list(range(m)), seed=3)
    kmix.memory.push(memory)  # 24 of 32 slots: the empty slots must not be candidates
    clips = _inputs(3, seed=4)
    clips[:, 2:] += 2.0 * centroids[:, 2:, None]  # clip j lies near centroid j
    candidates = _farthest_by_hand(clips, centroids, memory, r)
    assert len({frozenset(c) for c in candidates}) == 3  # the three centroids give three candidate sets
    torch.manual_seed(3)
    x = clips.repeat(400, 1, 1)  # (1200, F, T), clip j at rows j, j + 3, ...
    lam, ids = _read_draws(kmix(x))
    assert lam.min() >= -1e-9 and lam.max() <= 0.4 + 1e-9
    assert stats.kstest(lam / 0.4, "uniform").pvalue > 1e-3
    for j in range(3):
        got = ids[j::3]
        got = np.round(got[~np.isnan(got)]).astype(int)
        assert set(got.tolist()) == candidates[j], f"clip {j}"  # only the r farthest, and all of them


def test_kmix_uniform_partner_until_the_memory_holds_r():
    """Fewer than r clips remembered: the partner is uniform over all of them (slot 0 included)."""
    kmix = KMix(KMixConfig(memory=16, r=8, alpha=0.4, k=2), FB, FR).double()
    kmix.set_centroids(torch.randn(2, FB, dtype=torch.float64))
    kmix.memory.push(_planted_clips(list(range(5))))
    torch.manual_seed(4)
    _, ids = _read_draws(kmix(_inputs(3000)))
    counts = np.bincount(np.round(ids[~np.isnan(ids)]).astype(int), minlength=5)
    assert len(counts) == 5 and counts.min() > 0
    assert stats.chisquare(counts).pvalue > 1e-3


def test_clip_descriptor_and_centroids_are_unit_rows_by_hand():
    x = torch.randn(3, FB, FR, dtype=torch.float64) + 1.0
    mean = x.numpy().mean(axis=-1)
    expected = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(clip_descriptor(x).numpy(), expected, rtol=1e-12)
    kmix = KMix(KMixConfig(memory=4, r=2, k=3), FB, FR)
    c = torch.randn(3, FB) * torch.tensor([[1.0], [5.0], [0.2]])
    kmix.set_centroids(c)
    torch.testing.assert_close(kmix.centroids, c / c.norm(dim=1, keepdim=True))
    with pytest.raises(ValueError, match=r"expected centroids of shape \(3, 12\), got \(2, 12\)"):
        kmix.set_centroids(torch.randn(2, FB))


def test_kmix_partners_with_r_above_the_memory_size_uses_all_of_it():
    g = torch.Generator().manual_seed(0)
    desc = F.normalize(torch.randn(4, 16, generator=g), dim=1)
    centroids = F.normalize(torch.randn(2, 16, generator=g), dim=1)
    memory = F.normalize(torch.randn(5, 16, generator=g), dim=1)  # M = 5 < r = 10 < F = 16
    seen = set()
    for _ in range(100):
        seen |= set(kmix_partners(desc, centroids, memory, r=10).tolist())
    assert seen == set(range(5))
    # the generator decides the draw: same seed, same partners, whatever the global RNG did
    a = kmix_partners(desc, centroids, memory, 3, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(123)
    b = kmix_partners(desc, centroids, memory, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_clip_memory_checks_its_size_and_keeps_integer_counters():
    with pytest.raises(ValueError, match="memory size must be positive, got 0"):
        ClipMemory(0, FB, FR)
    mem = ClipMemory(1, FB, FR)
    mem.push(torch.randn(3, FB, FR))
    assert len(mem) == 1 and mem.count.dtype == mem.ptr.dtype == torch.long


@pytest.mark.parametrize("mixup,rrc,kmix", [(True, True, True), (True, False, False), (False, True, False),
                                            (False, False, True)])
def test_pipeline_applies_the_enabled_augmentations_in_order(mixup, rrc, kmix):
    cfg = AugmentConfig()
    cfg.mixup.enabled, cfg.rrc.enabled, cfg.kmix.enabled = mixup, rrc, kmix
    cfg.mixup.memory, cfg.kmix.memory, cfg.kmix.r, cfg.kmix.k = 8, 8, 4, 2
    aug = AugmentPipeline(cfg, FB, FR)
    assert aug.cfg is cfg
    assert [aug.mixup is not None, aug.rrc is not None, aug.kmix is not None] == [mixup, rrc, kmix]
    if kmix:
        aug.kmix.set_centroids(torch.randn(2, FB))
    aug.remember(torch.randn(6, FB, FR))
    x = torch.randn(3, FB, FR)
    torch.manual_seed(5)
    got = aug(x)
    torch.manual_seed(5)
    expected = x
    for step in (aug.mixup, aug.rrc, aug.kmix):
        if step is not None:
            expected = step(expected)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, x)


# ----------------------------------------------------------------------------- RRC plumbing
# (RRC's distributions and resizing are pinned against BYOL-A in tests/test_pretrain_rrc.py;
# these check what reaches it: the generator, the frequency flag, a frequency canvas > 1.)
def test_crop_parameters_come_from_the_generator_alone():
    def draw():
        return random_crop_params(16, 64, 96, (1.5, 1.5), (0.6, 1.5), (0.6, 1.5),
                                  generator=torch.Generator().manual_seed(3))

    a = draw()
    torch.manual_seed(99)
    b = draw()
    for name, u, v in zip(a._fields, a, b):
        assert torch.equal(u, v), name
    x = torch.randn(4, 64, 96)
    torch.manual_seed(1)
    one = random_resize_crop(x, (1.0, 1.5), (0.6, 1.5), (0.6, 1.5), generator=torch.Generator().manual_seed(5))
    torch.manual_seed(2)
    two = random_resize_crop(x, (1.0, 1.5), (0.6, 1.5), (0.6, 1.5), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(one, two)


def test_time_only_crop_on_a_taller_canvas_keeps_the_input_rows():
    """frequency=False with a frequency canvas of 1.5: the crop is the input's own F rows,
    centred on the canvas as the input is."""
    p = random_crop_params(8, 64, 96, (1.5, 1.5), (0.6, 1.5), (0.6, 1.5), frequency=False,
                           generator=torch.Generator().manual_seed(0))
    assert (p.height == 64).all() and (p.top == (96 - 64) // 2).all()
    profile = torch.randn(8, 64, 1, dtype=torch.float64)
    x = profile.expand(8, 64, 96).contiguous()
    out = random_resize_crop(x, (1.5, 1.0), (0.6, 1.5), (1.0, 1.0), frequency=False,
                             generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x, rtol=1e-9, atol=1e-9)  # full time span, rows unmoved


@pytest.mark.parametrize("frequency", [True, False])
def test_rrc_module_and_function_follow_the_frequency_flag(frequency):
    cfg = AugmentConfig().rrc
    cfg.frequency = frequency
    profile = torch.randn(6, 64, 1)
    x = profile.expand(6, 64, 96).contiguous()
    torch.manual_seed(4)
    got = RandomResizeCrop(cfg)(x)
    torch.manual_seed(4)
    expected = random_resize_crop(x, cfg.virtual_crop_scale, cfg.freq_scale, cfg.time_scale, frequency=frequency)
    torch.testing.assert_close(got, expected)
    if frequency:  # the default of the function too: mel rows move
        torch.manual_seed(4)
        default = random_resize_crop(x, cfg.virtual_crop_scale, cfg.freq_scale, cfg.time_scale)
        torch.testing.assert_close(default, got)
    mid = slice(30, 66)
    moved = (got[:, :, mid] - x[:, :, mid]).abs().amax()
    assert (moved > 0.1) == frequency
