"""eval_suites.synthetic.synth against the real engines (espeak-ng, flite, fluidsynth) and analytic cases."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval_suites.synthetic import synth

SR = 16000


def f0_median(x: np.ndarray, sr: int = SR, frame: int = 640) -> float:
    """Median autocorrelation pitch (Hz, 60-400 Hz) of the loud frames: a slow, simple reference."""
    n = len(x) // frame
    frames = x[: n * frame].reshape(n, frame).astype(np.float64)
    energy = (frames**2).mean(axis=1)
    est = []
    for f in frames[energy > 0.1 * energy.max()]:
        f = f - f.mean()
        ac = np.correlate(f, f, "full")[frame - 1:]
        lo, hi = sr // 400, sr // 60
        est.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(est))


def unit_spectrum(x: np.ndarray) -> np.ndarray:
    mag = np.abs(np.fft.rfft(x))
    return mag / np.linalg.norm(mag)


# --------------------------------------------------------------------------- espeak


def test_espeak_shape_range_and_rate_matches_the_binary(tmp_path):
    x = synth.espeak("hello world", voice="en", sample_rate=SR)
    assert x.dtype == np.float32 and x.ndim == 1
    assert 0 < np.abs(x).max() <= 1.0
    # Reference: the binary's own file (22050 Hz int16), read independently.
    ref_path = tmp_path / "ref.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-s", "175", "-p", "50", "-a", "100",
                    "-w", str(ref_path), "hello world"], check=True)
    ref, ref_sr = sf.read(ref_path, dtype="int16")
    assert ref_sr == synth.ESPEAK_SAMPLE_RATE
    native = synth.espeak("hello world", voice="en", sample_rate=ref_sr)
    np.testing.assert_array_equal(native, ref.astype(np.float32) / 32768.0)
    assert abs(len(x) - len(ref) * SR / ref_sr) <= 2


def test_espeak_is_deterministic():
    a = synth.espeak("seven", voice="en-us+f2", speed=150, pitch=60)
    b = synth.espeak("seven", voice="en-us+f2", speed=150, pitch=60)
    np.testing.assert_array_equal(a, b)


def test_espeak_variants_and_pitch_change_the_voice():
    text = "hello there how are you"
    male = f0_median(synth.espeak(text, voice="en+m3"))
    female = f0_median(synth.espeak(text, voice="en+f3"))
    assert female > 1.5 * male, (male, female)
    low = f0_median(synth.espeak(text, voice="en", pitch=10))
    high = f0_median(synth.espeak(text, voice="en", pitch=90))
    assert high > 1.3 * low, (low, high)
    slow = synth.espeak(text, speed=100)
    fast = synth.espeak(text, speed=300)
    assert len(slow) > 1.8 * len(fast)


def test_espeak_voice_listing():
    en = synth.espeak_voices("en")
    assert "en" in en and "en-us" in en and "en-gb" in en
    assert all(v == "en" or v.startswith("en-") for v in en)
    assert "de" in synth.espeak_voices() and "fr" in synth.espeak_voices()
    variants = synth.espeak_variants()
    assert {"f3", "m2", "whisper"} <= set(variants)


@pytest.mark.parametrize("voice,bad", [("xx-nosuch", "xx-nosuch"), ("en+nosuchvariant", "nosuchvariant")])
def test_espeak_bad_voice_names_the_voice(voice, bad):
    with pytest.raises(ValueError, match=bad):
        synth.espeak("hello", voice=voice)


def test_missing_binary_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no engines on PATH
    with pytest.raises(synth.EngineError, match="apt-get install flite"):
        synth.flite("hello")
    with pytest.raises(synth.EngineError, match="apt-get install fluidsynth"):
        synth.fluidsynth_render([synth.Note(0, 60, 100, 0.0, 0.2)], 0.5)


def test_engines_leave_no_temporary_files(monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    synth.espeak("hi")
    synth.flite("hi", voice="slt")
    synth.fluidsynth_render([synth.Note(0, 60, 100, 0.0, 0.2)], 0.5)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- flite


def test_flite_voices_all_work_and_differ():
    outs = {v: synth.flite("hello there how are you", voice=v) for v in synth.FLITE_VOICES}
    for v, x in outs.items():
        assert x.dtype == np.float32 and x.ndim == 1 and 0 < np.abs(x).max() <= 1.0, v
    assert f0_median(outs["slt"]) > 1.4 * f0_median(outs["rms"])  # female vs male voice
    assert not np.array_equal(outs["kal16"][:8000], outs["awb"][:8000])


def test_flite_is_deterministic_and_stretch_slows_down():
    a = synth.flite("window", voice="awb")
    np.testing.assert_array_equal(a, synth.flite("window", voice="awb"))
    slow = synth.flite("window", voice="awb", duration_stretch=1.5)
    assert len(slow) > 1.2 * len(a)


def test_flite_bad_voice_is_refused_not_silently_replaced():
    # The binary itself falls back to kal for an unknown voice; the wrapper must refuse.
    with pytest.raises(ValueError, match="nosuch"):
        synth.flite("hello", voice="nosuch")


# --------------------------------------------------------------------------- fluidsynth


def test_vlq_matches_the_smf_specification_examples():
    # Examples from the Standard MIDI File 1.0 specification.
    cases = {0x00: "00", 0x40: "40", 0x7F: "7F", 0x80: "8100", 0x2000: "C000",
             0x3FFF: "FF7F", 0x4000: "818000", 0x1FFFFF: "FFFF7F", 0x200000: "81808000"}
    for value, hexstr in cases.items():
        assert synth._vlq(value) == bytes.fromhex(hexstr), hex(value)


def test_midi_file_structure():
    data = synth.midi_bytes([synth.Note(40, 69, 100, 0.25, 0.5)], 1.0)
    assert data[:4] == b"MThd" and int.from_bytes(data[8:10], "big") == 0  # format 0
    assert data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22
    assert data.endswith(b"\xff\x2f\x00")
    assert bytes([0xC0, 40]) in data and bytes([0x90, 69, 100]) in data


def test_fluidsynth_shape_determinism_and_note_timing():
    notes = [synth.Note(0, 69, 100, 0.5, 0.3)]
    x = synth.fluidsynth_render(notes, 1.0, sample_rate=SR)
    assert x.shape == (SR,) and x.dtype == np.float32 and np.abs(x).max() <= 1.0
    np.testing.assert_array_equal(x, synth.fluidsynth_render(notes, 1.0, sample_rate=SR))
    onset = int(0.5 * SR)
    assert np.abs(x[: onset - 160]).max() < 1e-4  # silence before the note (10 ms slack)
    assert np.abs(x[onset: onset + 800]).max() > 0.01  # sound within 50 ms of its start


def test_fluidsynth_program_changes_the_spectrum_but_not_the_pitch():
    def render(program):
        return synth.fluidsynth_render([synth.Note(program, 69, 100, 0.0, 0.8)], 1.0)[:12000]

    spectra = {p: unit_spectrum(render(p)) for p in (0, 40, 56, 73)}  # piano violin trumpet flute
    progs = list(spectra)
    for i, a in enumerate(progs):
        for b in progs[i + 1:]:
            assert spectra[a] @ spectra[b] < 0.85, (a, b)
    # MIDI 69 is A4 = 440 Hz: piano and flute put their strongest partial there.
    freqs = np.fft.rfftfreq(12000, 1 / SR)
    for p in (0, 73):
        assert abs(freqs[np.argmax(spectra[p])] - 440.0) < 3.0


def test_fluidsynth_drums_on_channel_9():
    kick = synth.fluidsynth_render([synth.Note(0, 36, 120, 0.0, 0.2, channel=9)], 0.5)
    hat = synth.fluidsynth_render([synth.Note(0, 42, 120, 0.0, 0.2, channel=9)], 0.5)
    freqs = np.fft.rfftfreq(len(kick), 1 / SR)

    def centroid(x):
        p = np.abs(np.fft.rfft(x)) ** 2
        return (p * freqs).sum() / p.sum()

    assert np.abs(kick).max() > 0.01 and np.abs(hat).max() > 0.01
    assert centroid(hat) > 4 * centroid(kick)


@pytest.mark.slow  # make test-fast: over 1.5 s
def test_fluidsynth_render_many_matches_separate_renders():
    clips = [[synth.Note(0, 60, 100, 0.1, 0.4)], [synth.Note(56, 67, 90, 0.0, 0.5)],
             [synth.Note(0, 38, 110, 0.2, 0.1, channel=9)]]
    many = synth.fluidsynth_render_many(clips, 1.0)
    assert len(many) == 3
    for clip, y in zip(clips, many):
        ref = synth.fluidsynth_render(clip, 1.0)
        assert y.shape == ref.shape
        # Same notes, same soundfont; only resampling boundaries differ.
        assert unit_spectrum(y) @ unit_spectrum(ref) > 0.99
        rms_y, rms_ref = np.sqrt(np.mean(y**2)), np.sqrt(np.mean(ref**2))
        assert abs(rms_y - rms_ref) < 0.05 * rms_ref


def test_note_validation():
    with pytest.raises(ValueError, match="pitch"):
        synth.Note(0, 128, 100, 0.0, 1.0)
    with pytest.raises(ValueError, match="duration"):
        synth.Note(0, 60, 100, 0.0, 0.0)


# --------------------------------------------------------------------------- signal


def test_resample_keeps_frequency_and_length():
    sr_in = 22050
    t = np.arange(sr_in) / sr_in
    x = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    y = synth.resample(x, sr_in, SR)
    assert y.dtype == np.float32 and abs(len(y) - SR) <= 1
    t_out = np.arange(len(y)) / SR
    ref = np.sin(2 * np.pi * 1000.0 * t_out)
    mid = slice(1000, len(y) - 1000)  # away from the edges
    assert np.max(np.abs(y[mid] - ref[mid])) < 1e-3
    np.testing.assert_array_equal(synth.resample(x, SR, SR), x)


def test_noise_colours_have_the_right_spectral_slope():
    rng = np.random.default_rng(0)
    n = 2**16
    freqs = np.fft.rfftfreq(n, 1 / SR)
    band = (freqs > 50) & (freqs < 5000)
    for kind, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        x = synth.noise(kind, n, rng)
        assert x.shape == (n,) and x.dtype == np.float32
        assert abs(np.sqrt(np.mean(x.astype(np.float64) ** 2)) - 1.0) < 1e-4
        power = np.abs(np.fft.rfft(x)) ** 2
        fit = np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0]
        assert abs(fit - slope) < 0.1, (kind, fit)
    a = synth.noise("pink", 1000, np.random.default_rng(3))
    np.testing.assert_array_equal(a, synth.noise("pink", 1000, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="blue"):
        synth.noise("blue", 10, rng)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 30.0])
def test_mix_at_snr_reaches_the_requested_snr(snr_db):
    rng = np.random.default_rng(1)
    s = synth.espeak("seven")
    v = synth.noise("white", len(s), rng)
    y = synth.mix_at_snr(s, v, snr_db)
    added = y.astype(np.float64) - s
    measured = 10 * np.log10(np.mean(s.astype(np.float64) ** 2) / np.mean(added**2))
    assert abs(measured - snr_db) < 1e-3
    # what was added is a scaled copy of the noise
    g = added @ v / (v.astype(np.float64) @ v)
    np.testing.assert_allclose(added, g * v, atol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        synth.mix_at_snr(s, v[:-1], snr_db)


def test_normalize_peak():
    x = np.array([0.1, -0.5, 0.25], np.float32)
    np.testing.assert_allclose(synth.normalize_peak(x, 0.9), x * 0.9 / 0.5, rtol=1e-6)
    np.testing.assert_array_equal(synth.normalize_peak(np.zeros(4)), np.zeros(4))


def test_wav_round_trip(tmp_path):
    x = synth.espeak("yes")
    path = tmp_path / "a.wav"
    synth.write_wav(path, x, SR)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
    y, sr = synth.read_wav(path)
    assert sr == SR and y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= 1 / 32768 + 1e-7
    stereo = tmp_path / "s.wav"
    sf.write(stereo, np.stack([x, 0 * x], axis=1), SR)
    z, _ = synth.read_wav(stereo)
    assert z.shape == x.shape and np.max(np.abs(z - x / 2)) < 1e-4
