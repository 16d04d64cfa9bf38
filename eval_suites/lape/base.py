"""The converter base shared by LAPE's 11 tasks: layout check, clip list, parallel write.

A converter turns one dataset, as its authors distribute it, into a HEAR-format task
folder (see :mod:`eval_suites.hear_format.task`). Every converter does the same three steps:

1. :meth:`Converter.check_layout` looks at the source root and raises
   :class:`LayoutError` naming what is missing and what the root should look like;
2. :meth:`Converter.list_clips` reads the dataset's own metadata (list files, CSV, JSON)
   and returns :class:`Clip` records: split, clip name, source file, labels and an
   optional segment;
3. :meth:`Converter.convert` (here, shared) reads each source file (or segment) with
   soundfile, averaging channels, and hands the waveform to
   :class:`~eval_suites.hear_format.task.TaskWriter` (which resamples with soxr, pads or crops
   to the task window and writes 16-bit wav), in a pool of worker threads with a
   progress bar. Clips already written are skipped, so an interrupted run resumes; a
   finished task folder is left untouched.

Converters only describe a dataset; they never resample or write audio themselves.
"""
from __future__ import annotations

import abc
import concurrent.futures as cf
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from eval_suites.errors import DataError, UsageError
from eval_suites.hear_format.task import TaskMetadata, TaskWriter, task_is_complete

__all__ = ["Clip", "Converter", "LayoutError", "missing_classes", "read_audio"]


class LayoutError(FileNotFoundError, UsageError):
    """The source folder does not look like the dataset as distributed (exit 2: the
    ``--source`` given is wrong). The message names what is missing or unreadable and shows
    the expected layout of the root.
    """


@dataclass(frozen=True)
class Clip:
    """One clip of the task to write.

    ``name`` is the file name inside the task's split folder (ends in ``.wav``, unique
    within the task). ``start`` and ``duration`` (seconds) select a segment of the
    source file; ``None`` means from the beginning / to the end.
    """

    split: str
    name: str
    source: Path
    labels: tuple[str, ...]
    start: float | None = None
    duration: float | None = None


def read_audio(path: Path, start: float | None = None, duration: float | None = None) -> tuple[np.ndarray, int]:
    """Read (a segment of) an audio file with soundfile: float32 (N,) mono and its rate.

    Channels are averaged. Any format libsndfile reads works (wav in PCM 8/16/24/32 bit
    or float, flac, ogg); anything else raises a :class:`~eval_suites.errors.DataError`
    (a ValueError) naming the file.
    """
    try:
        info = sf.info(str(path))
        sr = int(info.samplerate)
        first = 0 if start is None else int(round(start * sr))
        frames = -1 if duration is None else int(round(duration * sr))
        x, sr = sf.read(str(path), start=first, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise DataError(
            f"cannot decode {path} with soundfile ({err}); the LAPE converters read wav/flac "
            f"as distributed - convert this file to wav (e.g. `ffmpeg -i IN OUT.wav`) and rerun"
        ) from err
    return x.mean(axis=1).astype(np.float32), int(sr)


@dataclass
class Converter(abc.ABC):
    """One LAPE dataset -> one HEAR task. Subclasses set the class attributes and the two
    abstract methods; ``convert`` is shared.

    Class attributes:
        task_name: HEAR task name (also the task folder's prefix).
        window: clip length in seconds (``sample_duration`` of the task).
        split_mode: "trainvaltest" or "presplit_kfold".
        layout: text block showing the expected root, used in every ``LayoutError``.
    """

    task_name: str = field(init=False, default="")
    version: str = field(init=False, default="v1")
    window: float = field(init=False, default=1.0)
    split_mode: str = field(init=False, default="trainvaltest")
    layout: str = field(init=False, default="")
    seed: int = 0

    # ----------------------------------------------------------------- to implement

    @abc.abstractmethod
    def check_layout(self, root: Path) -> None:
        """Raise :class:`LayoutError` if ``root`` lacks a file or folder the converter reads."""

    @abc.abstractmethod
    def list_clips(self, root: Path) -> list[Clip]:
        """All clips of the task, with their split and labels, from the dataset's metadata."""

    def splits(self) -> list[str]:
        """Split names of the task, in order."""
        return ["train", "valid", "test"]

    def notes(self) -> dict:
        """Free-text facts about the conversion recorded in ``task_metadata.json``."""
        return {}

    def label_set(self) -> tuple[str, ...] | None:
        """The task's full label set when the dataset defines one (else ``None``)."""
        return None

    # ----------------------------------------------------------------- shared

    def layout_error(self, problem: str) -> LayoutError:
        """A :class:`LayoutError` saying ``problem`` and showing the expected layout."""
        return LayoutError(
            f"{self.task_name}: {problem}\n"
            f"Expected layout of the --source root (the dataset as distributed):\n{self.layout}"
        )

    def missing(self, root: Path, relative: str, what: str) -> LayoutError:
        """A :class:`LayoutError` for a missing path, with the expected layout."""
        return self.layout_error(f"{what} not found: expected {root / relative}.")

    def read_text(self, path: Path) -> str:
        """The text of one of the dataset's list or metadata files; a file that is not UTF-8
        text (binary, damaged) is a :class:`LayoutError` naming it."""
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise self.layout_error(f"{path} is not UTF-8 text (byte {e.start}); expected the "
                                    "dataset's own list or metadata file.") from None

    def metadata(self, missing: dict[str, list[str]] | None = None) -> TaskMetadata:
        """The task's metadata; ``missing`` (split -> classes absent from it) goes to notes."""
        splits = self.splits()
        return TaskMetadata(
            task_name=self.task_name,
            version=self.version,
            embedding_type="scene",
            prediction_type="multiclass",
            split_mode=self.split_mode,
            sample_duration=self.window,
            evaluation=["top1_acc"],
            splits=splits,
            nfolds=len(splits) if self.split_mode == "presplit_kfold" else None,
            mode="full",
            notes={"suite": "lape", "seed": self.seed, **self.notes(),
                   **({"missing_classes": missing} if missing else {})},
        )

    def convert(self, root: str | Path, out: str | Path, workers: int = 4,
                progress: bool = True) -> Path:
        """Write the task folder under ``out`` (a tasks directory); returns its path.

        Resumable: clips already written by an interrupted run are skipped; a folder
        that is already complete (``task_metadata.json`` exists) is left as it is.
        ``workers`` threads read, resample and write in parallel (soundfile and soxr
        release the GIL). Only the first ``window`` seconds (+0.1 s) of a file are decoded.
        """
        root = Path(root)
        if not root.is_dir():
            raise self.layout_error(f"source folder {root} does not exist or is not a folder.")
        self.check_layout(root)
        meta = self.metadata()
        task_dir = Path(out) / meta.folder_name
        if task_is_complete(task_dir):
            return task_dir  # idempotent: a finished task is never rewritten
        clips = self.list_clips(root)
        self._check_clips(clips)
        missing = missing_classes(clips, self.splits())
        if missing:
            meta = self.metadata(missing)
            print(f"{self.task_name}: " + "; ".join(
                f"split {s} has no clip of {', '.join(c)}" for s, c in missing.items())
                + " (the label vocabulary is the whole task's, so label indices do not shift; "
                  "recorded in task_metadata.json -> notes.missing_classes)", file=sys.stderr)
        writer = TaskWriter(task_dir, meta, overwrite=False)
        todo = [c for c in clips if not writer.has_clip(c.split, c.name)]

        def write(clip: Clip) -> None:
            # a little past the window, so the resampler's filter sees the real signal
            duration = self.window + 0.1 if clip.duration is None else clip.duration
            audio, sr = read_audio(clip.source, clip.start, duration)
            try:
                writer.add_clip(clip.split, clip.name, audio, sr, list(clip.labels))
            except ValueError as err:  # labels the task format refuses: the source's data
                raise DataError(f"{clip.source} -> {clip.split}/{clip.name}: {err}") from err

        with cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool, tqdm(
            total=len(clips), initial=len(clips) - len(todo), unit="clip",
            desc=f"prepare {self.task_name}", disable=not progress,
        ) as bar:
            futures = [pool.submit(write, c) for c in todo]
            for fut in cf.as_completed(futures):
                fut.result()
                bar.update(1)
        writer.finalize()
        return task_dir

    def _check_clips(self, clips: list[Clip]) -> None:
        if not clips:
            raise self.layout_error("the source root has the expected folders but no clips "
                                    "were found in it.")
        names = set()
        splits = set(self.splits())
        for c in clips:
            if c.split not in splits:
                raise AssertionError(f"converter bug: clip {c.name} in unknown split {c.split}")
            if (c.split, c.name) in names:
                raise AssertionError(f"converter bug: clip name {c.name} used twice in {c.split}")
            names.add((c.split, c.name))
        known = self.label_set()
        if known is not None:
            unknown = sorted({lab for c in clips for lab in c.labels} - set(known))
            if unknown:
                raise AssertionError(f"converter bug: labels {unknown} outside {known}")


def missing_classes(clips: list[Clip], splits: list[str]) -> dict[str, list[str]]:
    """{split: sorted classes of the task that no clip of that split has} (empty splits of
    the dict are left out).

    The task's label vocabulary is built from all splits together
    (:class:`~eval_suites.hear_format.task.TaskWriter`), so a class absent from one split keeps
    its index; this only says where it is absent.
    """
    every = {lab for c in clips for lab in c.labels}
    present: dict[str, set[str]] = {s: set() for s in splits}
    for c in clips:
        present[c.split].update(c.labels)
    return {s: sorted(every - present[s]) for s in splits if every - present[s]}
