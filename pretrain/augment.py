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
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .checks import Check, above, at_least, between, ordered_pair

__all__ = [
    "MixupConfig", "RandomResizeCropConfig", "KMixConfig", "AugmentConfig",
    "log_mixup_exp", "random_resize_crop", "kmix_partners", "clip_descriptor",
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
    enabled: bool = True
    canvas: tuple[float, float] = (1.0, 1.5)  # virtual canvas size / input size, BYOL-A
    scale_f: tuple[float, float] = (0.6, 1.5)  # crop height / input height, BYOL-A
    scale_t: tuple[float, float] = (0.6, 1.5)  # crop width / input width, BYOL-A
    frequency: bool = True  # False: crop along time only (no stretch or shift of the mel axis; ours, an ablation)
    CHECKS: ClassVar[dict[str, Check]] = {"canvas": ordered_pair(at_least(1.0)), "scale_f": ordered_pair(above(0.0)),
                                          "scale_t": ordered_pair(above(0.0))}


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


def random_resize_crop(x: torch.Tensor, canvas: tuple[float, float], scale_f: tuple[float, float],
                       scale_t: tuple[float, float], generator: torch.Generator | None = None,
                       frequency: bool = True) -> torch.Tensor:
    """BYOL-A random resize crop, batched. x: (B, F, T) -> (B, F, T).

    Per clip: the input sits centred on a zero virtual canvas v times its size (v ~ U(canvas));
    a crop of (s_f F, s_t T) (s ~ U(scale), capped at the canvas) is taken at a uniform position
    inside the canvas and resized back to (F, T) bicubically. Implemented as one affine
    `grid_sample` (align_corners=False), so a full-size unshifted crop returns x exactly.
    With `frequency=False` the crop always spans the F mel bins unmoved (time-only crop), so
    the augmentation cannot change pitch; `canvas` and `scale_t` still act on time.
    """
    b, f, t = x.shape

    def uniform(lo_hi: tuple[float, float]) -> torch.Tensor:
        lo, hi = lo_hi
        return lo + (hi - lo) * torch.rand(b, device=x.device, generator=generator)  # (B,)

    v = uniform(canvas)  # (B,) canvas scale
    canvas_f, canvas_t = f * v, t * v  # (B,) canvas size in input pixels
    crop_f = torch.minimum(f * uniform(scale_f), canvas_f)  # (B,)
    crop_t = torch.minimum(t * uniform(scale_t), canvas_t)
    # top-left of the crop in input pixel coordinates (the input occupies [0, f) x [0, t))
    y0 = -(canvas_f - f) / 2 + (canvas_f - crop_f) * torch.rand(b, device=x.device, generator=generator)
    x0 = -(canvas_t - t) / 2 + (canvas_t - crop_t) * torch.rand(b, device=x.device, generator=generator)
    if not frequency:
        crop_f, y0 = torch.full_like(crop_f, f), torch.zeros_like(y0)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)  # output coords -> input coords
    theta[:, 0, 0] = crop_t / t
    theta[:, 0, 2] = (2 * x0 + crop_t) / t - 1
    theta[:, 1, 1] = crop_f / f
    theta[:, 1, 2] = (2 * y0 + crop_f) / f - 1
    grid = F.affine_grid(theta, [b, 1, f, t], align_corners=False)  # (B, F, T, 2)
    out = F.grid_sample(x.unsqueeze(1), grid, mode="bicubic", padding_mode="zeros", align_corners=False)
    return out.squeeze(1)


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
        return random_resize_crop(x, self.cfg.canvas, self.cfg.scale_f, self.cfg.scale_t,
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
