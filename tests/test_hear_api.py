"""HEAR 2021 API: contract, invariants (hear-baseline style) and input errors."""
from pathlib import Path

import numpy as np
import pytest
import torch

import hear_slicer
from hear_slicer import get_scene_embeddings, get_timestamp_embeddings, load_model

SR = 16000
TOL = dict(atol=1e-5, rtol=1e-4)  # float32 convs differ at rounding level across batch sizes


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(123)  # must not matter: the default model has its own fixed seed
    return load_model()


@pytest.fixture(scope="module")
def audio():
    g = torch.Generator().manual_seed(0)
    t = torch.arange(3 * SR) / SR
    tones = torch.stack([torch.sin(2 * np.pi * f * t) for f in (220.0, 880.0, 3000.0)]) * 0.3
    return (tones + 0.05 * torch.randn(3, 3 * SR, generator=g)).float()


def test_model_attributes(model):
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == 16000
    assert model.scene_embedding_size == model.timestamp_embedding_size == 2048
    # the trained default ships as package data (README, "Default model")
    assert not model.is_random_init and model.provenance["objective"] == "slicer"
    assert model.checkpoint_path == str(hear_slicer.api.DEFAULT_CHECKPOINT)


def test_default_checkpoint_is_the_default_model_config_trained(tmp_path):
    """The shipped default is what `python -m pretrain --config pretrain/configs/default_model.yaml`
    writes (then `python -m pretrain.export`), within the 25 MB package-data budget; that config
    is the learning-curve study's `slicer_rrc_time_only` run, as `studies.learning_curves` plans it."""
    from hear_slicer.api import DEFAULT_CHECKPOINT
    from hear_slicer.checkpoint import load_checkpoint
    from pretrain.config import config_from_dict, load_config
    from studies import learning_curves as lc

    assert DEFAULT_CHECKPOINT.stat().st_size <= 25e6
    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    assert ckpt.teacher is None and ckpt.training_state is None  # slim export
    trained = config_from_dict(ckpt.train_config).to_dict()
    wanted = load_config(Path(__file__).resolve().parent.parent / "pretrain" / "configs" / "default_model.yaml").to_dict()
    runs = lc.plan(tmp_path, tmp_path / "store", lc.CURVE_STEPS[-1], lc.CURVE_STEPS, list(lc.LONG_METHODS),
                   list(lc.VARIANTS), lc.COMPLETED, "bf16", "cpu")
    run = next(r for r in runs if r.name == "slicer_rrc_time_only")
    study = load_config(run.config, run.set_args()).to_dict()
    for cfg in (trained, wanted, study):  # where the data and the run were, how it showed progress: not the recipe
        del cfg["data"]["path"], cfg["run"]["out"], cfg["run"]["progress"], cfg["run"]["device"]
    assert trained == wanted == study
    assert wanted["run"]["steps"] == 6000 and wanted["augment"]["rrc"]["frequency"] is False
    assert ckpt.provenance["steps"] == 6000 and ckpt.provenance["files"] == 6626
    assert load_model().checkpoint_path == str(DEFAULT_CHECKPOINT)


def test_without_the_default_checkpoint_a_random_init_model_says_so(monkeypatch, tmp_path):
    import hear_slicer.api as api

    monkeypatch.setattr(api, "DEFAULT_CHECKPOINT", tmp_path / "missing.pt")
    fallback = load_model(timestamp_hop_ms=25)
    assert fallback.is_random_init and fallback.provenance == {"objective": "none (random init)", "seed": 0}
    assert fallback.checkpoint_path == "" and fallback.timestamp_hop_ms == 25  # options apply to it too


def test_default_model_is_deterministic(audio):
    a = get_scene_embeddings(audio, load_model())
    b = get_scene_embeddings(audio, load_model())
    assert torch.equal(a, b)


def test_shapes_dtypes_and_same_input_same_output(model, audio):
    emb = get_scene_embeddings(audio, model)
    assert emb.shape == (3, 2048) and emb.dtype == torch.float32
    assert torch.equal(emb, get_scene_embeddings(audio, model))
    temb, ts = get_timestamp_embeddings(audio, model)
    assert temb.shape[:2] == ts.shape and temb.shape[0] == 3 and temb.shape[2] == 2048
    assert temb.dtype == ts.dtype == torch.float32
    # different sounds give different embeddings
    assert not torch.allclose(emb[0], emb[1], **TOL)


def test_batched_equals_one_by_one_and_slices(model, audio):
    emb = get_scene_embeddings(audio, model)
    for i in range(3):
        assert torch.allclose(get_scene_embeddings(audio[i:i + 1], model), emb[i:i + 1], **TOL)
    assert torch.allclose(get_scene_embeddings(audio[1:], model), emb[1:], **TOL)
    temb, ts = get_timestamp_embeddings(audio, model)
    temb1, ts1 = get_timestamp_embeddings(audio[2:3], model)
    assert torch.allclose(temb1, temb[2:3], **TOL) and torch.equal(ts1, ts[2:3])


def test_embedding_does_not_depend_on_other_clips(model, audio):
    loud = torch.cat([audio[:1], 0.99 * torch.ones(1, audio.shape[1])])
    assert torch.allclose(get_scene_embeddings(loud, model)[0], get_scene_embeddings(audio[:1], model)[0], **TOL)


@pytest.mark.parametrize("seconds", [1.07, 1.98, 2.74, 4.0, 13.3])
def test_timestamps_contract(model, seconds):
    n = int(seconds * SR)
    temb, ts = get_timestamp_embeddings(torch.zeros(2, n), model)
    length_ms = 1000 * n / SR
    diffs = torch.diff(ts[0].double())
    assert torch.all((diffs - model.timestamp_hop_ms).abs() <= 1e-3)  # regular
    assert model.timestamp_hop_ms <= 50  # HEAR's recommendation
    assert ts[0, 0] == 0 and ts[0, -1] <= length_ms and length_ms - ts[0, -1] < model.timestamp_hop_ms
    assert torch.equal(ts[0], ts[1])


def test_timestamps_are_computed_from_the_index_not_accumulated():
    model = load_model(timestamp_hop_ms=25.0 / 3)  # a hop with no exact float representation
    ts = model.timestamps_ms(20 * 60 * SR)  # 20 minutes
    k = torch.arange(len(ts), dtype=torch.float64)
    assert torch.equal(ts, k * (25.0 / 3))
    assert abs(float(ts[-1]) - 1_200_000.0) < 1e-6


def test_timestamp_embeddings_interpolate_encoder_frames(model, audio):
    frames = model.frames(audio)  # (n, T', D) at 80 ms
    centres = model.frame_times_ms(frames.shape[1])
    temb, ts = get_timestamp_embeddings(audio, model)
    # a timestamp that falls on a frame centre returns that frame exactly
    model_hop = load_model(timestamp_hop_ms=5.0)
    temb5, ts5 = get_timestamp_embeddings(audio, model_hop)
    i = 3
    k = int(torch.nonzero(ts5[0].double() == centres[i])[0])
    assert torch.allclose(temb5[:, k], frames[:, i], **TOL)
    # halfway between two centres: their mean
    k = int(torch.nonzero(ts5[0].double() == (centres[i] + centres[i + 1]) / 2)[0])
    assert torch.allclose(temb5[:, k], (frames[:, i] + frames[:, i + 1]) / 2, **TOL)
    # scene embedding is max + mean of the frames
    assert torch.allclose(get_scene_embeddings(audio, model), frames.amax(1) + frames.mean(1), **TOL)


def _interpolated_reference(frames: np.ndarray, times_ms: np.ndarray) -> np.ndarray:
    """Linear interpolation of encoder frames (n, T', D) at ``times_ms``, written out from the
    STFT's centre convention: frame i is centred at (8 i + 3.5) x 10 ms; before the first
    centre the first frame, after the last centre the last frame (np.interp per dimension)."""
    centres = (8 * np.arange(frames.shape[1]) + 3.5) * 10.0
    out = np.empty((frames.shape[0], len(times_ms), frames.shape[2]))
    for b in range(frames.shape[0]):
        for d in range(frames.shape[2]):
            out[b, :, d] = np.interp(times_ms, centres, frames[b, :, d])
    return out


@pytest.mark.parametrize("seconds", [3.0, 0.25, 0.17])  # 37, 3 and 2 encoder frames
def test_every_timestamp_embedding_interpolates_the_frames_around_it(seconds):
    """All timestamps, the edges included (before the first centre, in the last interval, after
    the last centre), equal the interpolation written out in the test."""
    model = load_model(timestamp_hop_ms=5.0)
    g = torch.Generator().manual_seed(4)
    audio = 0.1 * torch.randn(2, int(seconds * SR), generator=g)
    frames = model.frames(audio)
    emb, ts = get_timestamp_embeddings(audio, model)
    assert frames.shape[1] >= 2
    ref = _interpolated_reference(frames.double().numpy()[:, :, :64], ts[0].double().numpy())
    np.testing.assert_allclose(emb[:, :, :64].double().numpy(), ref, rtol=1e-4, atol=1e-5)
    last_centre = (8 * (frames.shape[1] - 1) + 3.5) * 10.0
    assert ts[0, 0] < 35.0 and ts[0, -1] > last_centre - 80.0  # the edges are in the test


def test_frame_centres_follow_the_stft_in_float64():
    """Encoder frame i pools STFT frames 8i .. 8i+7, centred at j x hop (center=True), so its
    centre is (8 i + 3.5) x 10 ms; exact in float64 also for hours of audio."""
    model = load_model()
    assert model.frontend.cfg.hop_length == 160 and model.sample_rate == SR  # 10 ms
    centres = model.frame_times_ms(5)
    assert centres.dtype == torch.float64
    assert centres.tolist() == [35.0, 115.0, 195.0, 275.0, 355.0]
    n = 10 * 3600 * 1000 // 80  # ten hours of 80 ms frames
    assert model.frame_times_ms(n)[-1].item() == (8 * (n - 1) + 3.5) * 10.0


def test_empty_batch_gives_empty_outputs_of_the_right_shape(model):
    emb, ts = get_timestamp_embeddings(torch.zeros(0, SR), model)
    k = get_timestamp_embeddings(torch.zeros(1, SR), model)[1].shape[1]
    assert emb.shape == (0, k, 2048) and ts.shape == (0, k) and k == len(model.timestamps_ms(SR))


@pytest.mark.parametrize("kind", ["scene", "timestamp"])
def test_audio_overflowing_the_log_mel_is_an_error_naming_its_peak(model, kind):
    audio = torch.zeros(3, SR)
    audio[1, ::7] = 1e25  # finite, but its power overflows float32
    fn = get_scene_embeddings if kind == "scene" else get_timestamp_embeddings
    with pytest.raises(ValueError, match=r"sound\(s\) \[1\] give non-finite embeddings: their peak \|x\| \(1e\+25\)"):
        fn(audio, model)


@pytest.mark.slow  # make test-fast: over 1.5 s
def test_chunked_equals_unchunked(audio):
    long = audio.repeat(1, 4)  # 12 s
    whole = load_model(chunk_seconds=1000.0)
    chunked = load_model(chunk_seconds=1.0, max_batch_seconds=2.0)
    assert torch.allclose(get_scene_embeddings(long, chunked), get_scene_embeddings(long, whole), **TOL)
    a, ta = get_timestamp_embeddings(long, chunked)
    b, tb = get_timestamp_embeddings(long, whole)
    assert torch.equal(ta, tb) and torch.allclose(a, b, **TOL)


def test_chunk_context_is_what_makes_chunks_exact(audio):
    """The equality above is not vacuous: without context, chunk edges differ."""
    long = audio.repeat(1, 4)
    whole = load_model(chunk_seconds=1000.0)
    no_context = load_model(chunk_seconds=1.0)
    no_context.context_frames = 0  # bypasses the option check on purpose
    assert not torch.allclose(no_context.frames(long), whole.frames(long), **TOL)


def test_reasonable_input_is_accepted(model, audio):
    emb = get_scene_embeddings(audio, model)
    assert torch.allclose(get_scene_embeddings(audio.double(), model), emb, **TOL)
    assert torch.allclose(get_scene_embeddings(audio.numpy(), model), emb, **TOL)
    tiny = get_scene_embeddings(torch.zeros(2, 100), model)  # shorter than one STFT window
    assert tiny.shape == (2, 2048) and torch.isfinite(tiny).all()
    temb, ts = get_timestamp_embeddings(torch.zeros(1, 100), model)
    assert ts.shape == (1, 1) and temb.shape == (1, 1, 2048)
    assert get_scene_embeddings(torch.zeros(0, SR), model).shape == (0, 2048)


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (torch.zeros(SR), ValueError, r"shape \(n_sounds, n_samples\), got \(16000,\)"),
        (torch.zeros(2, 1, SR), ValueError, r"got \(2, 1, 16000\)"),
        (torch.zeros(2, SR, dtype=torch.int16), TypeError, "floating-point"),
        (np.zeros((2, SR), dtype=np.int32), TypeError, "got a numpy array of dtype int32$"),
        (torch.full((1, SR), float("nan")), ValueError, "^audio contains NaN or Inf values$"),
        (torch.full((1, SR), float("inf")), ValueError, "^audio contains NaN or Inf values$"),
        (torch.zeros(2, 0), ValueError, "^expected at least one sample per sound, got n_samples = 0$"),
        ([[0.0] * 10], TypeError, "torch.Tensor or numpy array of shape .* got list$"),
    ],
)
def test_bad_input_gets_a_clear_error(model, bad, exc, match):
    with pytest.raises(exc, match=match):
        get_scene_embeddings(bad, model)
    with pytest.raises(exc, match=match):
        get_timestamp_embeddings(bad, model)


def test_audio_on_another_device_than_the_model(model):
    meta = torch.zeros(1, SR, device="meta")
    with pytest.raises(ValueError, match="move one of them"):
        get_scene_embeddings(meta, model)
    with pytest.raises(ValueError, match=r"^audio is on meta but the model is on cpu; .*audio\.to\('cpu'\)\)$"):
        get_timestamp_embeddings(meta, model)


def test_bad_options():
    with pytest.raises(TypeError, match="unknown load_model option"):
        load_model(hop=10)
    with pytest.raises(ValueError, match="timestamp_hop_ms"):
        load_model(timestamp_hop_ms=0)
    with pytest.raises(TypeError, match=r"^model_file_path must be a path \(str\), got int 3$"):
        load_model(3)


@pytest.mark.parametrize("name, value", [("context_frames", 3), ("context_frames", 8.0), ("context_frames", True),
                                         ("timestamp_hop_ms", True), ("timestamp_hop_ms", "40"),
                                         ("chunk_seconds", 0.05), ("max_batch_seconds", float("nan")),
                                         ("max_batch_seconds", 1e6)])
def test_a_bad_option_value_is_refused_with_its_name_type_range_and_value(model, name, value):
    from hear_slicer.api import SlicerHearModel

    low, high = SlicerHearModel.RANGES[name]
    kind = "an integer" if name == "context_frames" else "a number"
    with pytest.raises(ValueError) as err:
        SlicerHearModel(model.frontend, model.encoder, **{name: value})
    assert str(err.value) == f"load_model option {name} must be {kind} in [{low:g}, {high:g}], got {value!r}"


def test_option_defaults_and_both_ends_of_each_range(model):
    from hear_slicer.api import SlicerHearModel

    plain = SlicerHearModel(model.frontend, model.encoder)
    assert (plain.timestamp_hop_ms, plain.chunk_seconds, plain.max_batch_seconds, plain.context_frames) == \
        (40.0, 30.0, 120.0, 8)  # the defaults the docstring and README state
    assert plain.checkpoint_path == "" and plain.provenance == {} and not plain.is_random_init
    _, ts = get_timestamp_embeddings(torch.zeros(1, SR), plain)
    assert ts[0].tolist() == [40.0 * k for k in range(26)]
    for name, ends in SlicerHearModel.RANGES.items():
        for value in ends:
            assert getattr(SlicerHearModel(model.frontend, model.encoder, **{name: value}), name) == value


def test_a_checkpoint_file_loads_with_its_path_and_provenance(model, audio, tmp_path):
    import shutil

    from hear_slicer.api import DEFAULT_CHECKPOINT
    from hear_slicer.checkpoint import load_checkpoint

    path = tmp_path / "copy.pt"
    shutil.copy(DEFAULT_CHECKPOINT, path)
    for given in (str(path), path):
        m = load_model(given, timestamp_hop_ms=25)
        assert m.checkpoint_path == str(path) and m.timestamp_hop_ms == 25 and not m.is_random_init
        assert m.provenance == load_checkpoint(path).provenance
        torch.testing.assert_close(get_scene_embeddings(audio, m), get_scene_embeddings(audio, model))


def test_short_clips_are_zero_padded_at_the_end(model, audio):
    """A clip shorter than one encoder frame embeds as itself followed by zeros up to that length."""
    n = model.min_samples
    for length in (1, 500, n - 1):
        clip = audio[:, :length]
        padded = torch.nn.functional.pad(clip, (0, n - length))
        torch.testing.assert_close(get_scene_embeddings(clip, model), get_scene_embeddings(padded, model))
        torch.testing.assert_close(get_timestamp_embeddings(clip, model)[0][:, 0],
                                   get_timestamp_embeddings(padded, model)[0][:, 0])


@pytest.mark.parametrize("n_bad, listed", [(5, "[0, 1, 2, 3, 4]"), (6, "[0, 1, 2, 3, 4] ..."),
                                           (7, "[0, 1, 2, 3, 4] ...")])
def test_the_overflow_error_lists_at_most_five_sounds_and_their_peaks(n_bad, listed):
    from hear_slicer.api import check_finite

    audio = torch.zeros(8, 100)
    audio[:n_bad, 0] = torch.arange(1, n_bad + 1) * 1e20
    emb = torch.zeros(8, 3)
    emb[:n_bad, 1] = float("nan")
    peaks = ", ".join(f"{v:.3g}" for v in (torch.arange(1, 6) * 1e20).tolist())
    with pytest.raises(ValueError) as err:
        check_finite(emb, audio)
    assert str(err.value) == (f"sound(s) {listed} give non-finite embeddings: their peak |x| ({peaks}) is far "
                              "outside [-1, 1]; pass audio scaled to [-1, 1]")


def test_model_stays_in_eval_mode(model, audio):
    model.train()
    assert not model.training and not model.encoder.training
    assert torch.equal(get_scene_embeddings(audio, model), get_scene_embeddings(audio, model))


def test_package_exports():
    assert set(hear_slicer.__all__) >= {"load_model", "get_scene_embeddings", "get_timestamp_embeddings"}


# Frame timing against the STFT's own convention, not against `frame_times_ms`: with
# center=True, STFT frame j is centred on sample j * hop (10 ms); encoder frame i pools STFT
# frames 8i .. 8i+7, so its centre is (8i + 3.5) * 10 ms. A click at time c changes most the
# encoder frame whose 80 ms span holds c, so the timestamp embedding that moves most under
# the click lies at most half a frame (40 ms) from it, and exactly on it when c is a centre.
HOP_STFT_MS, POOL = 10.0, 8


@pytest.mark.parametrize("chunk_seconds", [30.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_click_moves_the_timestamp_embedding_at_its_time(chunk_seconds, seed):
    model = load_model(timestamp_hop_ms=5.0, chunk_seconds=chunk_seconds)
    n = 3 * SR
    quiet = 0.001 * torch.randn(1, n, generator=torch.Generator().manual_seed(seed))
    base, ts = get_timestamp_embeddings(quiet, model)
    centres = [(POOL * i + (POOL - 1) / 2) * HOP_STFT_MS for i in (3, 12, 20, 30)]
    off_centre = [500.0, 1234.0, 2017.0]
    for click_ms in centres + off_centre:
        x = quiet.clone()
        s = int(round(click_ms * SR / 1000))
        x[0, s - 8:s + 8] += 0.9
        emb, _ = get_timestamp_embeddings(x, model)
        moved = float(ts[0, (emb - base).norm(dim=-1)[0].argmax()])
        tolerance = 5.0 if click_ms in centres else POOL * HOP_STFT_MS / 2
        assert abs(moved - click_ms) <= tolerance, (click_ms, moved)
