"""Small deterministic HEAR tasks made from real synthesised audio (no downloads).

Three builders write complete task folders with :class:`eval_suites.hear_format.task.TaskWriter`:

- :func:`build_keyword_task`: scene, multiclass — spoken words (espeak-ng and flite
  voices, varied speed and pitch) in coloured noise at a random SNR; the test and valid
  speakers (voices) are disjoint from the training ones.
- :func:`build_event_task`: event, multilabel — spoken words, piano and trumpet notes and
  drum hits at random onsets in noise; labels are the sounds' audible spans in ms.
- :func:`build_instrument_task`: scene, multiclass — General MIDI instrument families
  rendered by fluidsynth at varied pitch and velocity; with :data:`NSYNTH_FAMILIES` and
  ``disjoint_programs=True`` it is NSynth's 11-family task with instruments (GM programs)
  disjoint across splits.
- :func:`build_speaker_task`: scene, multiclass — one class per voice (speaker
  identification, like LibriSpeech/VoxCeleb), with different sentences in each split.
- :func:`build_language_task`: scene, multiclass — one class per espeak-ng language
  (like VoxForge), with voice variants and sentences disjoint across splits.
- :func:`build_pitch_task`: scene, multiclass — the MIDI pitch of one note (like HEAR's
  nsynth_pitch), several instruments per split, scored with pitch and chroma accuracy.
- :func:`build_recording_task`: scene, multiclass — real recordings (sonic-pi-samples
  FLAC files, freepats GUS patches; :mod:`eval_suites.synthetic.recordings`), cropped, pitch-shifted
  and mixed into noise, with the source recordings disjoint across splits.

Same arguments give byte-identical wav files and labels: every random choice comes
from a ``numpy.random.Generator`` seeded by (seed, split, clip index), the engines are
deterministic (see :mod:`eval_suites.synthetic.synth`), and clips are written in a fixed order
whatever the number of worker threads. Engines run as subprocesses, so a thread pool
overlaps them without a process pool's start-up cost.

Sizes per split are an ``int`` (the same for train, valid and test) or a mapping
``{"train": n, "valid": n, "test": n}``; the count is per class, so labels are balanced
within each split. Builders take an optional ``progress`` callable, called with 1 after
each clip is written (e.g. ``tqdm.update``).

A builder returns the task folder ``<out_dir>/<name>-v1-full``. Calling it again with
the same arguments on a complete folder returns it untouched; an interrupted build
resumes where it stopped; other arguments on an existing folder raise unless
``overwrite=True``. ``written`` (optional): the caller's record of the files it wrote
(:mod:`hear_slicer.written`), through which every file of the task is written.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from eval_suites.synthetic import recordings, synth
from eval_suites.hear_format.task import (
    TaskMetadata,
    TaskWriter,
    load_task,
    task_is_complete,
)

if TYPE_CHECKING:  # the record a caller passes in (hear_slicer.written); not imported at run time
    from hear_slicer.written import WrittenFiles

__all__ = [
    "DEFAULT_WORDS",
    "DEFAULT_VOICES",
    "INSTRUMENT_FAMILIES",
    "EVENT_LABELS",
    "build_keyword_task",
    "build_event_task",
    "build_instrument_task",
    "build_speaker_task",
    "build_language_task",
    "build_pitch_task",
    "build_recording_task",
    "split_voices",
    "split_programs",
    "silent_notes",
    "NSYNTH_FAMILIES",
    "NSYNTH_PITCH_RANGES",
    "SplitSizes",
]

SR = 16000
SPLITS = ("train", "valid", "test")

DEFAULT_WORDS = ("yes", "no", "up", "down")
# Ordered so that split_voices() gives each split both engines: the last two voices
# become the test speakers, the two before them the valid speakers.
DEFAULT_VOICES = (
    "espeak:en-us+m1", "flite:kal16", "espeak:en-gb+f2", "flite:slt",
    "espeak:en+m3", "espeak:en-us+f4", "espeak:en-gb-scotland+m2", "espeak:en+f1",
    "espeak:en-029+m4", "flite:awb", "espeak:en-gb-x-rp+f3", "flite:rms",
)

# label -> General MIDI programs of the family (fluidsynth FluidR3_GM).
INSTRUMENT_FAMILIES: dict[str, tuple[int, ...]] = {
    "piano": (0, 1, 2),
    "guitar": (24, 25, 26),
    "strings": (40, 41, 42),
    "brass": (56, 57, 61),  # not 58 (tuba): FluidR3 has no tuba samples above ~73
    "flute": (73, 74, 75),
}
# Playable MIDI pitch range per family.
_FAMILY_PITCH = {"piano": (48, 84), "guitar": (45, 76), "strings": (55, 84),
                 "brass": (52, 79), "flute": (60, 90)}

# NSynth's 11 instrument families -> General MIDI programs (FluidR3_GM). The order
# matters: split_programs() gives the last program to test and the one before it to
# valid. Every (program, pitch) pair in NSYNTH_PITCH_RANGES was rendered and is audible
# (tests/test_demo_tasks.py re-checks the ends of each range); dropped for silence in
# FluidR3: 43 contrabass above MIDI 57, 67 baritone sax above 72. Piano (0) and trumpet
# (56) are test programs because build_event_task uses them in its test split too.
NSYNTH_FAMILIES: dict[str, tuple[int, ...]] = {
    "bass": (32, 34, 35, 36, 37, 38, 39, 33),
    "brass": (57, 58, 60, 61, 62, 63, 59, 56),
    "flute": (72, 74, 75, 76, 77, 78, 79, 73),
    "guitar": (24, 26, 27, 28, 29, 30, 25),
    "keyboard": (1, 2, 3, 5, 6, 7, 4, 0),
    "mallet": (8, 9, 10, 11, 13, 12),
    "organ": (16, 17, 18, 20, 19),
    "reed": (64, 65, 66, 68, 69, 70, 71),
    "string": (41, 42, 44, 45, 46, 48, 49, 50, 40),
    "synth_lead": (80, 82, 83, 84, 86, 87, 81),
    "vocal": (53, 85, 54, 52),
}
NSYNTH_PITCH_RANGES: dict[str, tuple[int, int]] = {
    "bass": (28, 55), "brass": (48, 72), "flute": (60, 84), "guitar": (40, 76),
    "keyboard": (36, 84), "mallet": (60, 84), "organ": (36, 84), "reed": (50, 72),
    "string": (48, 76), "synth_lead": (48, 84), "vocal": (48, 76),
}
"""Inclusive MIDI pitch range each family is played in (checked audible for every program)."""

EVENT_LABELS = ("drums", "piano", "speech", "trumpet")
_EVENT_WORDS = ("hello", "seven", "stop", "music", "window", "yellow")


# --------------------------------------------------------------------------- helpers


def split_voices(voices: Sequence[str]) -> dict[str, list[str]]:
    """Disjoint speakers per split: the last ``max(1, n // 5)`` voices are test, the
    ones before them valid, the rest train. With fewer than 3 voices every split shares
    them all (and the task notes say so)."""
    v = list(voices)
    if len(v) < 3:
        return {s: v for s in SPLITS}
    k = max(1, len(v) // 5)
    return {"train": v[: len(v) - 2 * k], "valid": v[len(v) - 2 * k: len(v) - k],
            "test": v[len(v) - k:]}


SplitSizes = Union[int, Mapping[str, int]]
"""Clips per class: one count for every split, or ``{"train": n, "valid": n, "test": n}``."""


def _per_split(sizes: SplitSizes, what: str) -> dict[str, int]:
    """``{"train": n, "valid": n, "test": n}`` from an int or a mapping; each n >= 1."""
    if isinstance(sizes, int) and not isinstance(sizes, bool):
        out = {s: sizes for s in SPLITS}
    elif isinstance(sizes, Mapping) and set(sizes) == set(SPLITS):
        out = {s: sizes[s] for s in SPLITS}
    else:
        raise ValueError(f"expected {what} as an int or a mapping with keys {SPLITS}, got {sizes!r}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in out.values()):
        raise ValueError(f"expected {what} >= 1 in every split, got {sizes!r}")
    return out


def _speak(voice: str, text: str, rng: np.random.Generator,
           speed: tuple[int, int] = (130, 221), pitch: tuple[int, int] = (25, 76),
           stretch: tuple[float, float] = (0.85, 1.25)) -> np.ndarray:
    """Speak ``text`` with an "engine:voice" voice at a random speed and pitch.

    espeak-ng: words per minute in [speed[0], speed[1]) and base pitch in
    [pitch[0], pitch[1]); flite: ``duration_stretch`` uniform in ``stretch``.
    """
    engine, _, name = voice.partition(":")
    if engine == "espeak":
        return synth.espeak(text, voice=name, speed=int(rng.integers(*speed)),
                            pitch=int(rng.integers(*pitch)), sample_rate=SR)
    if engine == "flite":
        return synth.flite(text, voice=name, sample_rate=SR,
                           duration_stretch=float(np.round(rng.uniform(*stretch), 3)))
    raise ValueError(f"voice {voice!r}: expected 'espeak:<voice>' or 'flite:<voice>'")


def _speech_clip(voice: str, text: str, n_total: int, rng: np.random.Generator,
                 snr_db: tuple[float, float], peak: float | tuple[float, float] = 0.9,
                 **speak_kw: Any) -> np.ndarray:
    """(n_total,) clip: ``text`` spoken by ``voice``, silence-trimmed (cut if too long),
    at a random offset, in coloured noise at a random SNR, scaled to ``peak`` (a range
    draws a random gain)."""
    speech = _trim(_speak(voice, text, rng, **speak_kw))[:n_total]
    x = np.zeros(n_total, np.float32)
    offset = int(rng.integers(0, n_total - len(speech) + 1))
    x[offset: offset + len(speech)] = synth.normalize_peak(speech, 0.8)
    x = _add_noise(x, rng, snr_db)
    if not isinstance(peak, (int, float)):
        peak = float(rng.uniform(*peak))
    return synth.normalize_peak(x, peak)


def split_programs(programs: Sequence[int]) -> dict[str, list[int]]:
    """Disjoint instruments per split: the last program is test, the one before it
    valid, the rest train (needs at least 3 programs)."""
    p = list(programs)
    if len(p) < 3 or len(set(p)) != len(p):
        raise ValueError(f"expected at least 3 distinct programs to split, got {p}")
    return {"train": p[:-2], "valid": [p[-2]], "test": [p[-1]]}


def silent_notes(programs: Sequence[int], pitches: Sequence[int], min_peak: float = 0.01,
                 velocity: int = 100) -> list[tuple[int, int]]:
    """(program, pitch) pairs that FluidR3_GM renders (nearly) silent: peak < ``min_peak``.

    Each pair is played as one 0.4 s note (all in one fluidsynth run); a soundfont
    without a sample zone for a key renders silence there.
    """
    pairs = [(int(p), int(k)) for p in programs for k in pitches]
    clips = [[synth.Note(p, k, velocity, 0.0, 0.4)] for p, k in pairs]
    audio = synth.fluidsynth_render_many(clips, 0.5, SR, gap=1.0)
    return [pair for pair, x in zip(pairs, audio) if float(np.abs(x).max()) < min_peak]


def _active_span(x: np.ndarray, threshold_db: float = -40.0, frame: int = 160
                 ) -> tuple[int, int]:
    """(first, last+1) sample of the frames whose RMS is within ``threshold_db`` of the
    loudest frame (10 ms frames at 16 kHz); (0, 0) for silence."""
    n = len(x) // frame
    if n == 0:
        return 0, 0
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    peak = rms.max()
    if peak <= 0:
        return 0, 0
    on = np.flatnonzero(rms >= peak * 10 ** (threshold_db / 20))
    return int(on[0] * frame), int(min((on[-1] + 1) * frame, len(x)))


def _trim(x: np.ndarray) -> np.ndarray:
    a, b = _active_span(x)
    return x[a:b] if b > a else x


def _add_noise(x: np.ndarray, rng: np.random.Generator, snr_range: tuple[float, float]
               ) -> np.ndarray:
    kind = str(rng.choice(["white", "pink", "brown"]))
    snr = float(rng.uniform(*snr_range))
    return synth.mix_at_snr(x, synth.noise(kind, len(x), rng), snr)


def _map(fn: Callable[[Any], Any], items: list, workers: int | None) -> Iterator[Any]:
    """``fn(i) for i in items`` on a thread pool; results yielded in input order as they
    are ready (engines are subprocesses, so threads overlap them)."""
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or len(items) <= 1:
        yield from (fn(i) for i in items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, items)


def _render_notes(note_lists: list[list[synth.Note]], duration: float, workers: int | None,
                  batch: int = 24) -> Iterator[np.ndarray]:
    """fluidsynth renders of ``note_lists`` (one (N,) clip each, in order), in batches of
    ``batch`` clips per fluidsynth run, runs spread over ``workers`` threads."""
    batches = [note_lists[i: i + batch] for i in range(0, len(note_lists), batch)]
    for audio in _map(lambda b: synth.fluidsynth_render_many(b, duration, SR), batches, workers):
        yield from audio


def _open_writer(out_dir: str | Path, metadata: TaskMetadata, overwrite: bool, written: WrittenFiles | None = None
                 ) -> tuple[Path, TaskWriter | None]:
    """(task folder, writer) — writer None when the same task is already complete. ``written``:
    the builder's record of its files (:class:`TaskWriter`'s ``written``)."""
    task_dir = Path(out_dir) / metadata.folder_name
    if task_is_complete(task_dir) and not overwrite:
        existing = load_task(task_dir).metadata
        if existing.to_dict() == metadata.to_dict():
            return task_dir, None
        raise FileExistsError(
            f"{task_dir} holds a task built with other arguments "
            f"({existing.notes.get('build_args')}); pass overwrite=True to rebuild it"
        )
    return task_dir, TaskWriter(task_dir, metadata, sample_rate=SR, overwrite=overwrite, written=written)


@dataclass(frozen=True)
class _Clip:
    split: str
    name: str
    labels: list
    seed: tuple[int, ...]


Progress = Optional[Callable[[int], Any]]


def _write(writer: TaskWriter, clips: list[_Clip], render: Callable[[_Clip], np.ndarray],
           workers: int | None, progress: Progress = None) -> Path:
    """Render the clips ``writer`` lacks (thread pool) and add them in order; finalize."""
    if progress is not None:
        progress(len(clips) - sum(not writer.has_clip(c.split, c.name) for c in clips))
    todo = [c for c in clips if not writer.has_clip(c.split, c.name)]
    for clip, x in zip(todo, _map(render, todo, workers)):
        writer.add_clip(clip.split, clip.name, x, SR, clip.labels)
        if progress is not None:
            progress(1)
    return writer.finalize()


# --------------------------------------------------------------------------- keywords


def build_keyword_task(
    out_dir: str | Path,
    words: Sequence[str] = DEFAULT_WORDS,
    voices: Sequence[str] = DEFAULT_VOICES,
    clips_per_word_per_split: SplitSizes = 3,
    seed: int = 0,
    sample_duration: float = 1.0,
    name: str = "demo-keywords",
    snr_db: tuple[float, float] = (5.0, 25.0),
    workers: int | None = None,
    overwrite: bool = False,
    written: WrittenFiles | None = None,
    progress: Progress = None,
) -> Path:
    """Keyword spotting, like Speech Commands: one spoken word per clip.

    Each clip: a word spoken by one voice of its split (``"espeak:<voice>[+variant]"`` or
    ``"flite:<voice>"``) at a random speed and pitch, silence-trimmed (cut if longer
    than the clip), placed at a random offset in a ``sample_duration`` s clip, in
    white/pink/brown noise at an SNR drawn from ``snr_db``. Labels are the words; every
    split has ``clips_per_word_per_split`` clips of each word (balanced; an int or a
    per-split mapping). Voices are split by :func:`split_voices`.
    """
    if len(words) < 2 or len(set(words)) != len(words):
        raise ValueError(f"expected at least 2 distinct words, got {list(words)}")
    per_split = _per_split(clips_per_word_per_split, "clips_per_word_per_split")
    by_split = split_voices(voices)
    for v in voices:  # fail early, with the engine's message, on a bad voice
        _speak(v, "test", np.random.default_rng(0))
    args = dict(words=list(words), voices=list(voices), seed=seed,
                clips_per_word_per_split=_jsonable(clips_per_word_per_split),
                sample_duration=sample_duration, snr_db=list(snr_db))
    metadata = TaskMetadata.scene(
        name, sample_duration=sample_duration, evaluation=["top1_acc", "mAP"],
        notes={"builder": "eval_suites.synthetic.demo_tasks.build_keyword_task", "build_args": args,
               "voices_by_split": by_split,
               "speakers_disjoint": len(voices) >= 3,
               "source": "espeak-ng / flite speech in synthetic noise"},
    )
    task_dir, writer = _open_writer(out_dir, metadata, overwrite, written)
    if writer is None:
        return task_dir
    clips = []
    for si, split in enumerate(SPLITS):
        for wi, word in enumerate(words):
            for k in range(per_split[split]):
                clips.append(_Clip(split, f"{split}-{word}-{k:03d}.wav", [word], (seed, si, wi, k)))
    n_total = int(round(sample_duration * SR))

    def render(c: _Clip) -> np.ndarray:
        rng = np.random.default_rng(c.seed)
        split_vs = by_split[c.split]
        voice = split_vs[(c.seed[2] + c.seed[3]) % len(split_vs)]
        return _speech_clip(voice, c.labels[0], n_total, rng, snr_db, peak=0.9)

    return _write(writer, clips, render, workers, progress)


# --------------------------------------------------------------------------- instruments


def build_instrument_task(
    out_dir: str | Path,
    families: Sequence[str] = ("piano", "guitar", "strings", "brass"),
    clips_per_class_per_split: SplitSizes = 3,
    seed: int = 0,
    sample_duration: float = 1.0,
    name: str = "demo-instruments",
    snr_db: tuple[float, float] = (20.0, 40.0),
    overwrite: bool = False,
    written: WrittenFiles | None = None,
    family_programs: Mapping[str, Sequence[int]] | None = None,
    pitch_ranges: Mapping[str, tuple[int, int]] | None = None,
    disjoint_programs: bool = False,
    workers: int | None = None,
    progress: Progress = None,
) -> Path:
    """Instrument family recognition, like NSynth's: one family per clip.

    Each clip: one to three notes (sequential, random pitch in the family's range,
    velocity 50-120, random GM program of the family) rendered by fluidsynth, in light
    noise. Programs and pitch ranges come from ``family_programs`` and ``pitch_ranges``
    (default :data:`INSTRUMENT_FAMILIES` and its ranges; pass :data:`NSYNTH_FAMILIES`
    and :data:`NSYNTH_PITCH_RANGES` for NSynth's 11 families). With
    ``disjoint_programs`` each split plays its own programs (:func:`split_programs`),
    as NSynth's splits hold different instruments. Clips are rendered in batches of
    one fluidsynth run each (:func:`eval_suites.synthetic.synth.fluidsynth_render_many`).
    """
    if family_programs is None:
        family_programs, pitch_ranges = INSTRUMENT_FAMILIES, pitch_ranges or _FAMILY_PITCH
    unknown = [f for f in families if f not in family_programs
               or f not in (pitch_ranges or {})]
    if unknown or len(families) < 2 or len(set(families)) != len(families):
        raise ValueError(f"expected at least 2 distinct families among those with programs "
                         f"and pitch ranges {sorted(family_programs)}, got {list(families)}")
    per_split = _per_split(clips_per_class_per_split, "clips_per_class_per_split")
    programs = {f: ({s: [int(p) for p in family_programs[f]] for s in SPLITS}
                    if not disjoint_programs else split_programs(family_programs[f]))
                for f in families}
    args = dict(families=list(families),
                clips_per_class_per_split=_jsonable(clips_per_class_per_split),
                seed=seed, sample_duration=sample_duration, snr_db=list(snr_db))
    if family_programs is not INSTRUMENT_FAMILIES or disjoint_programs:
        args.update(pitch_ranges={f: list(pitch_ranges[f]) for f in families},
                    disjoint_programs=disjoint_programs)
    notes_meta = {"builder": "eval_suites.synthetic.demo_tasks.build_instrument_task", "build_args": args,
                  "source": "fluidsynth + FluidR3_GM.sf2 General MIDI instruments",
                  "programs": {f: [int(p) for p in family_programs[f]] for f in families}}
    if disjoint_programs:
        notes_meta["programs_by_split"] = {s: {f: programs[f][s] for f in families} for s in SPLITS}
    metadata = TaskMetadata.scene(name, sample_duration=sample_duration,
                                  evaluation=["top1_acc", "mAP"], notes=notes_meta)
    task_dir, writer = _open_writer(out_dir, metadata, overwrite, written)
    if writer is None:
        return task_dir
    clips, notes = [], []
    for si, split in enumerate(SPLITS):
        for fi, fam in enumerate(families):
            for k in range(per_split[split]):
                c = _Clip(split, f"{split}-{fam}-{k:03d}.wav", [fam], (seed, si, fi, k))
                rng = np.random.default_rng(c.seed)
                program = int(rng.choice(programs[fam][split]))
                lo, hi = pitch_ranges[fam]
                n_notes = int(rng.integers(1, 4))
                t, clip_notes = float(rng.uniform(0.0, 0.1)), []
                for _ in range(n_notes):
                    dur = float(rng.uniform(0.25, 0.8)) * sample_duration / n_notes * 1.5
                    clip_notes.append(synth.Note(program, int(rng.integers(lo, hi + 1)),
                                                 int(rng.integers(50, 121)), round(t, 3),
                                                 round(dur, 3)))
                    t += dur * 0.8
                clips.append(c)
                notes.append(clip_notes)
    return _write_rendered(writer, clips, notes, sample_duration, snr_db, workers, progress)


def _write_rendered(writer: TaskWriter, clips: list[_Clip], notes: list[list[synth.Note]],
                    duration: float, snr_db: tuple[float, float], workers: int | None,
                    progress: Progress, peak: float | tuple[float, float] = 0.9) -> Path:
    """Render ``notes[i]`` for each clip the writer lacks, add light noise, write, finalize."""
    if progress is not None:
        progress(sum(writer.has_clip(c.split, c.name) for c in clips))
    todo = [i for i, c in enumerate(clips) if not writer.has_clip(c.split, c.name)]
    for i, x in zip(todo, _render_notes([notes[i] for i in todo], duration, workers)):
        rng = np.random.default_rng(clips[i].seed + (1,))
        if float(np.abs(x).max()) < 1e-3:
            raise RuntimeError(f"fluidsynth rendered silence for {clips[i].name}: {notes[i]}; "
                               f"the soundfont has no sample there, choose another program "
                               f"or pitch range (see silent_notes())")
        x = _add_noise(x, rng, snr_db)
        gain = peak if isinstance(peak, (int, float)) else float(rng.uniform(*peak))
        writer.add_clip(clips[i].split, clips[i].name, synth.normalize_peak(x, gain), SR,
                        clips[i].labels)
        if progress is not None:
            progress(1)
    return writer.finalize()


# --------------------------------------------------------------------------- speakers


def _check_sentences(sentences: Mapping[str, Sequence[str]], what: str) -> dict[str, list[str]]:
    """Per-split sentence lists: keys train/valid/test, non-empty, disjoint across splits."""
    if not isinstance(sentences, Mapping) or set(sentences) != set(SPLITS):
        raise ValueError(f"expected {what} as a mapping with keys {SPLITS}, got {sentences!r}")
    out = {s: [str(t) for t in sentences[s]] for s in SPLITS}
    problems = [f"split {s!r} has no sentences" for s in SPLITS if not out[s]]
    problems += [f"splits {a!r} and {b!r} share sentences {sorted(set(out[a]) & set(out[b]))}"
                 for i, a in enumerate(SPLITS) for b in SPLITS[i + 1:] if set(out[a]) & set(out[b])]
    if problems:
        raise ValueError(f"{what}: " + "; ".join(problems))
    return out


def build_speaker_task(
    out_dir: str | Path,
    voices: Sequence[str],
    sentences: Mapping[str, Sequence[str]],
    clips_per_speaker_per_split: SplitSizes = 3,
    seed: int = 0,
    sample_duration: float = 3.0,
    name: str = "demo-speakers",
    snr_db: tuple[float, float] = (10.0, 30.0),
    workers: int | None = None,
    overwrite: bool = False,
    written: WrittenFiles | None = None,
    progress: Progress = None,
) -> Path:
    """Speaker identification, like LibriSpeech/VoxCeleb: one class per voice.

    Labels are the voices themselves (``"espeak:en-us+m3"``, ``"flite:slt"``). Each clip:
    a sentence of its split (``sentences["train"]`` etc., disjoint across splits, so
    the text never gives the speaker away) spoken by the class's voice at a random
    speed and a small pitch jitter (espeak-ng pitch 40-60, flite stretch 0.9-1.15),
    placed at a random offset, in noise at a random SNR and a random gain (peak
    0.3-0.95). Sentences rotate with the clip index, so each speaker says each sentence
    of its split about equally often.
    """
    if len(voices) < 2 or len(set(voices)) != len(voices):
        raise ValueError(f"expected at least 2 distinct voices, got {list(voices)}")
    texts = _check_sentences(sentences, "sentences")
    per_split = _per_split(clips_per_speaker_per_split, "clips_per_speaker_per_split")
    for v in voices:  # fail early, with the engine's message, on a bad voice
        _speak(v, "test", np.random.default_rng(0))
    args = dict(voices=list(voices), sentences=texts, seed=seed,
                clips_per_speaker_per_split=_jsonable(clips_per_speaker_per_split),
                sample_duration=sample_duration, snr_db=list(snr_db))
    metadata = TaskMetadata.scene(
        name, sample_duration=sample_duration, evaluation=["top1_acc", "mAP"],
        notes={"builder": "eval_suites.synthetic.demo_tasks.build_speaker_task", "build_args": args,
               "source": "espeak-ng / flite speech in synthetic noise",
               "sentences_disjoint": True},
    )
    task_dir, writer = _open_writer(out_dir, metadata, overwrite, written)
    if writer is None:
        return task_dir
    clips = [_Clip(split, f"{split}-spk{vi:02d}-{k:03d}.wav", [voice], (seed, si, vi, k))
             for si, split in enumerate(SPLITS) for vi, voice in enumerate(voices)
             for k in range(per_split[split])]
    n_total = int(round(sample_duration * SR))

    def render(c: _Clip) -> np.ndarray:
        rng = np.random.default_rng(c.seed)
        split_texts = texts[c.split]
        text = split_texts[(c.seed[3] + c.seed[2]) % len(split_texts)]
        return _speech_clip(c.labels[0], text, n_total, rng, snr_db, peak=(0.3, 0.95),
                            speed=(140, 201), pitch=(40, 61), stretch=(0.9, 1.15))

    return _write(writer, clips, render, workers, progress)


# --------------------------------------------------------------------------- languages


def build_language_task(
    out_dir: str | Path,
    sentences: Mapping[str, Mapping[str, Sequence[str]]],
    variants: Mapping[str, Sequence[str]],
    clips_per_language_per_split: SplitSizes = 3,
    seed: int = 0,
    sample_duration: float = 3.0,
    name: str = "demo-languages",
    snr_db: tuple[float, float] = (10.0, 30.0),
    workers: int | None = None,
    overwrite: bool = False,
    written: WrittenFiles | None = None,
    progress: Progress = None,
) -> Path:
    """Spoken language identification, like VoxForge: one class per espeak-ng language.

    Args:
        sentences: ``{language: {"train": [...], "valid": [...], "test": [...]}}``, e.g.
            ``{"de": {...}}``; the language codes are espeak-ng voices and the labels.
        variants: espeak-ng voice variants per split (``{"train": ["m1", ...], ...}``),
            disjoint across splits: test speakers are never heard in training.

    Each clip: a sentence of its language and split, spoken by ``<language>+<variant>``
    (the variant rotating with the clip index) at a random speed and pitch, at a random
    offset, in noise at a random SNR and gain.
    """
    if len(sentences) < 2:
        raise ValueError(f"expected at least 2 languages, got {list(sentences)}")
    texts = {lang: _check_sentences(sentences[lang], f"sentences[{lang!r}]") for lang in sentences}
    if not isinstance(variants, Mapping) or set(variants) != set(SPLITS) or not all(variants.values()):
        raise ValueError(f"expected variants as a mapping {SPLITS} -> non-empty lists, got {variants!r}")
    vs = {s: list(variants[s]) for s in SPLITS}
    shared = {(a, b): set(vs[a]) & set(vs[b]) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1:]}
    if any(shared.values()):
        raise ValueError(f"voice variants must be disjoint across splits, shared: "
                         f"{ {f'{a}/{b}': sorted(x) for (a, b), x in shared.items() if x} }")
    langs = list(texts)
    for lang in langs:
        for s in SPLITS:
            for v in vs[s]:
                synth._check_espeak_voice(f"{lang}+{v}")  # ValueError naming the bad one
    per_split = _per_split(clips_per_language_per_split, "clips_per_language_per_split")
    args = dict(sentences=texts, variants=vs, seed=seed,
                clips_per_language_per_split=_jsonable(clips_per_language_per_split),
                sample_duration=sample_duration, snr_db=list(snr_db))
    metadata = TaskMetadata.scene(
        name, sample_duration=sample_duration, evaluation=["top1_acc", "mAP"],
        notes={"builder": "eval_suites.synthetic.demo_tasks.build_language_task", "build_args": args,
               "source": "espeak-ng speech in synthetic noise",
               "speakers_disjoint": True, "sentences_disjoint": True},
    )
    task_dir, writer = _open_writer(out_dir, metadata, overwrite, written)
    if writer is None:
        return task_dir
    clips = [_Clip(split, f"{split}-{lang}-{k:03d}.wav", [lang], (seed, si, li, k))
             for si, split in enumerate(SPLITS) for li, lang in enumerate(langs)
             for k in range(per_split[split])]
    n_total = int(round(sample_duration * SR))

    def render(c: _Clip) -> np.ndarray:
        rng = np.random.default_rng(c.seed)
        lang, k = c.labels[0], c.seed[3]
        split_texts, split_vs = texts[lang][c.split], vs[c.split]
        voice = f"espeak:{lang}+{split_vs[k % len(split_vs)]}"
        text = split_texts[(k // len(split_vs) + k) % len(split_texts)]
        return _speech_clip(voice, text, n_total, rng, snr_db, peak=(0.3, 0.95))

    return _write(writer, clips, render, workers, progress)


# --------------------------------------------------------------------------- pitch


def build_pitch_task(
    out_dir: str | Path,
    programs: Mapping[str, Sequence[int]],
    pitches: Sequence[int] = tuple(range(48, 72)),
    clips_per_pitch_per_split: SplitSizes = 2,
    seed: int = 0,
    sample_duration: float = 1.0,
    name: str = "demo-pitch",
    snr_db: tuple[float, float] = (20.0, 40.0),
    workers: int | None = None,
    overwrite: bool = False,
    written: WrittenFiles | None = None,
    progress: Progress = None,
) -> Path:
    """Pitch estimation, like HEAR's nsynth_pitch: the MIDI pitch of one note.

    ``programs`` gives the GM programs each split plays (``{"train": [...], ...}``; use
    disjoint ones so test instruments are unseen). Each clip: one note of its pitch
    (label ``str(pitch)``), a random program of its split, velocity 40-127, starting at
    0-100 ms and held 0.4-0.9 s, in light noise, at a random gain. Scored with
    ``pitch_acc`` and ``chroma_acc``: heareval's chroma accuracy compares label indices
    modulo 12, so the pitches must be consecutive semitones whose labels sort as the
    numbers do (two digits, 10-99).
    """
    ps = [int(p) for p in pitches]
    if len(ps) < 2 or ps != list(range(ps[0], ps[0] + len(ps))) or ps[0] < 10 or ps[-1] > 99:
        raise ValueError(f"expected at least 2 consecutive MIDI pitches within 10-99 (their "
                         f"labels must sort as numbers for chroma_acc), got {ps}")
    if not isinstance(programs, Mapping) or set(programs) != set(SPLITS) or not all(programs.values()):
        raise ValueError(f"expected programs as a mapping {SPLITS} -> non-empty lists of GM "
                         f"programs, got {programs!r}")
    progs = {s: [int(p) for p in programs[s]] for s in SPLITS}
    per_split = _per_split(clips_per_pitch_per_split, "clips_per_pitch_per_split")
    args = dict(programs=progs, pitches=ps, seed=seed,
                clips_per_pitch_per_split=_jsonable(clips_per_pitch_per_split),
                sample_duration=sample_duration, snr_db=list(snr_db))
    metadata = TaskMetadata.scene(
        name, sample_duration=sample_duration, evaluation=["pitch_acc", "chroma_acc"],
        notes={"builder": "eval_suites.synthetic.demo_tasks.build_pitch_task", "build_args": args,
               "source": "fluidsynth + FluidR3_GM.sf2 General MIDI instruments"},
    )
    task_dir, writer = _open_writer(out_dir, metadata, overwrite, written)
    if writer is None:
        return task_dir
    clips, notes = [], []
    for si, split in enumerate(SPLITS):
        for pi, pitch in enumerate(ps):
            for k in range(per_split[split]):
                c = _Clip(split, f"{split}-p{pitch}-{k:03d}.wav", [str(pitch)], (seed, si, pi, k))
                rng = np.random.default_rng(c.seed)
                program = int(progs[split][(k + pi) % len(progs[split])])
                clips.append(c)
                notes.append([synth.Note(program, pitch, int(rng.integers(40, 128)),
                                         round(float(rng.uniform(0.0, 0.1)), 3),
                                         round(float(rng.uniform(0.4, 0.9)), 3))])
    return _write_rendered(writer, clips, notes, sample_duration, snr_db, workers, progress,
                           peak=(0.3, 0.95))


# --------------------------------------------------------------------------- events


def _event_sounds(label: str, n: int, seed: int) -> list[np.ndarray]:
    """``n`` silence-trimmed variants of one event label (16 kHz, each <= 1.2 s)."""
    rng = np.random.default_rng([seed, EVENT_LABELS.index(label)])
    if label == "speech":
        voices = [v for v in DEFAULT_VOICES if v.startswith("espeak:")]
        return [_trim(_speak(voices[i % len(voices)], _EVENT_WORDS[i % len(_EVENT_WORDS)], rng))
                for i in range(n)]
    clips = []
    for _ in range(n):
        if label == "drums":  # a short pattern of kick (36), snare (38), hi-hat (42)
            hits = int(rng.integers(2, 5))
            clips.append([synth.Note(0, int(rng.choice([36, 38, 42])), int(rng.integers(70, 127)),
                                     0.13 * h, 0.1, channel=9) for h in range(hits)])
        else:
            program, (lo, hi) = (0, (48, 84)) if label == "piano" else (56, (55, 79))
            dur = float(np.round(rng.uniform(0.3, 0.8), 3))
            clips.append([synth.Note(program, int(rng.integers(lo, hi + 1)),
                                     int(rng.integers(70, 121)), 0.0, dur)])
    return [_trim(x) for x in synth.fluidsynth_render_many(clips, 1.2, SR)]


def build_event_task(
    out_dir: str | Path,
    n_clips_per_split: SplitSizes = 4,
    clip_seconds: float = 4.0,
    seed: int = 0,
    name: str = "demo-events",
    events_per_clip: tuple[int, int] = (2, 3),
    snr_db: tuple[float, float] = (10.0, 25.0),
    overwrite: bool = False,
    written: WrittenFiles | None = None,
    progress: Progress = None,
) -> Path:
    """Sound event detection, like DCASE 2016 task 2: events with onsets and offsets.

    Each clip holds ``events_per_clip`` (inclusive range) non-overlapping events drawn
    from :data:`EVENT_LABELS` — espeak-ng words, fluidsynth piano and trumpet notes,
    drum patterns — one per equal slot of the clip at a random position in it (a sound
    longer than its slot is cut), over noise at a random SNR. Speech events use the
    espeak-ng voices of :data:`DEFAULT_VOICES` in every split. An event's label spans
    the audible part of its sound (frames within 40 dB of its loudest 10 ms frame), in
    ms relative to the clip.
    """
    lo_ev, hi_ev = events_per_clip
    if not 1 <= lo_ev <= hi_ev or clip_seconds < 1.0 * hi_ev:
        raise ValueError(f"expected 1 <= events_per_clip[0] <= events_per_clip[1] and "
                         f"clip_seconds >= 1 s per event, got {events_per_clip}, {clip_seconds}")
    per_split = _per_split(n_clips_per_split, "n_clips_per_split")
    args = dict(n_clips_per_split=_jsonable(n_clips_per_split), clip_seconds=clip_seconds, seed=seed,
                events_per_clip=list(events_per_clip), snr_db=list(snr_db))
    metadata = TaskMetadata.event(
        name, sample_duration=clip_seconds,
        evaluation=["event_onset_200ms_fms", "segment_1s_er"],
        notes={"builder": "eval_suites.synthetic.demo_tasks.build_event_task", "build_args": args,
               "source": "espeak-ng words, fluidsynth piano/trumpet/drums, synthetic noise"},
    )
    task_dir, writer = _open_writer(out_dir, metadata, overwrite, written)
    if writer is None:
        return task_dir
    n_variants = max(4, *per_split.values())
    sounds = {lbl: _event_sounds(lbl, n_variants, seed) for lbl in EVENT_LABELS}
    n_total = int(round(clip_seconds * SR))
    for si, split in enumerate(SPLITS):
        for k in range(per_split[split]):
            name_k = f"{split}-{k:03d}.wav"
            if progress is not None:
                progress(1)
            if writer.has_clip(split, name_k):
                continue
            rng = np.random.default_rng([seed, si, k, 7])
            n_ev = int(rng.integers(lo_ev, hi_ev + 1))
            slot = n_total // n_ev
            x = np.zeros(n_total, np.float32)
            events = []
            # Labels cycle so that every split sees every label when it has enough events.
            first = int(rng.integers(len(EVENT_LABELS)))
            for e in range(n_ev):
                label = EVENT_LABELS[(first + e + k) % len(EVENT_LABELS)]
                s = sounds[label][int(rng.integers(n_variants))][:slot]
                s = synth.normalize_peak(s, float(rng.uniform(0.4, 0.9)))
                start = e * slot + int(rng.integers(0, slot - len(s) + 1))
                x[start: start + len(s)] += s
                a, b = _active_span(s)
                events.append({"label": label, "start": round(1000.0 * (start + a) / SR, 1),
                               "end": round(1000.0 * (start + b) / SR, 1)})
            x = synth.normalize_peak(_add_noise(x, rng, snr_db), 0.9)
            writer.add_clip(split, name_k, x, SR, events)
    return writer.finalize()


def _jsonable(sizes: SplitSizes) -> int | dict[str, int]:
    """A split size as it is recorded in the task notes (JSON)."""
    return sizes if isinstance(sizes, int) else {k: int(sizes[k]) for k in SPLITS}


# --------------------------------------------------------------------------- real recordings


def _edge_fade(x: np.ndarray, ms: float = 5.0) -> np.ndarray:
    """``x`` with linear 5 ms fades at both ends (no click where a crop cuts)."""
    k = min(len(x) // 2, int(SR * ms / 1000))
    if k > 0:
        ramp = np.linspace(0.0, 1.0, k, dtype=np.float32)
        x = x.copy()
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def _patch_notes(waves: list, n_max: int, rng: np.random.Generator,
                 pitch_range: tuple[int, int], n_notes: int) -> np.ndarray:
    """``n_notes`` overlapping-free notes of a GUS patch at random pitches in
    ``pitch_range``, random lengths and velocities, within ``n_max`` samples."""
    seconds = n_max / SR
    x = np.zeros(n_max, np.float32)
    t = float(rng.uniform(0.0, 0.1))
    lo, hi = pitch_range
    for _ in range(n_notes):
        if t >= seconds - 0.05:
            break
        dur = float(rng.uniform(0.25, 0.8)) * seconds / n_notes * 1.2
        note = recordings.render_patch_note(waves, int(rng.integers(lo, hi + 1)), dur, SR,
                                            max_seconds=seconds - t)
        start = int(round(t * SR))
        seg = note[: n_max - start] * float(rng.uniform(0.4, 1.0))
        x[start: start + len(seg)] += seg
        t += dur
    return x


def _recording_sound(source: str, n_max: int, rng: np.random.Generator,
                     pitch_range: tuple[int, int] | None = None,
                     semitones: tuple[float, float] = (-2.0, 2.0)) -> np.ndarray:
    """One sound (<= ``n_max`` samples) from a real recording.

    A freepats instrument patch (``Tone_000``) plays 1-3 notes in ``pitch_range``; a
    freepats drum patch or a sonic-pi recording is pitch-shifted (resampled) by a random
    amount in ``semitones`` and, when longer than ``n_max``, cropped at a random start
    (up to 8 tries for a crop that is not near-silent), with 5 ms edge fades.
    """
    audio = recordings.load_source(source, SR)
    if source.startswith("freepats:Tone_000/"):
        if pitch_range is None:
            raise ValueError(f"source {source!r} is an instrument patch: it needs a pitch range")
        return _patch_notes(audio, n_max, rng, pitch_range, int(rng.integers(1, 4)))
    shift = float(rng.uniform(*semitones))
    if source.startswith("freepats:"):
        audio = recordings.render_patch_note(audio, None, 10.0, SR, max_seconds=10.0)
    ratio = 2.0 ** (shift / 12.0)
    need = int(n_max * ratio)  # source samples that fill n_max after the shift
    if len(audio) > need:
        peak = float(np.abs(audio).max())
        for _ in range(8):
            start = int(rng.integers(0, len(audio) - need + 1))
            crop = audio[start: start + need]
            if float(np.abs(crop).max()) >= 0.1 * peak:
                break
        audio = crop
    return _edge_fade(recordings.pitch_shift(audio, shift)[:n_max])


def _check_recording_sources(sources: Mapping[str, Mapping[str, Sequence[str]]]
                             ) -> dict[str, dict[str, list[str]]]:
    """``{label: {split: [source, ...]}}``: every split non-empty, source names valid,
    and no recording group (:func:`eval_suites.synthetic.recordings.source_group`) in two splits
    or two labels."""
    if not isinstance(sources, Mapping) or len(sources) < 2:
        raise ValueError(f"expected sources as a mapping of at least 2 labels to "
                         f"{{split: [source, ...]}}, got {sources!r}")
    out: dict[str, dict[str, list[str]]] = {}
    owner: dict[str, tuple[str, str]] = {}
    problems = []
    for label, by_split in sources.items():
        if not isinstance(by_split, Mapping) or set(by_split) != set(SPLITS):
            raise ValueError(f"sources[{label!r}]: expected a mapping with keys {SPLITS}, "
                             f"got {by_split!r}")
        out[str(label)] = {s: [str(x) for x in by_split[s]] for s in SPLITS}
        for split in SPLITS:
            if not out[label][split]:
                problems.append(f"{label}/{split} has no source")
            for src in out[label][split]:
                recordings.source_path(src)  # ValueError / RecordingsMissing naming it
                group = recordings.source_group(src)
                if group in owner and owner[group] != (label, split):
                    problems.append(f"recording {group} is in {owner[group][0]}/{owner[group][1]} "
                                    f"and {label}/{split}")
                owner.setdefault(group, (label, split))
    if problems:
        raise ValueError("sources: " + "; ".join(problems))
    return out


def build_recording_task(
    out_dir: str | Path,
    sources: Mapping[str, Mapping[str, Sequence[str]]],
    clips_per_class_per_split: SplitSizes = 3,
    seed: int = 0,
    sample_duration: float = 2.0,
    name: str = "demo-recordings",
    pitch_ranges: Mapping[str, tuple[int, int]] | None = None,
    semitones: tuple[float, float] = (-2.0, 2.0),
    snr_db: tuple[float, float] = (10.0, 30.0),
    workers: int | None = None,
    overwrite: bool = False,
    written: WrittenFiles | None = None,
    progress: Progress = None,
) -> Path:
    """Classify real recordings: one label per class of source recordings.

    ``sources``: ``{label: {"train": [...], "valid": [...], "test": [...]}}`` of source
    names (``"sonic-pi:bd_808"``, ``"freepats:Drum_000/035_Kick_1"``,
    ``"freepats:Tone_000/056_Trumpet"``); a recording (and its siblings, see
    :func:`eval_suites.synthetic.recordings.source_group`) may appear in one split of one label
    only, so test clips come from recordings never heard in training. Each clip: a
    source of its label and split (in turn), made into a sound by :func:`_recording_sound`
    (instrument patches: 1-3 notes in ``pitch_ranges[label]``; other recordings: a
    random crop, pitch-shifted by ``semitones``), at a random offset, in white/pink/brown
    noise at an SNR drawn from ``snr_db``, at a random gain (peak 0.3-0.95).
    """
    srcs = _check_recording_sources(sources)
    labels = list(srcs)
    ranges = {k: (int(v[0]), int(v[1])) for k, v in (pitch_ranges or {}).items()}
    needs_range = [lb for lb in labels if lb not in ranges and any(
        x.startswith("freepats:Tone_000/") for s in SPLITS for x in srcs[lb][s])]
    if needs_range:
        raise ValueError(f"labels {needs_range} play instrument patches: give their MIDI "
                         f"pitch_ranges, got {pitch_ranges!r}")
    per_split = _per_split(clips_per_class_per_split, "clips_per_class_per_split")
    args = dict(sources=srcs, seed=seed, clips_per_class_per_split=_jsonable(clips_per_class_per_split),
                sample_duration=sample_duration, snr_db=list(snr_db), semitones=list(semitones),
                pitch_ranges={k: list(v) for k, v in sorted(ranges.items())})
    groups = {s: sorted({recordings.source_group(x) for lb in labels for x in srcs[lb][s]})
              for s in SPLITS}
    metadata = TaskMetadata.scene(
        name, sample_duration=sample_duration, evaluation=["top1_acc", "mAP"],
        notes={"builder": "eval_suites.synthetic.demo_tasks.build_recording_task", "build_args": args,
               "source": "real recordings: Debian sonic-pi-samples (FLAC) and freepats "
                         "(GUS patches), cropped, pitch-shifted, in synthetic noise",
               "recordings_by_split": groups,
               "n_recordings_by_split": {s: len(groups[s]) for s in SPLITS},
               "recordings_disjoint": True},
    )
    task_dir, writer = _open_writer(out_dir, metadata, overwrite, written)
    if writer is None:
        return task_dir
    clips = [_Clip(split, f"{split}-{label}-{k:03d}.wav", [label], (seed, si, li, k))
             for si, split in enumerate(SPLITS) for li, label in enumerate(labels)
             for k in range(per_split[split])]
    n_total = int(round(sample_duration * SR))

    def render(c: _Clip) -> np.ndarray:
        rng = np.random.default_rng(c.seed)
        label, k = c.labels[0], c.seed[3]
        pool = srcs[label][c.split]
        source = pool[k % len(pool)]  # each recording of the split equally often
        sound = _recording_sound(source, n_total, rng, ranges.get(label), semitones)
        if float(np.abs(sound).max()) < 1e-4:
            raise RuntimeError(f"{c.name}: source {source} gave silence")
        x = np.zeros(n_total, np.float32)
        offset = int(rng.integers(0, n_total - len(sound) + 1))
        x[offset: offset + len(sound)] = synth.normalize_peak(sound, 0.8)
        x = _add_noise(x, rng, snr_db)
        return synth.normalize_peak(x, float(rng.uniform(0.3, 0.95)))

    return _write(writer, clips, render, workers, progress)
