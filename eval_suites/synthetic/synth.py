"""Real audio from real engines: espeak-ng and flite speech, fluidsynth instruments, noise.

Every function here returns a float32 mono waveform of shape (N,) in [-1, 1] at the
requested ``sample_rate`` (Hz). Speech and music come from the Debian binaries
``espeak-ng``, ``flite`` and ``fluidsynth`` (with the FluidR3 General MIDI soundfont),
called as subprocesses that write to a private temporary folder, which is removed
afterwards. Nothing is mocked and nothing is downloaded.

Legend: N samples, n number of noise samples, sr sample rate in Hz.

Determinism: the same arguments give byte-identical samples. This holds for the
installed engines (checked in tests/test_synth.py): espeak-ng 1.51 and flite 2.2 are
deterministic, and fluidsynth 2.3's offline renderer (``-F``) is deterministic for
the same MIDI file and soundfont. Resampling (soxr) and the noise generators (numpy
``Generator``) are deterministic too.

Engines quietly fall back to a default voice on a bad name (``flite -voice nosuch``
speaks with kal, ``espeak-ng -v en+nosuch`` ignores the variant), so voices are
checked against the engine's own list before running it, and a bad name raises a
``ValueError`` naming the voice and the available ones.
"""
from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = [
    "DEFAULT_SOUNDFONT",
    "FLITE_VOICES",
    "ESPEAK_SAMPLE_RATE",
    "EngineError",
    "Note",
    "espeak",
    "espeak_voices",
    "espeak_variants",
    "flite",
    "fluidsynth_render",
    "fluidsynth_render_many",
    "midi_bytes",
    "resample",
    "noise",
    "NOISE_KINDS",
    "mix_at_snr",
    "normalize_peak",
    "write_wav",
    "read_wav",
]

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
"""General MIDI soundfont from the Debian package ``fluid-soundfont-gm``."""

FLITE_VOICES: tuple[str, ...] = ("kal", "kal16", "awb", "rms", "slt")
"""flite voices compiled into Debian's flite 2.2 (``flite -lv``; ``awb_time`` omitted:
it is awb with a different duration model)."""

ESPEAK_SAMPLE_RATE = 22050
"""espeak-ng always synthesises at 22050 Hz."""

NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown")

# Debian package providing each binary, for the "not installed" error.
_DEBIAN_PACKAGES = {
    "espeak-ng": "espeak-ng",
    "flite": "flite",
    "fluidsynth": "fluidsynth",
}


class EngineError(RuntimeError):
    """An external engine is missing or failed; the message says which and what to do."""


# --------------------------------------------------------------------------- engines


def _binary(name: str) -> str:
    """Path of an engine binary, or an ``EngineError`` naming the Debian package."""
    path = shutil.which(name)
    if path is None:
        raise EngineError(
            f"the '{name}' program is not installed or not on PATH; "
            f"install it with `apt-get install {_DEBIAN_PACKAGES.get(name, name)}`"
        )
    return path


def _run(cmd: list[str], what: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run an engine command, raising ``EngineError`` with its stderr on failure."""
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EngineError(
            f"{what} failed (exit code {proc.returncode}): {' '.join(cmd)}\n"
            f"stderr: {proc.stderr.strip()}"
        )
    return proc


@functools.lru_cache(maxsize=None)
def _espeak_listing(arg: str) -> tuple[tuple[str, str, str], ...]:
    """Rows (language, voice name, file) of ``espeak-ng --voices[=arg]``; a voice's
    "other languages" (e.g. "(en 2)" on en-gb) give extra rows with the same file."""
    cmd = [_binary("espeak-ng"), "--voices" if not arg else f"--voices={arg}"]
    out = _run(cmd, "listing espeak-ng voices").stdout.splitlines()
    rows = []
    for line in out[1:]:  # first line is the column header
        parts = line.split()
        # Pty Language Age/Gender VoiceName File [Other Languages...]
        if len(parts) >= 5:
            rows.append((parts[1], parts[3], parts[4]))
            others = " ".join(parts[5:])
            for lang in re.findall(r"\(([^\s()]+) \d+\)", others):
                rows.append((lang, parts[3], parts[4]))
    return tuple(rows)


def espeak_voices(language: str | None = None) -> list[str]:
    """Language voices of espeak-ng (``espeak-ng --voices``), e.g. ``["en-gb", "en-us", ...]``.

    With ``language`` (e.g. "en"), only voices whose language code is that language or a
    dialect of it ("en", "en-gb", "en-us", ...). MBROLA voices (which need separately
    installed databases) are excluded. Sorted, without duplicates. Any of these can be
    combined with a variant from :func:`espeak_variants` as ``"en-us+f3"``.
    """
    names = set()
    for lang, _name, file in _espeak_listing(""):
        if file.startswith("mb/"):
            continue
        if language is None or lang == language or lang.startswith(language + "-"):
            names.add(lang)
    return sorted(names)


def espeak_variants() -> list[str]:
    """espeak-ng voice variants usable after a '+' (e.g. "f3", "m2", "whisper"), sorted."""
    return sorted(
        file.split("/", 1)[1] for _lang, _name, file in _espeak_listing("variant")
        if file.startswith("!v/")
    )


def _check_espeak_voice(voice: str) -> None:
    base, _, variant = voice.partition("+")
    languages = {lang for lang, _n, f in _espeak_listing("") if not f.startswith("mb/")}
    files = {f.rsplit("/", 1)[-1] for _l, _n, f in _espeak_listing("") if not f.startswith("mb/")}
    if base not in languages and base not in files:
        raise ValueError(
            f"espeak-ng has no voice {base!r} (from voice {voice!r}); "
            f"choose one of espeak_voices(), e.g. 'en', 'en-us', 'de', 'fr'"
        )
    if variant and variant not in espeak_variants():
        raise ValueError(
            f"espeak-ng has no voice variant {variant!r} (from voice {voice!r}); "
            f"choose one of espeak_variants(), e.g. 'f3', 'm2', 'whisper'"
        )


def espeak(
    text: str,
    voice: str = "en",
    speed: int = 175,
    pitch: int = 50,
    amplitude: int = 100,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Speak ``text`` with espeak-ng; returns float32 (N,) in [-1, 1] at ``sample_rate``.

    Args:
        voice: language voice, optionally with a variant, e.g. "en", "en-us+f3", "de+m2".
        speed: words per minute (espeak-ng ``-s``, 80-450).
        pitch: base pitch 0-99 (``-p``).
        amplitude: 0-200 (``-a``).
    """
    if not text.strip():
        raise ValueError("expected non-empty text to speak, got an empty string")
    _check_range("speed", speed, 80, 450)
    _check_range("pitch", pitch, 0, 99)
    _check_range("amplitude", amplitude, 0, 200)
    exe = _binary("espeak-ng")
    _check_espeak_voice(voice)
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        out = Path(tmp) / "speech.wav"
        # Text on stdin, so text starting with '-' is never read as an option.
        cmd = [exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude),
               "-w", str(out)]
        _run(cmd, f"espeak-ng with voice {voice!r}", stdin=text)
        x, sr = read_wav(out)
    return resample(x, sr, sample_rate)


def flite(
    text: str,
    voice: str = "kal",
    sample_rate: int = 16000,
    duration_stretch: float = 1.0,
    f0_mean: float | None = None,
) -> np.ndarray:
    """Speak ``text`` with flite; returns float32 (N,) in [-1, 1] at ``sample_rate``.

    Args:
        voice: one of :data:`FLITE_VOICES` (kal is 8 kHz, the others 16 kHz).
        duration_stretch: > 1 speaks slower (flite feature ``duration_stretch``).
        f0_mean: target mean pitch in Hz (flite feature ``int_f0_target_mean``);
            None keeps the voice's own.
    """
    if not text.strip():
        raise ValueError("expected non-empty text to speak, got an empty string")
    if voice not in FLITE_VOICES:
        raise ValueError(f"flite has no voice {voice!r}; choose one of {FLITE_VOICES}")
    if not 0.25 <= duration_stretch <= 4.0:
        raise ValueError(f"expected duration_stretch in [0.25, 4], got {duration_stretch}")
    if f0_mean is not None and not 40.0 <= f0_mean <= 500.0:
        raise ValueError(f"expected f0_mean in [40, 500] Hz or None, got {f0_mean}")
    exe = _binary("flite")
    with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
        out = Path(tmp) / "speech.wav"
        cmd = [exe, "-voice", voice, "--setf", f"duration_stretch={duration_stretch}"]
        if f0_mean is not None:
            cmd += ["--setf", f"int_f0_target_mean={f0_mean}"]
        _run(cmd + ["-t", text, "-o", str(out)], f"flite with voice {voice!r}")
        x, sr = read_wav(out)
    return resample(x, sr, sample_rate)


# --------------------------------------------------------------------------- MIDI


@dataclass(frozen=True)
class Note:
    """One MIDI note. Times in seconds; ``channel`` 9 is the GM drum kit (``pitch`` picks
    the drum, ``program`` is ignored there)."""

    program: int  # General MIDI program 0-127 (0 piano, 24 nylon guitar, 40 violin, ...)
    pitch: int  # MIDI key 0-127 (60 = middle C)
    velocity: int  # 1-127
    start: float  # seconds
    duration: float  # seconds
    channel: int = 0  # 0-15

    def __post_init__(self) -> None:
        _check_range("program", self.program, 0, 127)
        _check_range("pitch", self.pitch, 0, 127)
        _check_range("velocity", self.velocity, 1, 127)
        _check_range("channel", self.channel, 0, 15)
        if self.start < 0 or self.duration <= 0:
            raise ValueError(
                f"expected a note with start >= 0 and duration > 0 seconds, "
                f"got start={self.start}, duration={self.duration}"
            )


# 1 tick = 1 ms: 1000 ticks per quarter note at 1,000,000 microseconds per quarter.
_TICKS_PER_QUARTER = 1000
_TEMPO_US_PER_QUARTER = 1_000_000


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity (7 bits per byte, high bit = more bytes follow)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_bytes(notes: list[Note], duration: float) -> bytes:
    """A format-0 Standard MIDI File playing ``notes``, ending at ``duration`` seconds.

    Each channel gets the program of its first note; a later note on the same channel
    with another program adds a program change just before it.
    """
    events: list[tuple[int, int, bytes]] = []  # (tick, order, message); order: off<prog<on
    end_tick = int(round(duration * 1000))
    for note in notes:
        on = int(round(note.start * 1000))
        off = min(int(round((note.start + note.duration) * 1000)), end_tick)
        if on >= end_tick:
            continue
        ch = note.channel
        if ch != 9:
            events.append((on, 1, bytes([0xC0 | ch, note.program])))
        events.append((on, 2, bytes([0x90 | ch, note.pitch, note.velocity])))
        events.append((max(off, on + 1), 0, bytes([0x80 | ch, note.pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1], e[2]))

    track = bytearray()
    tempo = _TEMPO_US_PER_QUARTER.to_bytes(3, "big")
    track += _vlq(0) + b"\xff\x51\x03" + tempo
    last_program: dict[int, int] = {}
    now = 0
    for tick, order, msg in events:
        if order == 1:  # skip redundant program changes
            ch = msg[0] & 0x0F
            if last_program.get(ch) == msg[1]:
                continue
            last_program[ch] = msg[1]
        track += _vlq(tick - now) + msg
        now = tick
    track += _vlq(max(end_tick - now, 0)) + b"\xff\x2f\x00"  # end of track
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    header += _TICKS_PER_QUARTER.to_bytes(2, "big")
    return header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track)


def fluidsynth_render(
    notes: list[Note],
    duration: float,
    sample_rate: int = 16000,
    soundfont: str | Path = DEFAULT_SOUNDFONT,
    gain: float = 0.5,
    reverb: bool = False,
    chorus: bool = False,
) -> np.ndarray:
    """Render ``notes`` with fluidsynth; returns float32 (N,) mono, N = round(duration * sr).

    The notes are written to a Standard MIDI File (:func:`midi_bytes`) and rendered
    offline at 44100 Hz (``fluidsynth -ni -F out.wav``), mixed to mono (mean of the
    two channels), cropped or zero-padded to ``duration`` seconds and resampled.
    Reverb and chorus are off by default so a note ends where its release ends.
    Samples are clipped to [-1, 1] (raise ``gain`` with care).
    """
    if duration <= 0:
        raise ValueError(f"expected duration > 0 seconds, got {duration}")
    soundfont = Path(soundfont)
    if not soundfont.is_file():
        raise FileNotFoundError(
            f"soundfont {soundfont} not found; install the General MIDI soundfont with "
            f"`apt-get install fluid-soundfont-gm` or pass soundfont=<path to .sf2>"
        )
    exe = _binary("fluidsynth")
    render_sr = 44100
    with tempfile.TemporaryDirectory(prefix="fluidsynth-") as tmp:
        mid = Path(tmp) / "notes.mid"
        out = Path(tmp) / "render.wav"
        mid.write_bytes(midi_bytes(notes, duration))
        cmd = [
            exe, "-n", "-i", "-q",
            "-R", "1" if reverb else "0",
            "-C", "1" if chorus else "0",
            "-g", str(gain),
            "-r", str(render_sr),
            "-T", "wav", "-O", "s16",
            "-F", str(out),
            str(soundfont), str(mid),
        ]
        _run(cmd, "fluidsynth rendering")
        if not out.is_file():
            raise EngineError(f"fluidsynth wrote no audio file: {' '.join(cmd)}")
        x, sr = read_wav(out)
    n = int(round(duration * render_sr))
    x = x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))
    y = resample(x, sr, sample_rate)
    n_out = int(round(duration * sample_rate))
    y = y[:n_out] if len(y) >= n_out else np.pad(y, (0, n_out - len(y)))
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def fluidsynth_render_many(
    clips: list[list[Note]],
    duration: float,
    sample_rate: int = 16000,
    soundfont: str | Path = DEFAULT_SOUNDFONT,
    gain: float = 0.5,
    gap: float = 2.0,
) -> list[np.ndarray]:
    """Render many short clips in one fluidsynth run; returns one (N,) array per clip.

    Loading the soundfont dominates a short render (about 0.3 s per call), so the clips
    are laid end to end in one MIDI file, ``duration + gap`` seconds apart, rendered
    once and cut apart. Each clip's note times are relative to its own start; notes are
    cut at ``duration``, and ``gap`` must outlast the longest release tail so no clip
    hears the previous one. N = round(duration * sample_rate).
    """
    if gap < 0.5:
        raise ValueError(f"expected gap >= 0.5 s so release tails die out, got {gap}")
    stride = duration + gap
    notes = []
    for i, clip in enumerate(clips):
        for n in clip:
            if n.start >= duration:
                continue
            dur = min(n.duration, duration - n.start)
            notes.append(Note(n.program, n.pitch, n.velocity, i * stride + n.start, dur, n.channel))
    whole = fluidsynth_render(notes, len(clips) * stride, sample_rate, soundfont, gain)
    n_out = int(round(duration * sample_rate))
    out = []
    for i in range(len(clips)):
        a = int(round(i * stride * sample_rate))
        out.append(whole[a:a + n_out].copy())
    return out


# --------------------------------------------------------------------------- signal


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono float signal (N,) from ``sr_in`` to ``sr_out`` Hz (soxr, HQ).

    Falls back to ``scipy.signal.resample_poly`` when soxr is not installed.
    Returns float32 of length about N * sr_out / sr_in; a copy even when the rates match.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected a mono signal of shape (n_samples,), got {x.shape}")
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"expected positive sample rates, got {sr_in} -> {sr_out}")
    if sr_in == sr_out:
        return x.copy()
    try:
        import soxr
    except ImportError:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(sr_in), int(sr_out))
        return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)
    return np.asarray(soxr.resample(x, sr_in, sr_out, quality="HQ"), dtype=np.float32)


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Coloured Gaussian noise (n,) float32 with unit RMS (not clipped to [-1, 1]).

    kind: "white" (flat power spectrum), "pink" (power ~ 1/f, -10 dB per decade) or
    "brown" (power ~ 1/f^2, -20 dB per decade). Coloured noise is white noise shaped in
    the frequency domain; its DC bin is zeroed.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"expected noise kind in {NOISE_KINDS}, got {kind!r}")
    if n <= 0:
        raise ValueError(f"expected n > 0 samples, got {n}")
    white = rng.standard_normal(n)
    if kind == "white":
        y = white
    else:
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        exponent = 0.5 if kind == "pink" else 1.0  # amplitude ~ f^-exponent
        spec = spec / f**exponent
        spec[0] = 0.0
        y = np.fft.irfft(spec, n=n)
    rms = np.sqrt(np.mean(y**2))
    return (y / rms if rms > 0 else y).astype(np.float32)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal + g * noise`` with g such that 10 log10(P_signal / P_(g*noise)) = snr_db.

    Powers are mean squares over the whole arrays, which must have the same shape (N,).
    Returns float32 (not clipped; follow with :func:`normalize_peak` if needed).
    """
    s = np.asarray(signal, dtype=np.float64)
    v = np.asarray(noise, dtype=np.float64)
    if s.shape != v.shape:
        raise ValueError(f"expected signal and noise of the same shape, got {s.shape} and {v.shape}")
    p_s, p_n = np.mean(s**2), np.mean(v**2)
    if p_s <= 0 or p_n <= 0:
        raise ValueError(
            f"cannot mix at an SNR with a silent {'signal' if p_s <= 0 else 'noise'} (power 0)"
        )
    g = np.sqrt(p_s / (p_n * 10.0 ** (snr_db / 10.0)))
    return (s + g * v).astype(np.float32)


def normalize_peak(x: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Scale ``x`` so max |x| = ``peak``; an all-zero signal is returned unchanged (float32)."""
    if not 0 < peak <= 1:
        raise ValueError(f"expected 0 < peak <= 1, got {peak}")
    x = np.asarray(x, dtype=np.float32)
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return x.copy() if m == 0 else (x * np.float32(peak / m)).astype(np.float32)


# --------------------------------------------------------------------------- files


def write_wav(path: str | Path | io.IOBase, x: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write a mono float signal (N,) in [-1, 1] to a WAV file or binary file object (values
    outside are clipped)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected a mono signal of shape (n_samples,), got {x.shape}")
    target = path if isinstance(path, io.IOBase) else str(path)
    sf.write(target, np.clip(x, -1.0, 1.0), int(sample_rate), subtype=subtype, format="WAV")


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 mono (N,) (channels averaged) and its sample rate."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return (x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]).astype(np.float32), int(sr)


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"expected {name} in [{lo}, {hi}], got {value}")
