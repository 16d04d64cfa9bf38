"""Real recordings from Debian packages: sonic-pi-samples (FLAC) and freepats (GUS patches).

The demo data is otherwise synthesised (espeak-ng, flite, fluidsynth); these two packages
add sounds that were recorded from real instruments and rooms, installed offline with
``apt-get install sonic-pi-samples freepats`` (``scripts/setup_env.sh`` does it):

- ``sonic-pi-samples``: 164 FLAC files in ``/usr/share/sonic-pi/samples`` — drum hits,
  tabla strokes, drum loops, ambiences, basses, electronic blips.
- ``freepats``: Gravis UltraSound patches (``.pat``) in ``/usr/share/midi/freepats`` —
  ``Tone_000/NNN_<name>.pat`` is General MIDI program NNN, multi-sampled recordings of
  the instrument with loop points; ``Drum_000/NNN_<name>.pat`` is GM drum key NNN.

A *source* is named ``"sonic-pi:<stem>"`` (e.g. ``sonic-pi:bd_808``) or
``"freepats:<Tone_000|Drum_000>/<stem>"`` (e.g. ``freepats:Tone_000/056_Trumpet``);
:func:`load_source` reads one, :func:`render_patch_note` plays a patch at a MIDI pitch.

The GUS patch reader follows the file layout of the GF1 patch format ("GF1PATCH110"):
a 129-byte file header, a 63-byte instrument header, a 47-byte layer header, then per
sample (wave) a 96-byte header followed by its data (8- or 16-bit, signed or unsigned,
little-endian). Only what playback needs is read: rate, key range, root frequency, loop
points and the data. The patches' volume envelopes, tremolo and vibrato are not
emulated: a note plays its sample from the start, loops the sustain region (forward or
ping-pong) while the note is held, and fades out over a fixed release. Why not timidity
(which plays .pat files): it would be one more Debian package and one more subprocess per
clip, and it adds its own reverb/chorus; reading the samples directly keeps the recordings
as recorded, deterministic and fast (numpy only). fluidsynth cannot load .pat files.
"""
from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from eval_suites.synthetic import synth

__all__ = [
    "SONIC_PI_DIR",
    "FREEPATS_DIR",
    "GusSample",
    "read_gus_patch",
    "render_patch_note",
    "midi_to_hz",
    "source_path",
    "source_group",
    "load_source",
    "pitch_shift",
    "available_sources",
    "check_installed",
]

SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
FREEPATS_DIR = Path("/usr/share/midi/freepats")

_GUS_MAGIC = (b"GF1PATCH110\0", b"GF1PATCH100\0")
_HEADER, _INSTRUMENT, _LAYER, _WAVE = 129, 63, 47, 96
_MODE_16BIT, _MODE_UNSIGNED, _MODE_LOOP, _MODE_PINGPONG = 1, 2, 4, 8


class RecordingsMissing(FileNotFoundError):
    """A Debian package of real recordings is not installed."""


def check_installed() -> None:
    """Raise :class:`RecordingsMissing` naming the package when a folder is missing."""
    for folder, package in ((SONIC_PI_DIR, "sonic-pi-samples"), (FREEPATS_DIR, "freepats")):
        if not folder.is_dir():
            raise RecordingsMissing(
                f"{folder} not found: the real recordings come from the Debian package "
                f"'{package}'; install it with `apt-get install {package}` "
                f"(scripts/setup_env.sh does)")


# --------------------------------------------------------------------------- GUS patches


@dataclass(frozen=True)
class GusSample:
    """One wave of a GUS patch: its data as float32 in [-1, 1) and what playback needs."""

    data: np.ndarray        # (n,) float32
    sample_rate: int        # Hz
    low_hz: float           # key range it is played for (inclusive)
    high_hz: float
    root_hz: float          # pitch of the recording
    loop_start: int         # in samples (not bytes)
    loop_end: int
    looping: bool
    pingpong: bool


def read_gus_patch(path: str | Path) -> list[GusSample]:
    """Read the waves of the first instrument/layer of a GUS ``.pat`` file.

    Frequencies in the file are in milli-Hz; loop points and data length in bytes.
    Raises ``ValueError`` naming the file on a bad magic, a truncated file or an
    empty patch.
    """
    path = Path(path)
    b = path.read_bytes()
    if len(b) < _HEADER + _INSTRUMENT + _LAYER or b[:12] not in _GUS_MAGIC:
        raise ValueError(f"{path}: not a GUS patch (expected the magic 'GF1PATCH110' and at "
                         f"least {_HEADER + _INSTRUMENT + _LAYER} bytes, got {b[:12]!r}, "
                         f"{len(b)} bytes)")
    n_waves = b[_HEADER + _INSTRUMENT + 6]
    off = _HEADER + _INSTRUMENT + _LAYER
    waves = []
    for i in range(n_waves):
        if off + _WAVE > len(b):
            raise ValueError(f"{path}: truncated at the header of wave {i} (offset {off})")
        h = b[off: off + _WAVE]
        length, loop_start, loop_end = struct.unpack_from("<III", h, 8)
        rate, = struct.unpack_from("<H", h, 20)
        low, high, root = struct.unpack_from("<III", h, 22)
        modes = h[55]
        raw = b[off + _WAVE: off + _WAVE + length]
        if len(raw) != length:
            raise ValueError(f"{path}: truncated data of wave {i} ({len(raw)} of {length} bytes)")
        width = 2 if modes & _MODE_16BIT else 1
        if modes & _MODE_UNSIGNED:
            ints = np.frombuffer(raw, "<u2" if width == 2 else "u1").astype(np.float32)
            ints -= 2 ** (8 * width - 1)
        else:
            ints = np.frombuffer(raw, "<i2" if width == 2 else "i1").astype(np.float32)
        data = ints / 2 ** (8 * width - 1)
        ls, le = loop_start // width, min(loop_end // width, len(data))
        looping = bool(modes & _MODE_LOOP) and le - ls >= 2
        waves.append(GusSample(data, int(rate), low / 1000.0, high / 1000.0, root / 1000.0,
                               ls, le, looping, bool(modes & _MODE_PINGPONG)))
        off += _WAVE + length
    if not waves or any(w.sample_rate <= 0 or w.root_hz <= 0 for w in waves):
        raise ValueError(f"{path}: no playable wave (waves: {n_waves})")
    return waves


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def _pick_wave(waves: list[GusSample], hz: float) -> GusSample:
    """The wave whose key range holds ``hz`` (else the one with the nearest root)."""
    for w in waves:
        if w.low_hz <= hz <= w.high_hz:
            return w
    return min(waves, key=lambda w: abs(np.log(hz / w.root_hz)))


def render_patch_note(waves: list[GusSample], pitch: float | None, duration: float,
                      sample_rate: int = 16000, release: float = 0.15,
                      max_seconds: float | None = None) -> np.ndarray:
    """Play one note of a patch: (N,) float32 at ``sample_rate``.

    ``pitch``: MIDI pitch (fractional allowed); ``None`` plays the wave for middle C at
    its recorded pitch (drum patches). The wave is read from its start at the step
    ``(f / root) * (rate / sample_rate)`` with linear interpolation. While the note is
    held (``duration`` seconds) a looping wave repeats its loop (ping-pong if the patch
    says so); then it fades out linearly over ``release`` seconds. A wave without a loop
    plays to its end. ``max_seconds`` caps the length.
    """
    hz = midi_to_hz(60 if pitch is None else pitch)
    w = _pick_wave(waves, hz)
    step = (1.0 if pitch is None else hz / w.root_hz) * w.sample_rate / sample_rate
    if w.looping:
        total = duration + release
    else:
        total = min(duration + release, len(w.data) / step / sample_rate)
    if max_seconds is not None:
        total = min(total, max_seconds)
    n = max(1, int(round(total * sample_rate)))
    pos = np.arange(n, dtype=np.float64) * step
    if w.looping:
        ls, le = w.loop_start, w.loop_end
        span = float(le - ls)
        past = pos >= le
        if w.pingpong:
            q = np.mod(pos[past] - ls, 2 * span)
            pos[past] = ls + np.where(q < span, q, 2 * span - q)
        else:
            pos[past] = ls + np.mod(pos[past] - ls, span)
    pos = np.minimum(pos, len(w.data) - 1)
    x = np.interp(pos, np.arange(len(w.data)), w.data).astype(np.float32)
    held = int(round(duration * sample_rate))
    if n > held:
        fade = np.linspace(1.0, 0.0, max(1, int(round(release * sample_rate))), dtype=np.float32)
        env = np.zeros(n - held, np.float32)
        k = min(len(fade), n - held)
        env[:k] = fade[:k]
        x[held:] *= env
    return x


# --------------------------------------------------------------------------- sources


def source_path(source: str) -> Path:
    """File of a source name; ``ValueError`` for a malformed name, ``RecordingsMissing``
    (naming the Debian package) when the file is absent."""
    kind, _, rest = source.partition(":")
    if kind == "sonic-pi" and rest and "/" not in rest:
        path, package = SONIC_PI_DIR / f"{rest}.flac", "sonic-pi-samples"
    elif kind == "freepats" and re.fullmatch(r"(Tone|Drum)_000/[\w.+-]+", rest):
        path, package = FREEPATS_DIR / f"{rest}.pat", "freepats"
    else:
        raise ValueError(f"source {source!r}: expected 'sonic-pi:<stem>' or "
                         f"'freepats:<Tone_000|Drum_000>/<stem>'")
    if not path.is_file():
        raise RecordingsMissing(f"{path} not found (source {source!r}); install the Debian "
                                f"package with `apt-get install {package}`")
    return path


def source_group(source: str) -> str:
    """The recording a source shares with its siblings: sonic-pi names that differ only
    by a trailing number or a ``_hard``/``_soft``/``_full`` suffix (``tabla_ghe1`` ..
    ``tabla_ghe8``, ``drum_tom_hi_hard``/``_soft``, ``loop_amen``/``loop_amen_full``)
    are one group; a freepats patch is its own group."""
    if not source.startswith("sonic-pi:"):
        return source
    stem = source.partition(":")[2]
    stem = re.sub(r"_(hard|soft|full)$", "", stem)
    return "sonic-pi:" + re.sub(r"\d+$", "", stem)


@functools.lru_cache(maxsize=512)
def _read_flac(path: str, sample_rate: int) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return synth.resample(x.mean(axis=1), sr, sample_rate)


@functools.lru_cache(maxsize=256)
def _read_patch(path: str) -> tuple[GusSample, ...]:
    return tuple(read_gus_patch(path))


def load_source(source: str, sample_rate: int = 16000) -> np.ndarray | list[GusSample]:
    """A sonic-pi recording as mono float32 at ``sample_rate`` (read with soundfile,
    resampled with soxr), or a freepats patch's waves (:func:`read_gus_patch`). Cached:
    do not modify the returned arrays."""
    path = source_path(source)
    if source.startswith("sonic-pi:"):
        return _read_flac(str(path), sample_rate)
    return list(_read_patch(str(path)))


def pitch_shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """Resample so that ``x`` plays ``semitones`` higher (and shorter), like a sampler."""
    if abs(semitones) < 1e-6:
        return np.asarray(x, np.float32).copy()
    import soxr

    ratio = 2.0 ** (semitones / 12.0)
    return np.asarray(soxr.resample(np.asarray(x, np.float32), 16000.0 * ratio, 16000.0,
                                    quality="HQ"), np.float32)


def available_sources() -> list[str]:
    """Every installed source name (sorted)."""
    out = [f"sonic-pi:{p.stem}" for p in SONIC_PI_DIR.glob("*.flac")]
    out += [f"freepats:{p.parent.name}/{p.stem}" for p in FREEPATS_DIR.glob("*_000/*.pat")]
    return sorted(out)
