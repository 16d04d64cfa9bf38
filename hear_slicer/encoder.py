"""AudioNTT2020, the convolutional encoder shared by SLICER, BYOL-A and DeLoRes.

Legend: B batch, F mel bins, T input frames, T' = T // 8 output frames, C conv channels,
D feature dimension.

Three blocks of Conv3x3(C) + BatchNorm + ReLU + MaxPool(2) reduce (F, T) by 8 in both
axes; each output frame's (C x F/8) values then go through Linear(C*F/8 -> D), ReLU,
Dropout, Linear(D -> D), ReLU. One output frame covers 8 input frames (80 ms at a 10 ms
hop). The clip embedding is max + mean of the frames over time (BYOL-A).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.utils.fusion
from torch import nn

__all__ = ["EncoderConfig", "AudioNTT2020", "FusedAudioNTT2020", "fuse_for_inference"]

#: Input frames per output frame: three MaxPool(2) layers.
TIME_REDUCTION = 8


@dataclass
class EncoderConfig:
    n_mels: int = 64
    channels: int = 64
    d: int = 2048
    dropout: float = 0.3

    def __post_init__(self) -> None:
        if self.n_mels % TIME_REDUCTION:
            raise ValueError(f"n_mels must be a multiple of {TIME_REDUCTION}, got {self.n_mels}")
        if self.channels <= 0 or self.d <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"invalid encoder config {self}")


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
    )


class AudioNTT2020(nn.Module):
    """Log-mel (B, F, T) -> per-frame features (B, T // 8, D)."""

    def __init__(self, cfg: EncoderConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or EncoderConfig()
        self.blocks = nn.ModuleList(
            [_conv_block(1, cfg.channels), _conv_block(cfg.channels, cfg.channels), _conv_block(cfg.channels, cfg.channels)]
        )
        # Channels-last weights make oneDNN convolve, normalise and pool in the channels-last
        # layout, which on CPU trains about 1.5x faster than NCHW (benchmarks/pretrain.py); the
        # values are the same up to float rounding, and load_state_dict keeps the layout.
        self.blocks.to(memory_format=torch.channels_last)
        self.fc = nn.Sequential(
            nn.Linear(cfg.channels * (cfg.n_mels // TIME_REDUCTION), cfg.d),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.d, cfg.d),
            nn.ReLU(),
        )

    def forward_blocks(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, F, T) -> (frames (B, T', D), [b1 (B, C, F/2, T/2), b2 (.., F/4, T/4), b3 (.., F/8, T/8)])."""
        if x.dim() != 3 or x.shape[1] != self.cfg.n_mels:
            raise ValueError(f"expected log-mel of shape (B, {self.cfg.n_mels}, T), got {tuple(x.shape)}")
        if x.shape[2] < TIME_REDUCTION:
            raise ValueError(f"need at least {TIME_REDUCTION} frames, got {x.shape[2]}")
        h = x.unsqueeze(1)  # (B, 1, F, T); the channels-last convolution weights make every activation channels-last
        outs = []
        for conv, bn, relu, pool in self.blocks:
            # pool before ReLU: both are monotonic, so relu(pool(h)) == pool(relu(h)) and the
            # gradient reaches the same input (the window's max) with ReLU on a quarter of the values
            h = relu(pool(bn(conv(h))))
            outs.append(h)
        b, c, f, t = h.shape
        frames = h.permute(0, 3, 1, 2).reshape(b, t, c * f)  # (B, T', C*F/8)
        return self.fc(frames), outs  # (B, T', D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, F, T) -> frames (B, T // 8, D)."""
        return self.forward_blocks(x)[0]

    @staticmethod
    def pool(frames: torch.Tensor) -> torch.Tensor:
        """Clip embedding from frames: (B, T', D) -> (B, D), max + mean over time."""
        return frames.amax(dim=1) + frames.mean(dim=1)

    def clip_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, F, T) -> (B, D)."""
        return self.pool(self(x))


class FusedAudioNTT2020(nn.Module):
    """An inference-only copy of an eval-mode AudioNTT2020 that computes the same function faster on CPU.

    Each block's BatchNorm is folded into its convolution (eval statistics), the max-pool
    runs before the ReLU (they commute: both are monotonic), and activations use the
    channels-last layout, which oneDNN convolves several times faster than NCHW here.
    Dropout is the identity in eval mode and is dropped. Build it with `fuse_for_inference`.
    """

    def __init__(self, encoder: AudioNTT2020):
        super().__init__()
        if encoder.training:
            raise ValueError("fuse_for_inference needs an encoder in eval mode (BatchNorm statistics are folded in)")
        self.cfg = encoder.cfg
        self.convs = nn.ModuleList(
            torch.nn.utils.fusion.fuse_conv_bn_eval(block[0], block[1]).to(memory_format=torch.channels_last)
            for block in encoder.blocks
        )
        fc = encoder.fc
        self.fc = nn.Sequential(fc[0], nn.ReLU(), fc[3], nn.ReLU())
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, F, T) -> frames (B, T // 8, D), equal to AudioNTT2020.forward in eval mode."""
        h = x.unsqueeze(1).contiguous(memory_format=torch.channels_last)  # (B, 1, F, T)
        for conv in self.convs:
            h = torch.relu_(nn.functional.max_pool2d(conv(h), 2))
        b, c, f, t = h.shape
        return self.fc(h.permute(0, 3, 1, 2).reshape(b, t, c * f))  # (B, T', D)


def fuse_for_inference(encoder: AudioNTT2020) -> FusedAudioNTT2020:
    """A fast inference copy of `encoder` (eval mode); see FusedAudioNTT2020."""
    return FusedAudioNTT2020(encoder)
