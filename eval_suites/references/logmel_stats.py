"""Plain log-mel statistics as a HEAR 2021 model: the "no learning at all" reference.

The input features are exactly those of the SLICER encoder (hear_slicer.frontend: 16 kHz,
1024-point STFT, 10 ms hop, 64 mel bins over 60-7800 Hz, log). The embeddings are:

- scene: per-band mean and standard deviation of the log-mel over the clip, (n, 128);
- timestamp: the same statistics over a window of ``window_ms`` (default 160 ms) centred
  on each timestamp, timestamps every ``timestamp_hop_ms`` (default 40 ms, as hear_slicer).

Nothing is trained and there is no checkpoint (``model_file_path`` must be empty). Use it
in a manifest like any HEAR module::

    models:
      - {name: logmel_stats, module: eval_suites.references.logmel_stats, checkpoint: null}

and check it with ``hear-validator eval_suites.references.logmel_stats``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# hear_slicer's HEAR functions validate the input (check_audio) and call model(audio) and
# model.timestamp_embeddings(audio): LogMelStats provides both, so they serve it unchanged.
from hear_slicer.api import get_scene_embeddings, get_timestamp_embeddings
from hear_slicer.frontend import FrontendConfig, LogMelFrontend

__all__ = ["LogMelStats", "load_model", "get_scene_embeddings", "get_timestamp_embeddings"]


class LogMelStats(nn.Module):
    """Per-band log-mel mean and std, over the clip or around each timestamp."""

    sample_rate = 16000

    def __init__(self, timestamp_hop_ms: float = 40.0, window_ms: float = 160.0):
        super().__init__()
        if not timestamp_hop_ms > 0 or not window_ms > 0:
            raise ValueError(f"timestamp_hop_ms and window_ms must be > 0, got {timestamp_hop_ms} and {window_ms}")
        self.frontend = LogMelFrontend(FrontendConfig(sample_rate=self.sample_rate))
        self.timestamp_hop_ms = float(timestamp_hop_ms)
        self.window_ms = float(window_ms)
        n_mels = self.frontend.cfg.n_mels
        self.scene_embedding_size = 2 * n_mels
        self.timestamp_embedding_size = 2 * n_mels

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(n, N) -> (n, F, T), zero-padding clips shorter than one STFT window."""
        short = self.frontend.cfg.n_fft - audio.shape[1]
        if short > 0:
            audio = F.pad(audio, (0, short))
        return self.frontend.log_mel(audio)

    @staticmethod
    def _stats(mean: torch.Tensor, mean_sq: torch.Tensor) -> torch.Tensor:
        std = (mean_sq - mean.square()).clamp_min(0).sqrt()
        return torch.cat([mean, std], dim=-1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Scene embeddings: (n, N) -> (n, 2F)."""
        x = self.log_mel(audio)  # (n, F, T)
        return self._stats(x.mean(-1), x.square().mean(-1))

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:
        length_ms = 1000.0 * num_samples / self.sample_rate
        count = int(math.floor(length_ms / self.timestamp_hop_ms + 1e-9)) + 1
        return torch.arange(count, dtype=torch.float64) * self.timestamp_hop_ms

    def timestamp_embeddings(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, N) -> ((n, K, 2F), (n, K) ms)."""
        n, num_samples = audio.shape
        x = self.log_mel(audio)  # (n, F, T); frame j is centred at j * hop (centred STFT)
        hop_ms = 1000.0 * self.frontend.cfg.hop_length / self.sample_rate
        half = max(0, int(round(self.window_ms / hop_ms / 2)))  # frames each side
        k = 2 * half + 1
        # Windowed means of x and x^2 at every frame, windows clipped at the clip's edges.
        mean = F.avg_pool1d(x, k, stride=1, padding=half, count_include_pad=False)  # (n, F, T)
        mean_sq = F.avg_pool1d(x.square(), k, stride=1, padding=half, count_include_pad=False)
        times = self.timestamps_ms(num_samples)  # (K,)
        idx = (times / hop_ms).round().long().clamp(max=x.shape[-1] - 1).to(x.device)  # (K,)
        emb = self._stats(mean[..., idx].transpose(1, 2), mean_sq[..., idx].transpose(1, 2))  # (n, K, 2F)
        ts = times.to(torch.float32).to(x.device).expand(n, -1).contiguous()
        return emb.contiguous(), ts


def load_model(model_file_path: str = "", **options: Any) -> LogMelStats:
    """The log-mel statistics model; options: timestamp_hop_ms, window_ms."""
    if model_file_path:
        raise ValueError(f"logmel_stats has no weights; got model_file_path={model_file_path!r} (pass '')")
    return LogMelStats(**options).eval()
