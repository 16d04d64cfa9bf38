"""A second, minimal HEAR 2021 module for the eval_suites tests: log-mel statistics.

Legend: n sounds, N samples, F mel bins, T frames, D embedding size.

- scene embedding: mean and standard deviation over time of the log-mel (D = 2 F);
- timestamp embeddings: the log-mel frames themselves (D = F), one every 20 ms,
  frame k centred at t_k = 20 k ms (centred STFT), computed from k.

No learned weights: ``load_model`` accepts a path only to follow the API (ignored) and
the option ``n_mels``.
"""
from __future__ import annotations

import torch
from nnAudio.features import MelSpectrogram
from torch import nn

SAMPLE_RATE = 16000
HOP = 320  # 20 ms


class ToyLogMel(nn.Module):
    def __init__(self, n_mels: int = 32):
        super().__init__()
        self.sample_rate = SAMPLE_RATE
        self.scene_embedding_size = 2 * n_mels
        self.timestamp_embedding_size = n_mels
        self.mel = MelSpectrogram(sr=SAMPLE_RATE, n_fft=640, win_length=640, hop_length=HOP,
                                  n_mels=n_mels, fmin=60.0, fmax=7800.0, center=True,
                                  trainable_mel=False, trainable_STFT=False, verbose=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (n, N) -> log-mel (n, T, F), T = 1 + N // HOP."""
        if audio.ndim != 2:
            raise ValueError(f"expected audio of shape (n_sounds, n_samples), got {tuple(audio.shape)}")
        return torch.log(self.mel(audio) + 1e-6).transpose(1, 2)


def load_model(model_file_path: str = "", n_mels: int = 32) -> ToyLogMel:
    return ToyLogMel(n_mels=n_mels).eval()


def get_timestamp_embeddings(audio: torch.Tensor, model: ToyLogMel):
    """(n, N) -> embeddings (n, T, F), timestamps (n, T) in ms."""
    frames = model(audio)  # (n, T, F)
    k = torch.arange(frames.shape[1], device=audio.device, dtype=torch.float64)
    ts = (k * (1000.0 * HOP / SAMPLE_RATE)).to(torch.float32).expand(frames.shape[0], -1)
    return frames, ts.contiguous()


def get_scene_embeddings(audio: torch.Tensor, model: ToyLogMel) -> torch.Tensor:
    """(n, N) -> (n, 2F): mean and std of the log-mel over time."""
    frames = model(audio)  # (n, T, F)
    return torch.cat([frames.mean(1), frames.std(1)], dim=1)
