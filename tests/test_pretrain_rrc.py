"""Random resize crop against a literal re-implementation of BYOL-A's code.

The reference below re-types `RandomResizeCrop` from nttcslab/byol-a
(byol_a/augmentations.py): `virtual_crop_scale` is a (frequency, time) canvas ratio, the crop
size is clip(int(U(scale) * size), 1, canvas), its position a uniform integer inside the
canvas, and the crop is resized back with `F.interpolate(mode="bicubic", align_corners=True)`.
Our batched version must give the same parameter distributions and, for the same crop, the
same output.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from pretrain.augment import (CropParams, RandomResizeCropConfig, random_crop_params, random_resize_crop,
                              resized_crop)
from pretrain.config import ConfigError, load_config

torch.set_num_threads(1)
BYOLA = dict(virtual_crop_scale=(1.0, 1.5), freq_scale=(0.6, 1.5), time_scale=(0.6, 1.5))


# ----------------------------------------------------------------------------- BYOL-A, literally
def byola_get_params(virtual_crop_size, in_size, time_scale, freq_scale):
    canvas_h, canvas_w = virtual_crop_size
    src_h, src_w = in_size
    h = np.clip(int(np.random.uniform(*freq_scale) * src_h), 1, canvas_h)
    w = np.clip(int(np.random.uniform(*time_scale) * src_w), 1, canvas_w)
    i = random.randint(0, canvas_h - h) if canvas_h > h else 0
    j = random.randint(0, canvas_w - w) if canvas_w > w else 0
    return i, j, h, w


def byola_forward(lms, virtual_crop_scale, params):
    """BYOL-A's forward for one (C, F, T) log-mel with get_params' result `params` = (i, j, h, w)."""
    virtual_crop_size = [int(s * c) for s, c in zip(lms.shape[-2:], virtual_crop_scale)]
    virtual_crop_area = torch.zeros((lms.shape[0], virtual_crop_size[0], virtual_crop_size[1])).to(lms.dtype)
    _, lh, lw = virtual_crop_area.shape
    c, h, w = lms.shape
    x, y = (lw - w) // 2, (lh - h) // 2
    virtual_crop_area[:, y:y + h, x:x + w] = lms
    i, j, h, w = params
    crop = virtual_crop_area[:, i:i + h, j:j + w]
    return F.interpolate(crop.unsqueeze(0), size=lms.shape[-2:], mode="bicubic", align_corners=True).squeeze(0)


# ----------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("f, t", [(64, 96), (16, 40), (2, 3), (3, 1)])
def test_crop_parameter_distributions_match_byola(f, t):
    """Height, width, top and left over 20,000 draws: KS test against BYOL-A's get_params.

    (2, 3) and (3, 1) reach the lower clip at 1 pixel: int(U(0.6, 1.5) * 1) is 0 in 44 % of draws."""
    n = 20000
    np.random.seed(0)
    random.seed(0)
    canvas = (int(f * 1.0), int(t * 1.5))
    ref = np.array([byola_get_params(canvas, (f, t), BYOLA["time_scale"], BYOLA["freq_scale"]) for _ in range(n)])
    ours = random_crop_params(n, f, t, **BYOLA, generator=torch.Generator().manual_seed(1))
    ours = np.stack([ours.top.numpy(), ours.left.numpy(), ours.height.numpy(), ours.width.numpy()], axis=1)
    for k, name in enumerate(["top", "left", "height", "width"]):
        assert stats.ks_2samp(ref[:, k], ours[:, k]).pvalue > 1e-3, name
        assert abs(ref[:, k].mean() - ours[:, k].mean()) < 0.05 * ref[:, k].std() + 0.1, name
    # the facts the issue states: the mel axis is never squeezed, and left alone in ~55 % of draws
    assert (ours[:, 2] <= f).all() and (ours[:, 0] >= 0).all() and (ours[:, 0] + ours[:, 2] <= f).all()
    assert abs((ours[:, 2] == f).mean() - (ref[:, 2] == f).mean()) < 0.02
    assert 0.5 < (ours[:, 2] == f).mean() < 0.6


def test_crop_parameters_are_float64_uniforms_of_the_generator():
    """A resumed run replays its crops: the parameters are BYOL-A's formulas applied to four float64
    uniforms per clip drawn from the given generator (heights, widths, tops, lefts, in that order)."""
    b, f, t = 400, 64, 96
    ours = random_crop_params(b, f, t, **BYOLA, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    u_h, u_w, u_top, u_left = (torch.rand(b, generator=g, dtype=torch.float64).numpy() for _ in range(4))
    canvas_f, canvas_t = int(f * 1.0), int(t * 1.5)
    for n in range(b):
        h = int(np.clip(int((0.6 + 0.9 * u_h[n]) * f), 1, canvas_f))
        w = int(np.clip(int((0.6 + 0.9 * u_w[n]) * t), 1, canvas_t))
        expected = (int(u_top[n] * (canvas_f - h + 1)), int(u_left[n] * (canvas_t - w + 1)), h, w)
        assert tuple(int(v[n]) for v in ours) == expected, n


def test_crop_parameters_stay_inside_the_canvas():
    p = random_crop_params(5000, 64, 96, (1.2, 1.5), (0.1, 3.0), (0.1, 3.0), generator=torch.Generator().manual_seed(0))
    canvas_f, canvas_t = int(64 * 1.2), int(96 * 1.5)
    assert (p.height >= 1).all() and (p.width >= 1).all()
    assert (p.top >= 0).all() and (p.top + p.height <= canvas_f).all()
    assert (p.left >= 0).all() and (p.left + p.width <= canvas_t).all()
    assert (p.top == 0).any() and (p.top + p.height == canvas_f).any()  # both ends reachable


# ----------------------------------------------------------------------------- output
@pytest.mark.parametrize("shape, scale", [((64, 96), (1.0, 1.5)), ((16, 40), (1.0, 1.5)), ((12, 20), (1.5, 1.25)),
                                          ((1, 7), (1.0, 1.5)), ((2, 3), (1.0, 1.5))])
def test_resized_crop_equals_byola_forward(shape, scale):
    """Same crops, same outputs, for random crops and for the edge cases (1-pixel crop, full canvas),
    down to 1- and 2-pixel outputs (where align_corners' step (size - 1) / (n_out - 1) degenerates)."""
    f, t = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, f, t, generator=g, dtype=torch.float64)
    params = random_crop_params(36, f, t, scale, (0.05, 2.0), (0.05, 2.0), generator=g)
    canvas_f, canvas_t = int(f * scale[0]), int(t * scale[1])
    extra = [(0, 0, 1, 1), (canvas_f - 1, canvas_t - 1, 1, 1), (0, 0, canvas_f, canvas_t), (0, 3, canvas_f, 2)]
    top, left, height, width = (torch.cat([v, torch.tensor([e[k] for e in extra])]) for k, v in enumerate(params))
    params = CropParams(top, left, height, width)
    ours = resized_crop(x, params, scale)
    for n in range(x.shape[0]):
        crop = tuple(int(v[n]) for v in params)
        ref = byola_forward(x[n:n + 1], scale, crop)[0]
        torch.testing.assert_close(ours[n], ref, rtol=1e-9, atol=1e-9, msg=f"crop {crop}")


def test_crop_equal_to_the_input_returns_it():
    x = torch.randn(3, 64, 96)
    off = (int(96 * 1.5) - 96) // 2
    same = CropParams(torch.zeros(3, dtype=torch.long), torch.full((3,), off), torch.full((3,), 64), torch.full((3,), 96))
    torch.testing.assert_close(resized_crop(x, same, (1.0, 1.5)), x, rtol=0, atol=1e-5)


def test_time_only_crop_keeps_every_mel_row():
    """frequency=False: the crop spans the F rows unmoved, so a time-constant input is unchanged away
    from the time edges (where the canvas zeros enter)."""
    profile = torch.randn(4, 64, 1, dtype=torch.float64)
    x = profile.expand(4, 64, 96).contiguous()
    p = random_crop_params(4, 64, 96, **BYOLA, generator=torch.Generator().manual_seed(0), frequency=False)
    assert (p.height == 64).all() and (p.top == 0).all()
    out = resized_crop(x, p, BYOLA["virtual_crop_scale"])
    for n in range(4):  # columns whose source (and its bicubic taps) lie inside the input
        src = int(p.left[n]) - 24 + torch.arange(96) * (int(p.width[n]) - 1) / 95
        ok = (src >= 1) & (src <= 94)
        torch.testing.assert_close(out[n][:, ok], x[n][:, ok], rtol=1e-9, atol=1e-9)


def test_random_resize_crop_module_draws_one_crop_per_clip():
    x = torch.randn(1, 64, 96).expand(8, 64, 96).contiguous()
    out = random_resize_crop(x, **BYOLA, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert len({tuple(o.flatten()[:50].tolist()) for o in out}) == 8  # independent crops


# ----------------------------------------------------------------------------- config
def test_config_names_byola_keys_and_checks_ranges():
    cfg = RandomResizeCropConfig()
    assert (cfg.virtual_crop_scale, cfg.freq_scale, cfg.time_scale) == ((1.0, 1.5), (0.6, 1.5), (0.6, 1.5))
    with pytest.raises(ConfigError, match="virtual_crop_scale"):
        load_config(None, ["augment.rrc.virtual_crop_scale=[0.9, 1.5]"])
    with pytest.raises(ConfigError, match="freq_scale"):
        load_config(None, ["augment.rrc.freq_scale=[0.6, 0.9]"])
    with pytest.raises(ConfigError, match="canvas"):  # the old key, whose meaning was wrong, is refused
        load_config(None, ["augment.rrc.canvas=[1.0, 1.5]"])
