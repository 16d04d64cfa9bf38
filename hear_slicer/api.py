"""The HEAR 2021 API over a SLICER-family encoder.

Legend: n sounds, N samples, F mel bins, T STFT frames, T' encoder frames (80 ms apart),
K timestamps, D embedding size.

- `load_model(model_file_path="", *, random_init=False, **options)` -> `SlicerHearModel`
  (`random_init=True`: the same architecture and input normalisation at fixed-seed random weights,
  the reference that learned nothing)
- `get_scene_embeddings(audio (n, N), model)` -> (n, D)
- `get_timestamp_embeddings(audio (n, N), model)` -> ((n, K, D), timestamps (n, K) in ms)

Each clip is encoded once; the encoder's frames sit every 80 ms, at the centre of the 8
STFT frames they pool (frame i at 80 i + 35 ms). Timestamp embeddings are sampled from
those frames by linear interpolation at t_k = k * hop (ms), k = 0 .. floor(length / hop),
each t_k computed from its index. Long clips are encoded in chunks aligned to encoder
frames, with enough context on both sides that every kept frame equals the one an
unchunked pass computes; memory then stays bounded for HEAR's 20-minute clips.
The model is always in eval mode: BatchNorm uses its stored statistics, so an embedding
never depends on the other clips in the batch.
"""
from __future__ import annotations

import itertools
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import Checkpoint, build_encoder, build_frontend, load_checkpoint
from .encoder import TIME_REDUCTION, AudioNTT2020, EncoderConfig, fuse_for_inference
from .frontend import FrontendConfig, LogMelFrontend

__all__ = ["SlicerHearModel", "load_model", "get_scene_embeddings", "get_timestamp_embeddings", "check_audio",
           "check_finite", "random_encoder", "DEFAULT_CHECKPOINT", "RANDOM_INIT_SEED"]

#: The default checkpoint shipped as package data (see README, "Default checkpoint").
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "default.pt"
#: Seed of every random-init encoder: `load_model(random_init=True)`, and the fallback when the default
#: checkpoint is missing.
RANDOM_INIT_SEED = 0


class SlicerHearModel(nn.Module):
    """Frontend + encoder with the attributes the HEAR API requires.

    Options (all keyword arguments of `load_model`), each checked against its range:
      timestamp_hop_ms: spacing of timestamp embeddings, ms (default 40; HEAR asks <= 50), in [1, 10000].
      chunk_seconds: length of the chunks long clips are encoded in (default 30 s), in [0.08, 3600].
      max_batch_seconds: audio seconds encoded per forward pass across the batch (default 120), in [0.08, 1e5].
      context_frames: encoder frames of context on each side of a chunk (default 8), an int in [4, 1000].
    """

    OPTIONS = ("timestamp_hop_ms", "chunk_seconds", "max_batch_seconds", "context_frames")
    #: (low, high) allowed for each option, both ends included.
    RANGES = {"timestamp_hop_ms": (1.0, 10000.0), "chunk_seconds": (0.08, 3600.0),
              "max_batch_seconds": (0.08, 1e5), "context_frames": (4, 1000)}

    def __init__(
        self,
        frontend: LogMelFrontend,
        encoder: AudioNTT2020,
        *,
        timestamp_hop_ms: float = 40.0,
        chunk_seconds: float = 30.0,
        max_batch_seconds: float = 120.0,
        context_frames: int = 8,
        is_random_init: bool = False,
        checkpoint_path: str = "",
        provenance: dict[str, Any] | None = None,
    ):
        super().__init__()
        for name, value in (("timestamp_hop_ms", timestamp_hop_ms), ("chunk_seconds", chunk_seconds),
                            ("max_batch_seconds", max_batch_seconds), ("context_frames", context_frames)):
            low, high = self.RANGES[name]
            kind = "an integer" if name == "context_frames" else "a number"
            ok_type = isinstance(value, numbers.Integral if name == "context_frames" else numbers.Real)
            if isinstance(value, bool) or not ok_type or not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"load_model option {name} must be {kind} in [{low:g}, {high:g}], got {value!r}")
        self.frontend = frontend
        self.encoder = encoder.eval()
        # Same function as `encoder`, BatchNorm folded in and channels-last: used for embedding.
        self.fast_encoder = fuse_for_inference(self.encoder)
        self.sample_rate = int(frontend.cfg.sample_rate)
        self.scene_embedding_size = int(encoder.cfg.d)
        self.timestamp_embedding_size = int(encoder.cfg.d)
        self.timestamp_hop_ms = float(timestamp_hop_ms)
        self.chunk_seconds = float(chunk_seconds)
        self.max_batch_seconds = float(max_batch_seconds)
        self.context_frames = int(context_frames)
        #: True when the weights are a fixed-seed random initialisation, not a trained model.
        self.is_random_init = bool(is_random_init)
        self.checkpoint_path = checkpoint_path
        self.provenance = dict(provenance or {})

    def train(self, mode: bool = True) -> "SlicerHearModel":
        # Embedding is inference only: keep BatchNorm on stored statistics and dropout off.
        return super().train(False)

    # -- geometry -------------------------------------------------------------------
    @property
    def samples_per_frame(self) -> int:
        """Samples between consecutive encoder frames (1280 = 80 ms at 16 kHz)."""
        return self.frontend.cfg.hop_length * TIME_REDUCTION

    @property
    def min_samples(self) -> int:
        """Shortest input the encoder takes (one encoder frame); shorter audio is zero-padded."""
        return max(self.samples_per_frame, self.frontend.cfg.n_fft)

    def frame_times_ms(self, num_frames: int) -> torch.Tensor:
        """Centre time of each encoder frame, ms: (T',)."""
        hop_ms = 1000.0 * self.frontend.cfg.hop_length / self.sample_rate
        index = torch.arange(num_frames, dtype=torch.float64)
        return (index * TIME_REDUCTION + (TIME_REDUCTION - 1) / 2) * hop_ms

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:
        """Timestamps of `get_timestamp_embeddings`, ms: (K,), t_k = k * hop <= clip length."""
        length_ms = 1000.0 * num_samples / self.sample_rate
        count = int(math.floor(length_ms / self.timestamp_hop_ms + 1e-9)) + 1
        return torch.arange(count, dtype=torch.float64) * self.timestamp_hop_ms

    # -- encoding ---------------------------------------------------------------------
    def _encode(self, audio: torch.Tensor) -> torch.Tensor:
        """One pass over whole clips: (n, N) -> frames (n, T', D)."""
        return self.fast_encoder(self.frontend(audio))

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """Encoder frames of validated audio: (n, N) -> (n, T', D), chunked for long clips."""
        n, num_samples = audio.shape
        if num_samples < self.min_samples:
            audio = nn.functional.pad(audio, (0, self.min_samples - num_samples))
            num_samples = self.min_samples
        spf = self.samples_per_frame
        total = self.frontend.cfg.num_frames(num_samples) // TIME_REDUCTION  # T'
        chunk = max(1, int(self.chunk_seconds * self.sample_rate) // spf)  # frames per chunk
        ctx = self.context_frames
        out = audio.new_empty((n, total, self.timestamp_embedding_size))
        # Clips per forward pass, so that each pass sees at most max_batch_seconds of audio.
        span = min(num_samples, (chunk + 2 * ctx) * spf)
        per_pass = max(1, int(self.max_batch_seconds * self.sample_rate) // span)
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            first = max(0, start - ctx)  # first encoder frame computed in this chunk
            s0 = first * spf
            # Up to the end of the clip for the last chunk (same edge padding as one pass).
            s1 = num_samples if stop + ctx >= total else (stop + ctx) * spf + self.frontend.cfg.n_fft
            for b0 in range(0, n, per_pass):
                piece = self._encode(audio[b0:b0 + per_pass, s0:s1])  # (n', T'_chunk, D)
                out[b0:b0 + per_pass, start:stop] = piece[:, start - first:stop - first]
        return out

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Scene embeddings of validated audio: (n, N) -> (n, D)."""
        return AudioNTT2020.pool(self.frames(audio))

    def timestamp_embeddings(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Validated audio (n, N) -> ((n, K, D), (n, K) ms)."""
        n, num_samples = audio.shape
        frames = self.frames(audio)  # (n, T', D)
        times = self.timestamps_ms(num_samples)  # (K,)
        centres = self.frame_times_ms(frames.shape[1])
        step = float(centres[1] - centres[0]) if len(centres) > 1 else 1.0
        pos = ((times - centres[0]) / step).clamp(0, frames.shape[1] - 1)  # fractional frame index
        i0 = pos.floor().long()
        i1 = (i0 + 1).clamp(max=frames.shape[1] - 1)
        w = (pos - i0).to(frames.dtype).to(frames.device)[None, :, None]  # (1, K, 1)
        emb = frames[:, i0.to(frames.device)] * (1 - w) + frames[:, i1.to(frames.device)] * w  # (n, K, D)
        ts = times.to(torch.float32).to(frames.device).expand(n, -1).contiguous()
        return emb, ts


def _default_model_parts() -> tuple[Checkpoint | None, str]:
    if DEFAULT_CHECKPOINT.exists():
        return load_checkpoint(DEFAULT_CHECKPOINT), str(DEFAULT_CHECKPOINT)
    return None, ""


def random_encoder(cfg: EncoderConfig, seed: int = RANDOM_INIT_SEED) -> AudioNTT2020:
    """The encoder of architecture `cfg` at the random initialisation of `seed` (default
    `RANDOM_INIT_SEED`), in eval mode; the caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AudioNTT2020(cfg).eval()


def load_model(model_file_path: str = "", *, random_init: bool = False, random_init_seed: int = RANDOM_INIT_SEED,
               **options: Any) -> SlicerHearModel:
    """Load a SLICER-family encoder for the HEAR API.

    model_file_path: a checkpoint written by `python -m pretrain` (or
      `hear_slicer.checkpoint.save_checkpoint`). Empty: the default checkpoint shipped
      with the package (`DEFAULT_CHECKPOINT`: SLICER trained by
      pretrain/configs/default_model.yaml, 6,000 steps on 15.7 h of recorded and synthesised
      audio, see the README); if that file is missing, a random-init
      encoder (seed 0, un-normalised log-mels) whose `is_random_init` is True.
    random_init: True gives the reference that learned nothing: the checkpoint's (default:
      the default model's) frontend, architecture and input normalisation, with the encoder
      at its fixed-seed random initialisation (`RANDOM_INIT_SEED`) instead of its trained
      weights; `is_random_init` is True and `provenance` names the checkpoint the
      normalisation came from. Manifests ask for it with `options: {random_init: true}`.
    random_init_seed: the seed of that initialisation (an integer >= 0; default
      `RANDOM_INIT_SEED`), so that a study can draw several random-init references
      (`options: {random_init: true, random_init_seed: 1}`); only with random_init=True.
    options: see `SlicerHearModel` (timestamp_hop_ms, chunk_seconds, max_batch_seconds,
      context_frames).
    """
    unknown = sorted(set(options) - set(SlicerHearModel.OPTIONS))
    if unknown:
        raise TypeError(f"unknown load_model option(s) {unknown}; valid options: "
                        f"{['random_init', 'random_init_seed', *SlicerHearModel.OPTIONS]}")
    if not isinstance(random_init, bool):
        raise TypeError(f"load_model option random_init must be True or False, got {random_init!r}")
    if isinstance(random_init_seed, bool) or not isinstance(random_init_seed, int) or not 0 <= random_init_seed < 2 ** 63:
        raise TypeError(f"load_model option random_init_seed must be an integer in [0, 2**63), got {random_init_seed!r}")
    if random_init_seed != RANDOM_INIT_SEED and not random_init:
        raise TypeError(f"load_model option random_init_seed={random_init_seed} is only used with random_init=True")
    if not isinstance(model_file_path, (str, Path)):
        raise TypeError(f"model_file_path must be a path (str), got {type(model_file_path).__name__} "
                        f"{model_file_path!r}")
    if model_file_path:
        ckpt, path = load_checkpoint(model_file_path), str(model_file_path)
    else:
        ckpt, path = _default_model_parts()
    if ckpt is None and random_init:
        raise FileNotFoundError(f"load_model(random_init=True) takes the default model's input normalisation "
                                f"from {DEFAULT_CHECKPOINT}, which is missing; reinstall hear-slicer, or pass the "
                                "checkpoint whose normalisation to use: load_model(path, random_init=True)")
    if ckpt is None:
        return SlicerHearModel(LogMelFrontend(FrontendConfig()), random_encoder(EncoderConfig()), is_random_init=True,
                               provenance={"objective": "none (random init)", "seed": RANDOM_INIT_SEED}, **options)
    if random_init:
        return SlicerHearModel(build_frontend(ckpt), random_encoder(ckpt.encoder, random_init_seed), is_random_init=True,
                               provenance={"objective": "none (random init)", "seed": random_init_seed,
                                           "norm_stats_from": path}, **options)
    return SlicerHearModel(build_frontend(ckpt), build_encoder(ckpt), checkpoint_path=path,
                           provenance=ckpt.provenance, **options)


def check_audio(audio: Any, model: nn.Module) -> torch.Tensor:
    """Validate HEAR input and return float32 (n, N) on the model's device (that of its
    first parameter or buffer); TypeError when `model` is not a model (e.g. None). Shared with
    the reference models of `eval_suites.references`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"argument 'model' must be the model that load_model() returns (a torch.nn.Module), "
                        f"got {type(model).__name__}")
    device = next(itertools.chain(model.parameters(), model.buffers())).device
    if isinstance(audio, np.ndarray):
        if not np.issubdtype(audio.dtype, np.floating):
            raise TypeError(f"expected floating-point audio in [-1, 1], got a numpy array of dtype {audio.dtype}")
        audio = torch.from_numpy(np.ascontiguousarray(audio)).to(device)
    if not isinstance(audio, torch.Tensor):
        raise TypeError(f"expected audio as a torch.Tensor or numpy array of shape (n_sounds, n_samples), got {type(audio).__name__}")
    if audio.layout != torch.strided:
        raise TypeError(f"expected a dense audio tensor, got layout {audio.layout}; convert it first (audio.to_dense())")
    if not audio.is_floating_point():
        raise TypeError(f"expected floating-point audio in [-1, 1], got dtype {audio.dtype}; convert integer PCM first (e.g. x / 32768)")
    if audio.dim() != 2:
        raise ValueError(f"expected audio of shape (n_sounds, n_samples), got {tuple(audio.shape)}")
    if audio.shape[1] == 0:
        raise ValueError("expected at least one sample per sound, got n_samples = 0")
    if audio.device != device:
        raise ValueError(f"audio is on {audio.device} but the model is on {device}; move one of them (e.g. audio.to({str(device)!r}))")
    audio = audio.to(torch.float32)
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or Inf values")
    return audio


def check_finite(embeddings: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """`embeddings` (n, ..., D) if all finite; else a ValueError naming the sounds and their peaks.

    Finite audio can still overflow the log-mel (power of samples around 1e16 and above is
    beyond float32), and such sounds would give NaN embeddings: they are an error, not a result.
    """
    bad = (~torch.isfinite(embeddings.flatten(1))).any(dim=1).nonzero().flatten().tolist()
    if bad:
        peaks = [f"{audio[i].abs().max().item():.3g}" for i in bad[:5]]
        raise ValueError(f"sound(s) {bad[:5]}{' ...' if len(bad) > 5 else ''} give non-finite embeddings: their "
                         f"peak |x| ({', '.join(peaks)}) is far outside [-1, 1]; pass audio scaled to [-1, 1]")
    return embeddings


@torch.inference_mode()
def get_scene_embeddings(audio: Any, model: SlicerHearModel) -> torch.Tensor:
    """audio (n_sounds, n_samples) float in [-1, 1] at model.sample_rate -> (n_sounds, D) float32.

    Raises ValueError for audio whose embeddings would not be finite (samples far out of range),
    TypeError for a `model` that is not one `load_model` returned (e.g. None)."""
    audio = check_audio(audio, model)
    if audio.shape[0] == 0:
        return audio.new_zeros((0, model.scene_embedding_size))
    return check_finite(model(audio), audio)


@torch.inference_mode()
def get_timestamp_embeddings(audio: Any, model: SlicerHearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """audio (n_sounds, n_samples) -> (embeddings (n_sounds, K, D), timestamps (n_sounds, K) in ms)."""
    audio = check_audio(audio, model)
    if audio.shape[0] == 0:
        k = len(model.timestamps_ms(audio.shape[1]))
        return audio.new_zeros((0, k, model.timestamp_embedding_size)), audio.new_zeros((0, k))
    emb, ts = model.timestamp_embeddings(audio)
    return check_finite(emb, audio), ts
