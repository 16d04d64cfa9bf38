"""Log-mel frontend against a slow NumPy reference; encoder shapes and pooling."""
import numpy as np
import pytest
import torch

from hear_slicer.encoder import AudioNTT2020, EncoderConfig
from hear_slicer.frontend import FrontendConfig, LogMelFrontend


def _hz_to_mel_slaney(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz_slaney(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def reference_log_mel(x: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Frame by frame: reflect-pad, Hann window, |rfft|^2, Slaney triangular filters (area-normalised)."""
    pad = cfg.n_fft // 2
    xp = np.pad(x.astype(np.float64), pad, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)  # periodic Hann
    n_frames = 1 + len(x) // cfg.hop_length
    spec = np.stack([np.abs(np.fft.rfft(xp[t * cfg.hop_length: t * cfg.hop_length + cfg.n_fft] * window)) ** 2
                     for t in range(n_frames)], axis=1)  # (n_fft/2+1, T)
    fft_hz = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    mel_pts = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(cfg.f_min), _hz_to_mel_slaney(cfg.f_max), cfg.n_mels + 2))
    fb = np.zeros((cfg.n_mels, len(fft_hz)))
    for m in range(cfg.n_mels):
        lo, centre, hi = mel_pts[m], mel_pts[m + 1], mel_pts[m + 2]
        rising = (fft_hz - lo) / (centre - lo)
        falling = (hi - fft_hz) / (hi - centre)
        fb[m] = np.maximum(0, np.minimum(rising, falling)) * 2.0 / (hi - lo)
    return np.log(fb @ spec + cfg.eps)


def test_log_mel_matches_reference_on_real_shapes():
    cfg = FrontendConfig()
    rng = np.random.default_rng(0)
    t = np.arange(15200) / cfg.sample_rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    ours = LogMelFrontend(cfg).log_mel(torch.tensor(x, dtype=torch.float32)[None])[0].numpy()
    ref = reference_log_mel(x, cfg)
    assert ours.shape == ref.shape == (64, 96)  # RECIPE: a 0.95 s crop gives 64 x 96
    # float32 STFT by convolution vs float64 FFT: compare where there is energy.
    assert np.abs(ours - ref)[ref > -10].max() < 1e-2


def test_sine_peaks_in_the_right_mel_bin():
    cfg = FrontendConfig()
    t = torch.arange(16000) / cfg.sample_rate
    lm = LogMelFrontend(cfg).log_mel(torch.sin(2 * np.pi * 1000 * t)[None])[0]  # (F, T)
    centres = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(60), _hz_to_mel_slaney(7800), 66))[1:-1]
    assert abs(centres[lm.mean(1).argmax()] - 1000) < 60


def test_normalisation_uses_stored_stats_not_the_batch():
    fe = LogMelFrontend(FrontendConfig(), mean=-5.0, std=4.0)
    x = torch.randn(2, 8000) * 0.1
    assert torch.allclose(fe(x), (fe.log_mel(x) + 5.0) / 4.0)
    assert torch.allclose(fe(x[:1]), fe(x)[:1], atol=1e-5)  # conv algorithms differ by batch size
    with pytest.raises(ValueError, match="std > 0"):
        fe.set_stats(0.0, 0.0)
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        fe(torch.zeros(8000))


def test_frontend_config_rejects_nonsense():
    with pytest.raises(ValueError, match="f_max"):
        FrontendConfig(f_max=9000.0)
    with pytest.raises(ValueError, match="win_length"):
        FrontendConfig(win_length=2048)


def test_encoder_shapes_blocks_and_pool():
    torch.manual_seed(0)
    enc = AudioNTT2020(EncoderConfig()).eval()
    assert 5.2e6 < sum(p.numel() for p in enc.parameters()) < 5.4e6  # RECIPE: about 5.3 M
    x = torch.randn(2, 64, 96)
    frames, blocks = enc.forward_blocks(x)
    assert frames.shape == (2, 12, 2048)
    assert [tuple(b.shape) for b in blocks] == [(2, 64, 32, 48), (2, 64, 16, 24), (2, 64, 8, 12)]
    clip = enc.clip_embedding(x)
    assert torch.allclose(clip, frames.max(1).values + frames.mean(1))
    with pytest.raises(ValueError, match=r"\(B, 64, T\)"):
        enc(torch.randn(2, 32, 96))
    with pytest.raises(ValueError, match="n_mels"):
        EncoderConfig(n_mels=60)


def test_fused_inference_encoder_computes_the_same_function():
    from hear_slicer.encoder import fuse_for_inference

    torch.manual_seed(0)
    enc = AudioNTT2020(EncoderConfig())
    # non-trivial BatchNorm statistics, as after training
    with torch.no_grad():
        for block in enc.blocks:
            block[1].running_mean.uniform_(-1, 1)
            block[1].running_var.uniform_(0.5, 2)
            block[1].weight.uniform_(0.5, 1.5)
            block[1].bias.uniform_(-0.5, 0.5)
    enc.eval()
    x = torch.randn(3, 64, 203)
    fused = fuse_for_inference(enc)
    with torch.no_grad():
        ref = enc(x)
        out = fused(x)
    assert out.shape == ref.shape == (3, 25, 2048)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="eval mode"):
        fuse_for_inference(AudioNTT2020(EncoderConfig()).train())
