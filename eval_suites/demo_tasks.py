"""Small deterministic HEAR tasks made from real synthesised audio (no downloads).

Three builders write complete task folders with :class:`eval_suites.hear_task.TaskWriter`:

- :func:`build_keyword_task`: scene, multiclass — spoken words (espeak-ng and flite
  voices, varied speed and pitch) in coloured noise at a random SNR; the test and valid
  speakers (voices) are disjoint from the training ones.
- :func:`build_event_task`: event, multilabel — spoken words, piano and trumpet notes and
  drum hits at random onsets in noise; labels are the sounds' audible spans in ms.
- :func:`build_instrument_task`: scene, multiclass — General MIDI instrument families
  rendered by fluidsynth at varied pitch and velocity.

Same arguments give byte-identical wav files and labels: every random choice comes
from a ``numpy.random.Generator`` seeded by (seed, split, clip index), the engines are
deterministic (see :mod:`eval_suites.synth`), and clips are written in a fixed order
whatever the number of worker threads. Engines run as subprocesses, so a thread pool
overlaps them without a process pool's start-up cost.

A builder returns the task folder ``<out_dir>/<name>-v1-full``. Calling it again with
the same arguments on a complete folder returns it untouched; an interrupted build
resumes where it stopped; other arguments on an existing folder raise unless
``overwrite=True``.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from eval_suites import synth
from eval_suites.hear_task import (
    TaskMetadata,
    TaskWriter,
    load_task,
    task_is_complete,
)

__all__ = [
    "DEFAULT_WORDS",
    "DEFAULT_VOICES",
    "INSTRUMENT_FAMILIES",
    "EVENT_LABELS",
    "build_keyword_task",
    "build_event_task",
    "build_instrument_task",
    "split_voices",
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


def _speak(voice: str, text: str, rng: np.random.Generator) -> np.ndarray:
    """Speak ``text`` with an "engine:voice" voice at a random speed and pitch."""
    engine, _, name = voice.partition(":")
    if engine == "espeak":
        return synth.espeak(text, voice=name, speed=int(rng.integers(130, 221)),
                            pitch=int(rng.integers(25, 76)), sample_rate=SR)
    if engine == "flite":
        return synth.flite(text, voice=name, sample_rate=SR,
                           duration_stretch=float(np.round(rng.uniform(0.85, 1.25), 3)))
    raise ValueError(f"voice {voice!r}: expected 'espeak:<voice>' or 'flite:<voice>'")


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


def _map(fn: Callable[[Any], np.ndarray], items: list, workers: int | None) -> list:
    """``[fn(i) for i in items]`` on a thread pool; results in input order."""
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def _open_writer(out_dir: str | Path, metadata: TaskMetadata, overwrite: bool
                 ) -> tuple[Path, TaskWriter | None]:
    """(task folder, writer) — writer None when the same task is already complete."""
    task_dir = Path(out_dir) / metadata.folder_name
    if task_is_complete(task_dir) and not overwrite:
        existing = load_task(task_dir).metadata
        if existing.to_dict() == metadata.to_dict():
            return task_dir, None
        raise FileExistsError(
            f"{task_dir} holds a task built with other arguments "
            f"({existing.notes.get('build_args')}); pass overwrite=True to rebuild it"
        )
    return task_dir, TaskWriter(task_dir, metadata, sample_rate=SR, overwrite=overwrite)


@dataclass(frozen=True)
class _Clip:
    split: str
    name: str
    labels: list
    seed: tuple[int, ...]


def _write(writer: TaskWriter, clips: list[_Clip], render: Callable[[_Clip], np.ndarray],
           workers: int | None) -> Path:
    todo = [c for c in clips if not writer.has_clip(c.split, c.name)]
    audio = _map(render, todo, workers)
    for clip, x in zip(todo, audio):
        writer.add_clip(clip.split, clip.name, x, SR, clip.labels)
    return writer.finalize()


# --------------------------------------------------------------------------- keywords


def build_keyword_task(
    out_dir: str | Path,
    words: Sequence[str] = DEFAULT_WORDS,
    voices: Sequence[str] = DEFAULT_VOICES,
    clips_per_word_per_split: int = 3,
    seed: int = 0,
    sample_duration: float = 1.0,
    name: str = "demo-keywords",
    snr_db: tuple[float, float] = (5.0, 25.0),
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Keyword spotting, like Speech Commands: one spoken word per clip.

    Each clip: a word spoken by one voice of its split (``"espeak:<voice>[+variant]"`` or
    ``"flite:<voice>"``) at a random speed and pitch, silence-trimmed (cut if longer
    than the clip), placed at a random offset in a ``sample_duration`` s clip, in
    white/pink/brown noise at an SNR drawn from ``snr_db``. Labels are the words; every
    split has ``clips_per_word_per_split`` clips of each word (balanced). Voices are split by :func:`split_voices`.
    """
    if len(words) < 2 or len(set(words)) != len(words):
        raise ValueError(f"expected at least 2 distinct words, got {list(words)}")
    if clips_per_word_per_split < 1:
        raise ValueError(f"expected clips_per_word_per_split >= 1, got {clips_per_word_per_split}")
    by_split = split_voices(voices)
    for v in voices:  # fail early, with the engine's message, on a bad voice
        _speak(v, "test", np.random.default_rng(0))
    args = dict(words=list(words), voices=list(voices), seed=seed,
                clips_per_word_per_split=clips_per_word_per_split,
                sample_duration=sample_duration, snr_db=list(snr_db))
    metadata = TaskMetadata.scene(
        name, sample_duration=sample_duration, evaluation=["top1_acc", "mAP"],
        notes={"builder": "eval_suites.demo_tasks.build_keyword_task", "build_args": args,
               "voices_by_split": by_split,
               "speakers_disjoint": len(voices) >= 3,
               "source": "espeak-ng / flite speech in synthetic noise"},
    )
    task_dir, writer = _open_writer(out_dir, metadata, overwrite)
    if writer is None:
        return task_dir
    clips = []
    for si, split in enumerate(SPLITS):
        for wi, word in enumerate(words):
            for k in range(clips_per_word_per_split):
                clips.append(_Clip(split, f"{split}-{word}-{k:03d}.wav", [word], (seed, si, wi, k)))
    n_total = int(round(sample_duration * SR))

    def render(c: _Clip) -> np.ndarray:
        rng = np.random.default_rng(c.seed)
        split_vs = by_split[c.split]
        voice = split_vs[(c.seed[2] + c.seed[3]) % len(split_vs)]
        speech = _trim(_speak(voice, c.labels[0], rng))[:n_total]
        x = np.zeros(n_total, np.float32)
        offset = int(rng.integers(0, n_total - len(speech) + 1))
        x[offset: offset + len(speech)] = synth.normalize_peak(speech, 0.8)
        return synth.normalize_peak(_add_noise(x, rng, snr_db), 0.9)

    return _write(writer, clips, render, workers)


# --------------------------------------------------------------------------- instruments


def build_instrument_task(
    out_dir: str | Path,
    families: Sequence[str] = ("piano", "guitar", "strings", "brass"),
    clips_per_class_per_split: int = 3,
    seed: int = 0,
    sample_duration: float = 1.0,
    name: str = "demo-instruments",
    snr_db: tuple[float, float] = (20.0, 40.0),
    overwrite: bool = False,
) -> Path:
    """Instrument family recognition, like NSynth's: one family per clip.

    Each clip: one to three notes (sequential, random pitch in the family's range,
    velocity 50-120, random GM program of the family from :data:`INSTRUMENT_FAMILIES`)
    rendered by fluidsynth, in light noise. All clips are rendered in one fluidsynth run
    (:func:`eval_suites.synth.fluidsynth_render_many`).
    """
    unknown = [f for f in families if f not in INSTRUMENT_FAMILIES]
    if unknown or len(families) < 2:
        raise ValueError(f"expected at least 2 families from {sorted(INSTRUMENT_FAMILIES)}, "
                         f"got {list(families)}")
    args = dict(families=list(families), clips_per_class_per_split=clips_per_class_per_split,
                seed=seed, sample_duration=sample_duration, snr_db=list(snr_db))
    metadata = TaskMetadata.scene(
        name, sample_duration=sample_duration, evaluation=["top1_acc", "mAP"],
        notes={"builder": "eval_suites.demo_tasks.build_instrument_task", "build_args": args,
               "source": "fluidsynth + FluidR3_GM.sf2 General MIDI instruments",
               "programs": {f: list(INSTRUMENT_FAMILIES[f]) for f in families}},
    )
    task_dir, writer = _open_writer(out_dir, metadata, overwrite)
    if writer is None:
        return task_dir
    clips, notes = [], []
    for si, split in enumerate(SPLITS):
        for fi, fam in enumerate(families):
            for k in range(clips_per_class_per_split):
                c = _Clip(split, f"{split}-{fam}-{k:03d}.wav", [fam], (seed, si, fi, k))
                rng = np.random.default_rng(c.seed)
                program = int(rng.choice(INSTRUMENT_FAMILIES[fam]))
                lo, hi = _FAMILY_PITCH[fam]
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
    todo = [i for i, c in enumerate(clips) if not writer.has_clip(c.split, c.name)]
    audio = synth.fluidsynth_render_many([notes[i] for i in todo], sample_duration, SR)
    for i, x in zip(todo, audio):
        rng = np.random.default_rng(clips[i].seed + (1,))
        if not np.any(x):
            raise RuntimeError(f"fluidsynth rendered silence for {clips[i].name}: {notes[i]}")
        writer.add_clip(clips[i].split, clips[i].name,
                        synth.normalize_peak(_add_noise(x, rng, snr_db), 0.9), SR,
                        clips[i].labels)
    return writer.finalize()


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
    n_clips_per_split: int = 4,
    clip_seconds: float = 4.0,
    seed: int = 0,
    name: str = "demo-events",
    events_per_clip: tuple[int, int] = (2, 3),
    snr_db: tuple[float, float] = (10.0, 25.0),
    overwrite: bool = False,
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
    args = dict(n_clips_per_split=n_clips_per_split, clip_seconds=clip_seconds, seed=seed,
                events_per_clip=list(events_per_clip), snr_db=list(snr_db))
    metadata = TaskMetadata.event(
        name, sample_duration=clip_seconds,
        evaluation=["event_onset_200ms_fms", "segment_1s_er"],
        notes={"builder": "eval_suites.demo_tasks.build_event_task", "build_args": args,
               "source": "espeak-ng words, fluidsynth piano/trumpet/drums, synthetic noise"},
    )
    task_dir, writer = _open_writer(out_dir, metadata, overwrite)
    if writer is None:
        return task_dir
    n_variants = max(4, n_clips_per_split)
    sounds = {lbl: _event_sounds(lbl, n_variants, seed) for lbl in EVENT_LABELS}
    n_total = int(round(clip_seconds * SR))
    for si, split in enumerate(SPLITS):
        for k in range(n_clips_per_split):
            name_k = f"{split}-{k:03d}.wav"
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
