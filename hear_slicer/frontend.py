"""Log-mel frontend: waveform -> normalised log-mel spectrogram, on the input's device.

Legend: B batch, N samples, F mel bins, T STFT frames.

The recipe is the one every SLICER/BYOL-A checkpoint was trained with (RECIPE.md,
"Input features"): 16 kHz mono, a centred STFT with a 1024-sample Hann window and a
160-sample (10 ms) hop, power spectrum, 64 mel bins over 60-7800 Hz, `log(mel + eps)`.
The spectrogram is computed by nnAudio (a conv1d STFT), so it runs wherever the module
lives. Normalisation uses one scalar mean and std estimated on the pretraining data
("pre-normalisation"); they are buffers, saved in checkpoints, and never recomputed from
the batch being embedded.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from nnAudio.features import MelSpectrogram
from torch import nn

__all__ = ["FrontendConfig", "LogMelFrontend"]


@dataclass
class FrontendConfig:
    """Parameters of the log-mel computation (units: Hz and samples)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 60.0
    f_max: float = 7800.0
    eps: float = float(torch.finfo(torch.float32).eps)

    def __post_init__(self) -> None:
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"need 0 < win_length <= n_fft, got {self.win_length} and {self.n_fft}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={self.f_min}, "
                f"f_max={self.f_max}, sample_rate={self.sample_rate}"
            )
        if self.hop_length <= 0 or self.n_mels <= 0 or self.eps <= 0:
            raise ValueError("hop_length, n_mels and eps must be positive")

    def num_frames(self, num_samples: int) -> int:
        """STFT frames for `num_samples` samples (centred STFT)."""
        return 1 + num_samples // self.hop_length


class LogMelFrontend(nn.Module):
    """Waveform (B, N) -> normalised log-mel (B, F, T), T = 1 + N // hop_length."""

    def __init__(self, cfg: FrontendConfig | None = None, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.cfg = cfg = cfg or FrontendConfig()
        self.melspec = MelSpectrogram(
            sr=cfg.sample_rate,
            n_fft=cfg.n_fft,
            win_length=cfg.win_length,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_mels,
            fmin=cfg.f_min,
            fmax=cfg.f_max,
            window="hann",
            center=True,
            pad_mode="reflect",
            power=2.0,
            trainable_mel=False,
            trainable_STFT=False,
            verbose=False,
        )
        self.register_buffer("norm_mean", torch.tensor(float(mean)))
        self.register_buffer("norm_std", torch.tensor(float(std)))
        self.set_stats(mean, std)

    def set_stats(self, mean: float, std: float) -> None:
        """Set the pre-normalisation statistics (scalars of the un-normalised log-mel)."""
        if not (torch.isfinite(torch.tensor([mean, std])).all() and std > 0):
            raise ValueError(f"normalisation stats must be finite with std > 0, got mean={mean}, std={std}")
        self.norm_mean.fill_(float(mean))
        self.norm_std.fill_(float(std))

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Un-normalised log-mel. wave: (B, N) float, N >= n_fft // 2 + 1 -> (B, F, T)."""
        if wave.dim() != 2:
            raise ValueError(f"expected a waveform batch of shape (B, N), got {tuple(wave.shape)}")
        mel = self.melspec(wave)  # (B, F, T) mel power
        return torch.log(mel + self.cfg.eps)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel: (log_mel(wave) - mean) / std. (B, N) -> (B, F, T)."""
        return (self.log_mel(wave) - self.norm_mean) / self.norm_std
