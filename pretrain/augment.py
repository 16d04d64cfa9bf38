"""Batched log-mel augmentations on the training device: BYOL-A mixup, random resize crop, k-mix.

Legend: B batch, F mel bins, T frames, M memory size, k centroids, r k-mix candidates.

All three act on normalised log-mels (B, F, T), in this order (RECIPE.md): mixup, random
resize crop, k-mix. The math is in pure functions (`log_mixup_exp`, `random_resize_crop`,
`kmix_partners`); the `nn.Module` wrappers hold the explicit state — FIFO memories of past
inputs and the k-mix centroids — as buffers, so it is saved in checkpoints and follows
`.to(device)`. Drawing a view never changes state: the training step calls
`AugmentPipeline.remember(x)` once per batch, after drawing both views. Randomness comes
from the global torch RNG of the device (saved and restored with the run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .checks import Check, above, at_least, between, ordered_pair

__all__ = [
    "MixupConfig", "RandomResizeCropConfig", "KMixConfig", "AugmentConfig",
    "log_mixup_exp", "random_resize_crop", "random_crop_params", "resized_crop", "CropParams",
    "kmix_partners", "clip_descriptor",
    "ClipMemory", "Mixup", "RandomResizeCrop", "KMix", "AugmentPipeline",
]


@dataclass
class MixupConfig:
    enabled: bool = True
    memory: int = 2048  # BYOL-A
    alpha: float = 0.4  # lambda ~ U(0, alpha), BYOL-A
    CHECKS: ClassVar[dict[str, Check]] = {"memory": at_least(1), "alpha": between(0, 1)}


@dataclass
class RandomResizeCropConfig:
    """BYOL-A's `RandomResizeCrop(virtual_crop_scale, freq_scale, time_scale)` (nttcslab/byol-a,
    byol_a/augmentations.py), whose code is the source (RECIPE.md's first reading was wrong)."""

    enabled: bool = True
    virtual_crop_scale: tuple[float, float] = (1.0, 1.5)  # (frequency, time) canvas size / input size, BYOL-A
    freq_scale: tuple[float, float] = (0.6, 1.5)  # crop height / input height ~ U(range), clipped to the canvas, BYOL-A
    time_scale: tuple[float, float] = (0.6, 1.5)  # crop width / input width ~ U(range), clipped to the canvas, BYOL-A
    frequency: bool = True  # False: the crop spans the input's mel bins unmoved (time-only crop; ours, an ablation)
    CHECKS: ClassVar[dict[str, Check]] = {
        "virtual_crop_scale": Check("(frequency, time) ratios, both >= 1 (BYOL-A: [1.0, 1.5])",
                                    lambda v: len(v) == 2 and min(v) >= 1.0),
        "freq_scale": Check("a range [low, high] with 0 < low <= high and high >= 1 (BYOL-A: [0.6, 1.5])",
                            lambda v: len(v) == 2 and 0 < v[0] <= v[1] and v[1] >= 1.0),
        "time_scale": Check("a range [low, high] with 0 < low <= high and high >= 1 (BYOL-A: [0.6, 1.5])",
                            lambda v: len(v) == 2 and 0 < v[0] <= v[1] and v[1] >= 1.0)}


@dataclass
class KMixConfig:
    enabled: bool = True
    memory: int = 2048  # released SLICER code
    r: int = 128  # partner drawn among the r memory entries farthest from the clip's centroid
    alpha: float = 0.4  # lambda ~ U(0, alpha), as mixup
    k: int = 4  # spherical k-means centroids (computed by pretrain.stats)
    CHECKS: ClassVar[dict[str, Check]] = {"memory": at_least(1), "r": at_least(1), "alpha": between(0, 1),
                                          "k": at_least(1)}


@dataclass
class AugmentConfig:
    mixup: MixupConfig = field(default_factory=MixupConfig)
    rrc: RandomResizeCropConfig = field(default_factory=RandomResizeCropConfig)
    kmix: KMixConfig = field(default_factory=KMixConfig)


# ----------------------------------------------------------------------------- pure functions
def log_mixup_exp(x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Mix in the linear domain: log((1 - lam) exp(x) + lam exp(partner)).

    x, partner: (B, F, T) log-mels; lam: (B,) weights in [0, 1]. Computed stably with logaddexp.
    """
    lam = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))  # (B, 1, 1)
    return torch.logaddexp(torch.log1p(-lam) + x, torch.log(lam) + partner)


def clip_descriptor(x: torch.Tensor) -> torch.Tensor:
    """k-mix's clip descriptor: the L2-normalised time-averaged log-mel. (B, F, T) -> (B, F)."""
    return F.normalize(x.mean(dim=-1), dim=-1)


def kmix_partners(desc: torch.Tensor, centroids: torch.Tensor, memory_desc: torch.Tensor, r: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Memory index of each clip's k-mix partner.

    desc: (B, F) unit descriptors of the clips; centroids: (k, F) unit centroids;
    memory_desc: (M, F) unit descriptors of the memory. Each clip's closest centroid c (cosine)
    orders the memory by descending cosine distance to c; the partner is uniform among the
    first min(r, M). Returns (B,) int64 indices into the memory.
    """
    closest = (desc @ centroids.T).argmax(dim=1)  # (B,) nearest centroid
    dist_to_c = 1.0 - centroids[closest] @ memory_desc.T  # (B, M) cosine distance to that centroid
    r = min(r, memory_desc.shape[0])
    farthest = dist_to_c.topk(r, dim=1).indices  # (B, r) descending distance
    pick = torch.randint(0, r, (desc.shape[0], 1), device=desc.device, generator=generator)  # (B, 1)
    return farthest.gather(1, pick).squeeze(1)  # (B,)


class CropParams(NamedTuple):
    """Per-clip crops on the virtual canvas, in canvas pixels: rows [top, top + height),
    columns [left, left + width). All (B,) int64."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor


def canvas_size(f: int, t: int, virtual_crop_scale: tuple[float, float]) -> tuple[int, int]:
    """The virtual canvas (F', T') for an (F, T) input, truncated to whole pixels as BYOL-A does."""
    return int(f * virtual_crop_scale[0]), int(t * virtual_crop_scale[1])


def random_crop_params(b: int, f: int, t: int, virtual_crop_scale: tuple[float, float],
                       freq_scale: tuple[float, float], time_scale: tuple[float, float],
                       device: torch.device | str = "cpu", generator: torch.Generator | None = None,
                       frequency: bool = True) -> CropParams:
    """BYOL-A's `RandomResizeCrop.get_params`, drawn for B clips at once.

    height = clip(int(U(freq_scale) F), 1, F'), width = clip(int(U(time_scale) T), 1, T');
    top ~ U{0 .. F' - height} and left ~ U{0 .. T' - width} (integers, both ends included).
    With `frequency=False` the crop covers exactly the input's F rows.
    """
    canvas_f, canvas_t = canvas_size(f, t, virtual_crop_scale)

    def uniform(lo_hi: tuple[float, float]) -> torch.Tensor:
        lo, hi = lo_hi
        return lo + (hi - lo) * torch.rand(b, device=device, generator=generator, dtype=torch.float64)  # (B,)

    height = (uniform(freq_scale) * f).long().clamp(1, canvas_f)  # (B,) int() truncates, as BYOL-A
    width = (uniform(time_scale) * t).long().clamp(1, canvas_t)
    top = (torch.rand(b, device=device, generator=generator, dtype=torch.float64) * (canvas_f - height + 1)).long()
    left = (torch.rand(b, device=device, generator=generator, dtype=torch.float64) * (canvas_t - width + 1)).long()
    if not frequency:
        height = torch.full_like(height, f)
        top = torch.full_like(top, (canvas_f - f) // 2)
    return CropParams(top, left, height, width)


def _cubic_weights(frac: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    """Keys' cubic convolution weights of the 4 taps at offsets -1, 0, 1, 2 (PyTorch's bicubic,
    A = -0.75). frac: (...,) in [0, 1) -> (..., 4)."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return torch.stack([far(frac + 1), near(frac), near(1 - frac), far(2 - frac)], dim=-1)


def _resize_matrix(start: torch.Tensor, size: torch.Tensor, n_out: int, n_in: int, offset: int,
                   dtype: torch.dtype) -> torch.Tensor:
    """(B, n_out, n_in) matrix W with W @ v = the crop [start, start + size) of a zero canvas
    holding v (length n_in) at `offset`, resized to n_out by `F.interpolate(mode="bicubic",
    align_corners=True)` along one axis: source index o (size - 1) / (n_out - 1), 4 taps clamped
    to the crop's own edges (as interpolate reads the crop tensor), canvas zeros outside v."""
    b, device = start.shape[0], start.device
    scale = (size - 1).double() / (n_out - 1) if n_out > 1 else torch.zeros(b, dtype=torch.float64, device=device)
    src = scale[:, None] * torch.arange(n_out, device=device, dtype=torch.float64)  # (B, n_out)
    base = src.floor()
    weights = _cubic_weights(src - base)  # (B, n_out, 4)
    taps = base.long()[..., None] + torch.arange(-1, 3, device=device)  # (B, n_out, 4) indices in the crop
    taps = torch.minimum(taps.clamp_min(0), (size - 1)[:, None, None])
    rows = start[:, None, None] + taps - offset  # (B, n_out, 4) indices in v
    inside = (rows >= 0) & (rows < n_in)  # taps on the zero canvas contribute nothing
    w = torch.zeros(b, n_out, n_in, dtype=torch.float64, device=device)
    w.scatter_add_(2, rows.clamp(0, n_in - 1), weights * inside)
    return w.to(dtype)


def resized_crop(x: torch.Tensor, params: CropParams, virtual_crop_scale: tuple[float, float]) -> torch.Tensor:
    """BYOL-A's `RandomResizeCrop.forward` for given crops, batched. x: (B, F, T) -> (B, F, T).

    Each input sits at ((F' - F) // 2, (T' - T) // 2) on a zero canvas (F', T'); its crop is
    resized back to (F, T) bicubically with align_corners=True. Bicubic resizing is separable,
    so the whole batch is two batched matrix products: W_f (B, F, F) @ x @ W_t^T (B, T, T).
    """
    b, f, t = x.shape
    canvas_f, canvas_t = canvas_size(f, t, virtual_crop_scale)
    w_f = _resize_matrix(params.top, params.height, f, f, (canvas_f - f) // 2, x.dtype)  # (B, F, F)
    w_t = _resize_matrix(params.left, params.width, t, t, (canvas_t - t) // 2, x.dtype)  # (B, T, T)
    return w_f @ x @ w_t.transpose(1, 2)


def random_resize_crop(x: torch.Tensor, virtual_crop_scale: tuple[float, float], freq_scale: tuple[float, float],
                       time_scale: tuple[float, float], generator: torch.Generator | None = None,
                       frequency: bool = True) -> torch.Tensor:
    """BYOL-A random resize crop, one independent crop per clip. x: (B, F, T) -> (B, F, T)."""
    b, f, t = x.shape
    params = random_crop_params(b, f, t, virtual_crop_scale, freq_scale, time_scale, x.device, generator, frequency)
    return resized_crop(x, params, virtual_crop_scale)


# ----------------------------------------------------------------------------- state + wrappers
class ClipMemory(nn.Module):
    """FIFO memory of the last M log-mels (M, F, T) and their descriptors (M, F).

    Buffers: `clips`, `desc`, `ptr` (next slot), `count` (valid entries, <= M).
    """

    def __init__(self, size: int, n_mels: int, n_frames: int):
        super().__init__()
        if size <= 0:
            raise ValueError(f"memory size must be positive, got {size}")
        self.register_buffer("clips", torch.zeros(size, n_mels, n_frames))
        self.register_buffer("desc", torch.zeros(size, n_mels))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.count)

    @torch.no_grad()
    def push(self, x: torch.Tensor) -> None:
        """Append a batch (B, F, T), overwriting the oldest entries."""
        m = self.clips.shape[0]
        x = x.detach()[-m:].to(self.clips.dtype)
        slots = (self.ptr + torch.arange(x.shape[0], device=self.clips.device)) % m  # (B,)
        self.clips[slots] = x
        self.desc[slots] = clip_descriptor(x)
        self.ptr.copy_((self.ptr + x.shape[0]) % m)
        self.count.copy_(torch.clamp(self.count + x.shape[0], max=m))


class Mixup(nn.Module):
    """BYOL-A mixup with a uniformly drawn earlier clip from the memory."""

    def __init__(self, cfg: MixupConfig, n_mels: int, n_frames: int):
        super().__init__()
        self.cfg = cfg
        self.memory = ClipMemory(cfg.memory, n_mels, n_frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) -> (B, F, T); identity while the memory is empty."""
        n = len(self.memory)
        if n == 0:
            return x
        idx = torch.randint(0, n, (x.shape[0],), device=x.device)  # (B,)
        lam = self.cfg.alpha * torch.rand(x.shape[0], device=x.device)  # (B,)
        return log_mixup_exp(x, self.memory.clips[idx].to(x.dtype), lam)


class RandomResizeCrop(nn.Module):
    def __init__(self, cfg: RandomResizeCropConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return random_resize_crop(x, self.cfg.virtual_crop_scale, self.cfg.freq_scale, self.cfg.time_scale,
                                  frequency=self.cfg.frequency)


class KMix(nn.Module):
    """SLICER's k-mix: mix with a memory clip far from the clip's closest k-means centroid.

    Until the memory holds r clips, the partner is drawn uniformly from it (released code).
    """

    def __init__(self, cfg: KMixConfig, n_mels: int, n_frames: int):
        super().__init__()
        self.cfg = cfg
        self.memory = ClipMemory(cfg.memory, n_mels, n_frames)
        self.register_buffer("centroids", torch.zeros(cfg.k, n_mels))  # (k, F), set by set_centroids

    def set_centroids(self, centroids: torch.Tensor) -> None:
        """centroids: (k, F) from pretrain.stats (normalised here)."""
        if centroids.shape != self.centroids.shape:
            raise ValueError(f"expected centroids of shape {tuple(self.centroids.shape)}, got {tuple(centroids.shape)}")
        self.centroids.copy_(F.normalize(centroids.to(self.centroids), dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.memory)
        if n == 0:
            return x
        if n < self.cfg.r:
            idx = torch.randint(0, n, (x.shape[0],), device=x.device)  # (B,)
        else:
            idx = kmix_partners(clip_descriptor(x), self.centroids, self.memory.desc[:n], self.cfg.r)
        lam = self.cfg.alpha * torch.rand(x.shape[0], device=x.device)  # (B,)
        return log_mixup_exp(x, self.memory.clips[idx].to(x.dtype), lam)


class AugmentPipeline(nn.Module):
    """mixup -> random resize crop -> k-mix, each optional. Views: (B, F, T) -> (B, F, T)."""

    def __init__(self, cfg: AugmentConfig, n_mels: int, n_frames: int):
        super().__init__()
        self.cfg = cfg
        self.mixup = Mixup(cfg.mixup, n_mels, n_frames) if cfg.mixup.enabled else None
        self.rrc = RandomResizeCrop(cfg.rrc) if cfg.rrc.enabled else None
        self.kmix = KMix(cfg.kmix, n_mels, n_frames) if cfg.kmix.enabled else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One augmented view of x (B, F, T). Does not change the memories."""
        for aug in (self.mixup, self.rrc, self.kmix):
            if aug is not None:
                x = aug(x)
        return x

    @torch.no_grad()
    def remember(self, x: torch.Tensor) -> None:
        """Push the batch's un-augmented log-mels (B, F, T) into the memories."""
        for aug in (self.mixup, self.kmix):
            if aug is not None:
                aug.memory.push(x)
