"""The HEAR 2021 task format (hear-preprocess output), written and read as heareval reads it.

A task folder holds::

    <task_dir>/task_metadata.json        # TaskMetadata.to_dict(); written last: its presence
                                          # means the folder is complete
    <task_dir>/labelvocabulary.csv       # columns idx,label (idx 0..n-1, labels sorted)
    <task_dir>/<split>.json              # labels per clip, see below
    <task_dir>/<sample_rate>/<split>/<name>.wav   # mono, 16-bit PCM

Labels in ``<split>.json`` map a clip's file name to:
- scene tasks: a list of label strings, ``{"a.wav": ["dog"]}`` (exactly one for multiclass);
- event tasks: a list of events in **milliseconds**,
  ``{"a.wav": [{"label": "dog", "start": 120.0, "end": 560.0}]}``.

Splits are ``train``, ``valid``, ``test`` for ``split_mode="trainvaltest"`` (heareval
hard-codes these names) and ``fold00`` .. ``foldNN`` for the k-fold modes (heareval
rotates them: test = fold i, valid = fold i+1, train = the rest, so k >= 3).

What heareval 2021.1.3 reads (checked against its source): task_metadata.json keys
``task_name``, ``embedding_type``, ``prediction_type``, ``split_mode``, ``splits``,
``sample_duration`` (None means batch size 1, otherwise every clip must have exactly
that length because clips are batched), ``evaluation`` (names from
``heareval.score.available_scores``; the first drives model selection) and the optional
``evaluation_params``; ``labelvocabulary.csv`` through pandas (labels are compared as
``str`` after pandas' type inference, so a label such as "01" would silently become "1":
such labels are refused); clip files through ``soundfile`` with the sample rate asserted
equal to the model's. Event labels are looked up per timestamp in an interval tree, and
event tasks are trained with a sigmoid output, so they must be ``multilabel``.

Use :class:`TaskWriter` to write a task (resumable), :func:`load_task` to read one and
:func:`validate_task` to check one.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import soundfile as sf

from eval_suites.errors import DataError, write_file
from eval_suites.core.atomic_files import write_atomically
from eval_suites.synthetic.synth import resample, write_wav

if TYPE_CHECKING:  # the record a builder passes in; hear_slicer (torch) is not imported here at run time
    from hear_slicer.written import WrittenFiles

__all__ = [
    "EMBEDDING_TYPES",
    "PREDICTION_TYPES",
    "SPLIT_MODES",
    "HEAREVAL_METRICS",
    "SCENE_METRICS",
    "EVENT_METRICS",
    "TaskFormatError",
    "TaskMetadata",
    "TaskWriter",
    "HearTask",
    "load_task",
    "validate_task",
    "task_is_complete",
    "fold_names",
    "check_clip_name",
]

EMBEDDING_TYPES = ("scene", "event")
PREDICTION_TYPES = ("multiclass", "multilabel")
SPLIT_MODES = ("trainvaltest", "presplit_kfold", "new_split_kfold")
TRAINVALTEST_SPLITS = ("train", "valid", "test")
SCENE_METRICS = ("top1_acc", "pitch_acc", "chroma_acc", "mAP", "d_prime", "aucroc")
EVENT_METRICS = (
    "event_onset_200ms_fms",
    "event_onset_50ms_fms",
    "event_onset_offset_50ms_20perc_fms",
    "segment_1s_er",
)
HEAREVAL_METRICS = SCENE_METRICS + EVENT_METRICS
"""Keys of ``heareval.score.available_scores`` in heareval 2021.1.3."""

METADATA_FILE = "task_metadata.json"
VOCABULARY_FILE = "labelvocabulary.csv"
_PROGRESS_DIR = ".taskwriter"  # resumable writing state, removed by finalize()

SceneLabels = list[str]
EventLabels = list[dict[str, Any]]
Labels = Union[SceneLabels, EventLabels]


class TaskFormatError(DataError):
    """A task folder or metadata does not follow the HEAR format; lists every problem."""

    def __init__(self, where: str, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{where}: {len(self.problems)} problem(s):\n{lines}")


def fold_names(nfolds: int) -> list[str]:
    """``["fold00", "fold01", ...]``, the split names of a k-fold task."""
    return [f"fold{i:02d}" for i in range(nfolds)]


# --------------------------------------------------------------------------- metadata


@dataclass
class TaskMetadata:
    """Contents of ``task_metadata.json``.

    ``evaluation`` lists heareval metric names (:data:`HEAREVAL_METRICS`); the first one
    selects the model on the validation split. ``sample_duration`` is the clip length in
    seconds every clip is padded or cropped to, or None for variable-length clips.
    ``notes`` is free-form provenance (e.g. how a validation split was carved);
    ``evaluation_params`` is passed to heareval as is; ``extra`` keeps any other key
    read from an existing file, so a load/save round trip loses nothing.
    """

    task_name: str
    version: str
    embedding_type: str
    prediction_type: str
    split_mode: str
    sample_duration: float | None
    evaluation: list[str]
    splits: list[str]
    nfolds: int | None = None
    mode: str = "full"
    notes: dict = field(default_factory=dict)
    evaluation_params: dict | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise TaskFormatError(f"task metadata {self.task_name!r}", problems)

    @classmethod
    def scene(cls, task_name: str, **kw: Any) -> "TaskMetadata":
        """Metadata of a multiclass scene task with train/valid/test and top-1 accuracy."""
        defaults = dict(
            version="v1", embedding_type="scene", prediction_type="multiclass",
            split_mode="trainvaltest", sample_duration=None,
            evaluation=["top1_acc"], splits=list(TRAINVALTEST_SPLITS),
        )
        return cls(task_name=task_name, **{**defaults, **kw})

    @classmethod
    def event(cls, task_name: str, **kw: Any) -> "TaskMetadata":
        """Metadata of a multilabel event task with train/valid/test, onset F-measure."""
        defaults = dict(
            version="v1", embedding_type="event", prediction_type="multilabel",
            split_mode="trainvaltest", sample_duration=None,
            evaluation=["event_onset_200ms_fms", "segment_1s_er"],
            splits=list(TRAINVALTEST_SPLITS),
        )
        return cls(task_name=task_name, **{**defaults, **kw})

    @property
    def folder_name(self) -> str:
        """hear-preprocess's folder name ``<task_name>-<version>-<mode>``."""
        return f"{self.task_name}-{self.version}-{self.mode}"

    def problems(self) -> list[str]:
        """Every way this metadata breaks the format (empty list when valid)."""
        p: list[str] = []
        if not isinstance(self.task_name, str) or not self.task_name:
            p.append(f"key 'task_name': expected a non-empty string, got {self.task_name!r}")
        if not isinstance(self.version, str) or not self.version:
            p.append(f"key 'version': expected a non-empty string, got {self.version!r}")
        if not isinstance(self.mode, str) or not self.mode:
            p.append(f"key 'mode': expected a non-empty string, got {self.mode!r}")
        if self.embedding_type not in EMBEDDING_TYPES:
            p.append(f"key 'embedding_type': expected one of {EMBEDDING_TYPES}, "
                     f"got {self.embedding_type!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            p.append(f"key 'prediction_type': expected one of {PREDICTION_TYPES}, "
                     f"got {self.prediction_type!r}")
        if self.embedding_type == "event" and self.prediction_type != "multilabel":
            p.append("key 'prediction_type': event tasks must be 'multilabel' (heareval "
                     f"trains them with a sigmoid per label), got {self.prediction_type!r}")
        if self.split_mode not in SPLIT_MODES:
            p.append(f"key 'split_mode': expected one of {SPLIT_MODES}, got {self.split_mode!r}")
        sd = self.sample_duration
        if sd is not None and (isinstance(sd, bool) or not isinstance(sd, (int, float))
                               or not math.isfinite(sd) or sd <= 0):
            p.append(f"key 'sample_duration': expected seconds > 0 or null, got {sd!r}")
        if (not isinstance(self.evaluation, list) or not self.evaluation
                or not all(isinstance(m, str) for m in self.evaluation)):
            p.append(f"key 'evaluation': expected a non-empty list of metric names, "
                     f"got {self.evaluation!r}")
        else:
            allowed = EVENT_METRICS if self.embedding_type == "event" else SCENE_METRICS
            for m in self.evaluation:
                if m not in allowed:
                    p.append(f"key 'evaluation': metric {m!r} is not a heareval "
                             f"{self.embedding_type} metric; expected one of {allowed}")
        if (not isinstance(self.splits, list) or not self.splits
                or not all(isinstance(s, str) for s in self.splits)):
            p.append(f"key 'splits': expected a non-empty list of split names, got {self.splits!r}")
        elif len(set(self.splits)) != len(self.splits):
            p.append(f"key 'splits': split names repeat: {self.splits}")
        elif self.split_mode == "trainvaltest":
            if sorted(self.splits) != sorted(TRAINVALTEST_SPLITS):
                p.append(f"key 'splits': split_mode 'trainvaltest' needs exactly "
                         f"{list(TRAINVALTEST_SPLITS)}, got {self.splits}")
            if self.nfolds is not None:
                p.append(f"key 'nfolds': expected null for split_mode 'trainvaltest', "
                         f"got {self.nfolds!r}")
        elif self.split_mode in SPLIT_MODES:
            if (isinstance(self.nfolds, bool) or not isinstance(self.nfolds, int)
                    or self.nfolds < 3):
                p.append(f"key 'nfolds': k-fold split modes need an integer >= 3 (heareval "
                         f"uses one fold for test, one for valid, the rest for train), "
                         f"got {self.nfolds!r}")
            elif self.splits != fold_names(self.nfolds):
                p.append(f"key 'splits': expected {fold_names(self.nfolds)} for "
                         f"nfolds={self.nfolds}, got {self.splits}")
        if not isinstance(self.notes, dict):
            p.append(f"key 'notes': expected a dict, got {type(self.notes).__name__}")
        if self.evaluation_params is not None and not isinstance(self.evaluation_params, dict):
            p.append(f"key 'evaluation_params': expected a dict or null, "
                     f"got {type(self.evaluation_params).__name__}")
        return p

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``task_metadata.json`` (extra keys included)."""
        d: dict[str, Any] = dict(self.extra)
        d.update(
            task_name=self.task_name, version=self.version,
            embedding_type=self.embedding_type, prediction_type=self.prediction_type,
            split_mode=self.split_mode, sample_duration=self.sample_duration,
            evaluation=list(self.evaluation), splits=list(self.splits),
            nfolds=self.nfolds, mode=self.mode, notes=dict(self.notes),
        )
        if self.evaluation_params is not None:
            d["evaluation_params"] = self.evaluation_params
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskMetadata":
        """Parse a ``task_metadata.json`` object; raises ``TaskFormatError`` naming bad keys."""
        if not isinstance(d, dict):
            raise TaskFormatError("task metadata", [f"expected a JSON object, got {type(d).__name__}"])
        required = ("task_name", "embedding_type", "prediction_type", "split_mode",
                    "sample_duration", "evaluation", "splits")
        missing = [f"key {k!r} is missing (heareval needs it)" for k in required if k not in d]
        if missing:
            raise TaskFormatError(f"task metadata {d.get('task_name')!r}", missing)
        known = {"task_name", "version", "embedding_type", "prediction_type", "split_mode",
                 "sample_duration", "evaluation", "splits", "nfolds", "mode", "notes",
                 "evaluation_params"}
        return cls(
            task_name=d["task_name"], version=d.get("version", "v1"),
            embedding_type=d["embedding_type"], prediction_type=d["prediction_type"],
            split_mode=d["split_mode"], sample_duration=d["sample_duration"],
            evaluation=d["evaluation"], splits=d["splits"], nfolds=d.get("nfolds"),
            mode=d.get("mode", "full"), notes=d.get("notes", {}),
            evaluation_params=d.get("evaluation_params"),
            extra={k: v for k, v in d.items() if k not in known},
        )


# --------------------------------------------------------------------------- labels

_NAME_RE = re.compile(r"^[^/\\\x00]+\.wav$")


def check_clip_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a plain ``*.wav`` file name (no folders,
    not absolute, no ``..``, not hidden) that stays inside its split folder."""
    if (not isinstance(name, str) or not _NAME_RE.match(name) or name.startswith(".")
            or os.path.isabs(name) or Path(name).name != name):
        raise ValueError(
            f"clip name {name!r} is not a plain file name ending in '.wav' (no '/', '\\', "
            f"'..', leading '.' or absolute path); use e.g. 'speaker1_0003.wav'"
        )


def _pandas_label_ok(label: str) -> bool:
    """True when pandas reads ``label`` from a CSV back as the same string (heareval
    reads labelvocabulary.csv with pandas and compares ``str(value)``)."""
    import pandas as pd

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["idx", "label"], [0, label]])
    buf.seek(0)
    value = pd.read_csv(buf)["label"].iloc[0]
    return str(value) == label


def _label_problems(labels: Any, metadata: TaskMetadata, clip_ms: float | None,
                    where: str) -> list[str]:
    """Problems with one clip's labels (``clip_ms``: clip length, None if unknown)."""
    p: list[str] = []
    if not isinstance(labels, list):
        return [f"{where}: expected a list of labels, got {type(labels).__name__}"]
    if metadata.embedding_type == "scene":
        if not all(isinstance(x, str) and x for x in labels):
            p.append(f"{where}: scene labels must be non-empty strings, got {labels!r}")
        if metadata.prediction_type == "multiclass" and len(labels) != 1:
            p.append(f"{where}: multiclass scene clips need exactly one label, got {labels!r}")
        if len(set(map(str, labels))) != len(labels):
            p.append(f"{where}: repeated labels {labels!r}")
        return p
    for i, ev in enumerate(labels):
        if not isinstance(ev, dict) or set(ev) != {"label", "start", "end"}:
            p.append(f"{where} event {i}: expected {{'label', 'start', 'end'}}, got {ev!r}")
            continue
        lbl, start, end = ev["label"], ev["start"], ev["end"]
        if not isinstance(lbl, str) or not lbl:
            p.append(f"{where} event {i}: label must be a non-empty string, got {lbl!r}")
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool)
                   and math.isfinite(t) for t in (start, end)):
            p.append(f"{where} event {i}: start and end must be numbers (ms), got {start!r}, {end!r}")
            continue
        if not 0 <= start < end:
            p.append(f"{where} event {i}: expected 0 <= start < end (ms), got {start}, {end}")
        if clip_ms is not None and end > clip_ms + 1e-6:
            p.append(f"{where} event {i}: ends at {end} ms, after the clip's end at "
                     f"{clip_ms:.3f} ms (times are in milliseconds)")
    return p


def _json_no_duplicates(path: Path) -> Any:
    """``json.load`` that fails on repeated keys (json silently keeps the last one)."""
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        keys = [k for k, _ in pairs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"repeated keys {dup}")
        return dict(pairs)

    with open(path) as f:
        return json.load(f, object_pairs_hook=hook)


def _atomic_write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda fh: fh.write(text))


# --------------------------------------------------------------------------- writer


class TaskWriter:
    """Write a HEAR task clip by clip, resumably.

    Each ``add_clip`` writes the wav (via a temporary file and an atomic rename) and then
    appends one line to ``<task_dir>/.taskwriter/<split>.jsonl``. Re-creating a writer on
    a partially written folder with the same metadata and sample rate keeps every clip
    recorded there (``has_clip`` is True for them), so a converter can skip them.
    ``finalize`` writes the label files, the vocabulary and, last, task_metadata.json,
    then validates the folder and removes the progress files.

    Args:
        task_dir: the task folder (created).
        metadata: the task's metadata.
        sample_rate: Hz of the written clips (folder ``<task_dir>/<sample_rate>``).
        overwrite: delete an existing task folder first (only a folder this class wrote,
            i.e. holding task_metadata.json or progress files, or an empty one; with
            ``written``, only when the record proves every file in it written by it).
        written: the record of the builder that owns the folder (`hear_slicer.written`, e.g.
            the demo-data builder's): every file is written, replaced and deleted through it,
            so a file the builder did not write is never replaced or deleted
            (ForeignFileError, nothing touched); default: plain writes.
    """

    def __init__(self, task_dir: str | Path, metadata: TaskMetadata,
                 sample_rate: int = 16000, overwrite: bool = False, written: WrittenFiles | None = None):
        if not isinstance(metadata, TaskMetadata):
            raise TypeError(f"expected TaskMetadata, got {type(metadata).__name__}")
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"expected a positive integer sample_rate, got {sample_rate!r}")
        self.task_dir = Path(task_dir)
        self.metadata = metadata
        self.sample_rate = sample_rate
        self.written = written
        self._progress = self.task_dir / _PROGRESS_DIR
        if self.task_dir.exists() and overwrite:
            self._remove_existing()
        if (self.task_dir / METADATA_FILE).exists():
            raise FileExistsError(
                f"{self.task_dir} already holds a complete task ({METADATA_FILE} exists); "
                f"load it with load_task(), or pass overwrite=True to rewrite it"
            )
        if written is not None:  # a partial task is resumed only when the record proves all of it
            from hear_slicer.written import files_in

            written.check(files_in(self.task_dir), f"write the task into {self.task_dir}")
        self._clips: dict[str, dict[str, tuple[Labels, int]]] = {s: {} for s in metadata.splits}
        self._progress.mkdir(parents=True, exist_ok=True)
        self._check_or_write_state()
        for split in metadata.splits:
            self._load_progress(split)

    # -- setup

    def _remove_existing(self) -> None:
        d = self.task_dir
        if self.written is not None:
            self.written.remove_folders([d], f"delete the task folder {d} (overwrite)")
            return
        if not d.is_dir():
            raise FileExistsError(f"{d} exists and is not a folder; remove it yourself")
        if any(d.iterdir()) and not ((d / METADATA_FILE).exists() or (d / _PROGRESS_DIR).exists()):
            raise FileExistsError(
                f"refusing to delete {d}: it is not empty and not a task folder "
                f"(no {METADATA_FILE} or {_PROGRESS_DIR}/); choose another task_dir"
            )
        shutil.rmtree(d)

    def _state(self) -> dict[str, Any]:
        return {"metadata": self.metadata.to_dict(), "sample_rate": self.sample_rate}

    def _check_or_write_state(self) -> None:
        state_file = self._progress / "state.json"
        if state_file.exists():
            old = json.loads(state_file.read_text())
            if old != json.loads(json.dumps(self._state())):
                raise ValueError(
                    f"{self.task_dir} holds a partial task written with other metadata or "
                    f"sample rate ({old}); pass overwrite=True to start again"
                )
        else:
            self._write_text(state_file, json.dumps(self._state(), indent=1))

    def _load_progress(self, split: str) -> None:
        path = self._progress / f"{split}.jsonl"
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        good = []
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break  # an interrupted last write; the clip will be added again
            if (self._split_dir(split) / rec["name"]).is_file():
                self._clips[split][rec["name"]] = (rec["labels"], rec["n_samples"])
                good.append(line)
        if len(good) != len(lines):
            self._write_text(path, "".join(g + "\n" for g in good))

    def _split_dir(self, split: str) -> Path:
        return self.task_dir / str(self.sample_rate) / split

    # -- public

    def has_clip(self, split: str, name: str) -> bool:
        """True when ``name`` was already added to ``split`` (in this or an earlier run)."""
        self._check_split(split)
        return name in self._clips[split]

    def clip_names(self, split: str) -> list[str]:
        """Names added to ``split`` so far, in order of addition."""
        self._check_split(split)
        return list(self._clips[split])

    def add_clip(self, split: str, name: str, audio: np.ndarray, sr: int,
                 labels: Labels, trim_events: bool = False) -> None:
        """Add one clip.

        Args:
            audio: float mono waveform (N,) in [-1, 1] at ``sr`` Hz (louder samples are
                clipped when written as 16-bit). Resampled to the writer's sample rate,
                then zero-padded or cropped to ``sample_duration`` when it is set.
            labels: scene: list of label strings; event: list of
                ``{"label": str, "start": ms, "end": ms}``.
            trim_events: for event tasks, cut events at the (cropped) clip's end and drop
                those starting after it, instead of raising.
        """
        self._check_split(split)
        check_clip_name(name)
        if name in self._clips[split]:
            raise ValueError(f"clip {name!r} was already added to split {split!r}; "
                             f"check has_clip() first to resume")
        for other, clips in self._clips.items():
            if name in clips:
                raise ValueError(f"clip {name!r} is already in split {other!r}; names must "
                                 f"be unique across splits (heareval merges folds by name)")
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"expected mono audio of shape (n_samples,), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"clip {name!r}: audio contains NaN or infinite samples")
        x = resample(x, sr, self.sample_rate)
        if self.metadata.sample_duration is not None:
            n = int(round(self.metadata.sample_duration * self.sample_rate))
            x = x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))
        clip_ms = 1000.0 * len(x) / self.sample_rate
        labels = self._normalise_labels(labels, clip_ms, trim_events)
        problems = _label_problems(labels, self.metadata, clip_ms, f"clip {split}/{name}")
        if problems:
            raise ValueError("; ".join(problems))

        out_dir = self._split_dir(split)
        out_dir.mkdir(parents=True, exist_ok=True)
        wav = io.BytesIO()  # encoded in memory, then written plainly: a full disk names the file
        write_wav(wav, x, self.sample_rate, subtype="PCM_16")
        rec = json.dumps({"name": name, "labels": labels, "n_samples": len(x)})
        if self.written is not None:
            self.written.write(out_dir / name, wav.getvalue())
            self.written.append(self._progress / f"{split}.jsonl", (rec + "\n").encode())
        else:
            write_atomically(out_dir / name, lambda fh: fh.write(wav.getbuffer()), mode="wb")
            write_file(self._progress / f"{split}.jsonl", lambda fh: fh.write(rec + "\n"), mode="a")
        self._clips[split][name] = (labels, len(x))

    def finalize(self) -> Path:
        """Write labels, vocabulary and metadata; validate; return the task folder."""
        empty = [s for s, clips in self._clips.items() if not clips]
        if empty:
            raise TaskFormatError(str(self.task_dir), [f"split {s!r} has no clips" for s in empty])
        vocab: set[str] = set()
        for split, clips in self._clips.items():
            data = {name: labels for name, (labels, _n) in sorted(clips.items())}
            for labels in data.values():
                vocab.update(lbl if isinstance(lbl, str) else lbl["label"] for lbl in labels)
            self._write_text(self.task_dir / f"{split}.json", json.dumps(data, indent=1))
        bad = sorted(v for v in vocab if not _pandas_label_ok(v))
        if bad:
            raise TaskFormatError(str(self.task_dir), [
                f"label {v!r} would be read back by heareval (pandas) as a different "
                f"string; rename it (e.g. 'class_{v}')" for v in bad])
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["idx", "label"])
        w.writerows(enumerate(sorted(vocab)))
        self._write_text(self.task_dir / VOCABULARY_FILE, buf.getvalue())
        self._write_text(self.task_dir / METADATA_FILE, json.dumps(self.metadata.to_dict(), indent=1))
        try:
            validate_task(self.task_dir)
        except TaskFormatError:
            (self.task_dir / METADATA_FILE).unlink()  # not complete after all
            raise
        if self.written is not None:
            self.written.remove_folders([self._progress], "remove the task writer's progress files")
        else:
            shutil.rmtree(self._progress)
        return self.task_dir

    def _write_text(self, path: Path, text: str) -> None:
        if self.written is not None:
            self.written.write(path, text.encode("utf-8"))
        else:
            _atomic_write_text(path, text)

    # -- helpers

    def _check_split(self, split: str) -> None:
        if split not in self._clips:
            raise ValueError(f"unknown split {split!r}; this task has splits {self.metadata.splits}")

    def _normalise_labels(self, labels: Labels, clip_ms: float, trim: bool) -> Labels:
        if not isinstance(labels, (list, tuple)):
            raise ValueError(f"expected labels as a list, got {type(labels).__name__}")
        if self.metadata.embedding_type == "scene":
            return list(labels)
        out = []
        for ev in labels:
            if not isinstance(ev, dict):
                out.append(ev)  # reported by _label_problems
                continue
            ev = {"label": ev.get("label"), "start": ev.get("start"), "end": ev.get("end")}
            if isinstance(ev["start"], (int, float)) and isinstance(ev["end"], (int, float)):
                ev["start"], ev["end"] = float(ev["start"]), float(ev["end"])
                if trim:
                    if ev["start"] >= clip_ms:
                        continue
                    ev["end"] = min(ev["end"], clip_ms)
            out.append(ev)
        if all(isinstance(e, dict) and isinstance(e["start"], float) for e in out):
            out.sort(key=lambda e: (e["start"], e["end"], str(e["label"])))
        return out


# --------------------------------------------------------------------------- reader


@dataclass
class HearTask:
    """A task folder read with :func:`load_task`.

    ``labels[split][name]`` holds each clip's labels as in ``<split>.json``;
    ``sample_rates`` the sample rates with an audio folder (``<root>/<sr>/``).
    """

    root: Path
    metadata: TaskMetadata
    vocabulary: list[str]
    labels: dict[str, dict[str, Labels]]
    sample_rates: list[int] = field(default_factory=list)

    def audio_path(self, split: str, name: str, sample_rate: int | None = None) -> Path:
        """Path of clip ``name`` of ``split``; refuses any name that would lead outside
        ``<root>/<sample_rate>/<split>/`` (absolute, ``..``, a symlink pointing out).

        ``sample_rate`` defaults to 16000 if present, else the task's only sample rate.
        """
        if split not in self.metadata.splits:
            raise ValueError(f"unknown split {split!r}; this task has splits {self.metadata.splits}")
        check_clip_name(name)
        sr = self._default_rate() if sample_rate is None else int(sample_rate)
        base = (self.root / str(sr) / split)
        path = base / name
        real_base = base.resolve()
        real = path.resolve()
        if real.parent != real_base or not real.is_relative_to(self.root.resolve()):
            raise DataError(
                f"clip {name!r} of split {split!r} resolves to {real}, outside {real_base}; "
                f"refusing to read it (a symlink points out of the task folder)"
            )
        return path

    def read_audio(self, split: str, name: str, sample_rate: int | None = None
                   ) -> tuple[np.ndarray, int]:
        """Clip ``name`` as float32 mono (N,) and its sample rate."""
        from eval_suites.synthetic.synth import read_wav

        return read_wav(self.audio_path(split, name, sample_rate))

    def label_counts(self, split: str) -> dict[str, int]:
        """How many clips (scene) or events (event) carry each label in ``split``."""
        counts = {v: 0 for v in self.vocabulary}
        for labels in self.labels[split].values():
            for lbl in labels:
                key = lbl if isinstance(lbl, str) else lbl["label"]
                counts[key] = counts.get(key, 0) + 1
        return counts

    def _default_rate(self) -> int:
        if 16000 in self.sample_rates:
            return 16000
        if len(self.sample_rates) == 1:
            return self.sample_rates[0]
        raise ValueError(f"task {self.root} has audio at sample rates {self.sample_rates}; "
                         f"pass sample_rate= explicitly")


def task_is_complete(task_dir: str | Path) -> bool:
    """True when ``task_dir`` holds task_metadata.json (written last by TaskWriter)."""
    return (Path(task_dir) / METADATA_FILE).is_file()


def _read_vocabulary(path: Path) -> tuple[list[str], list[str]]:
    """(labels in idx order, problems) of a labelvocabulary.csv."""
    p: list[str] = []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != ["idx", "label"]:
        return [], [f"{VOCABULARY_FILE}: expected header 'idx,label', got {rows[:1]}"]
    labels: list[str] = []
    for i, row in enumerate(rows[1:]):
        if len(row) != 2 or row[0] != str(i):
            p.append(f"{VOCABULARY_FILE} row {i + 2}: expected '{i},<label>', got {row}")
            continue
        if not _pandas_label_ok(row[1]):
            p.append(f"{VOCABULARY_FILE}: label {row[1]!r} is read by pandas (heareval) "
                     f"as a different string")
        labels.append(row[1])
    if not labels:
        p.append(f"{VOCABULARY_FILE}: no labels")
    if len(set(labels)) != len(labels):
        p.append(f"{VOCABULARY_FILE}: repeated labels")
    return labels, p


def _load(task_dir: str | Path, check_audio: bool) -> tuple[HearTask | None, list[str]]:
    root = Path(task_dir)
    p: list[str] = []
    if not root.is_dir():
        return None, [f"task folder {root} does not exist"]
    meta_path = root / METADATA_FILE
    metadata = None
    if not meta_path.is_file():
        p.append(f"{METADATA_FILE} is missing (the task was not finalized)")
    else:
        try:
            metadata = TaskMetadata.from_dict(json.loads(meta_path.read_text(encoding="utf-8")))
        except TaskFormatError as e:
            p.extend(f"{METADATA_FILE}: {q}" for q in e.problems)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
            p.append(f"{METADATA_FILE}: not valid JSON ({type(e).__name__}: {e})")
    vocab: list[str] = []
    if not (root / VOCABULARY_FILE).is_file():
        p.append(f"{VOCABULARY_FILE} is missing")
    else:
        try:
            vocab, vp = _read_vocabulary(root / VOCABULARY_FILE)
        except UnicodeDecodeError as e:
            vocab, vp = [], [f"{VOCABULARY_FILE}: not UTF-8 text (byte {e.start})"]
        p.extend(vp)
    if metadata is None:
        return None, p

    rates = sorted(int(d.name) for d in root.iterdir() if d.is_dir() and d.name.isdigit())
    if not rates:
        p.append(f"no audio folder <sample_rate>/ (e.g. {root}/16000/)")
    labels: dict[str, dict[str, Labels]] = {}
    seen: dict[str, str] = {}
    vocab_set = set(vocab)
    for split in metadata.splits:
        split_file = root / f"{split}.json"
        if not split_file.is_file():
            p.append(f"{split}.json is missing")
            continue
        try:
            data = _json_no_duplicates(split_file)
        except (ValueError, RecursionError) as e:
            p.append(f"{split}.json: not valid ({e})")
            continue
        if not isinstance(data, dict) or not data:
            p.append(f"{split}.json: expected a non-empty object of clip name -> labels")
            continue
        labels[split] = data
        for name, lab in data.items():
            try:
                check_clip_name(name)
            except ValueError as e:
                p.append(f"{split}.json: {e}")
                continue
            if name in seen:
                p.append(f"clip {name!r} is in splits {seen[name]!r} and {split!r}; "
                         f"names must be unique across splits")
            seen[name] = split
            clip_ms = None
            if check_audio:
                for sr in rates:
                    wav = root / str(sr) / split / name
                    clip_ms = _audio_problems(wav, sr, metadata, p, f"{sr}/{split}/{name}")
            p.extend(_label_problems(lab, metadata, clip_ms, f"{split}.json clip {name!r}"))
            if isinstance(lab, list):
                for lbl in lab:
                    key = lbl.get("label") if isinstance(lbl, dict) else lbl
                    if isinstance(key, str) and key not in vocab_set and vocab:
                        p.append(f"{split}.json clip {name!r}: label {key!r} is not in "
                                 f"{VOCABULARY_FILE}")
    return HearTask(root=root, metadata=metadata, vocabulary=vocab, labels=labels,
                    sample_rates=rates), p


def _audio_problems(wav: Path, sr: int, metadata: TaskMetadata, p: list[str],
                    where: str) -> float | None:
    """Append problems with one clip file to ``p``; return its length in ms (or None)."""
    if wav.is_symlink() or not wav.is_file():
        p.append(f"audio {where}: {'is a symlink' if wav.is_symlink() else 'missing'}")
        return None
    try:
        info = sf.info(str(wav))
    except RuntimeError as e:
        p.append(f"audio {where}: unreadable ({e})")
        return None
    if info.format != "WAV" or info.subtype != "PCM_16":
        p.append(f"audio {where}: expected 16-bit PCM WAV, got {info.format}/{info.subtype}")
    if info.channels != 1:
        p.append(f"audio {where}: expected mono, got {info.channels} channels")
    if info.samplerate != sr:
        p.append(f"audio {where}: expected sample rate {sr} (its folder), got {info.samplerate}")
    if metadata.sample_duration is not None:
        n = int(round(metadata.sample_duration * sr))
        if info.frames != n:
            p.append(f"audio {where}: expected {n} samples (sample_duration "
                     f"{metadata.sample_duration} s; heareval batches clips), got {info.frames}")
    return 1000.0 * info.frames / info.samplerate


def load_task(task_dir: str | Path) -> HearTask:
    """Read a task folder's metadata, vocabulary and labels (audio is not opened).

    Raises ``TaskFormatError`` listing problems with those files; use
    :func:`validate_task` for a full check including the audio.
    """
    task, problems = _load(task_dir, check_audio=False)
    if problems or task is None:
        raise TaskFormatError(f"task {task_dir}", problems)
    return task


def validate_task(task_dir: str | Path) -> HearTask:
    """Check a whole task folder as heareval will read it; returns the loaded task.

    Raises ``TaskFormatError`` listing every problem: missing files, bad metadata,
    labels not in the vocabulary or of the wrong kind, repeated clip names, event times
    outside their clip, audio missing, not mono 16-bit PCM WAV, at the wrong sample rate
    or of the wrong length.
    """
    task, problems = _load(task_dir, check_audio=True)
    if problems or task is None:
        raise TaskFormatError(f"task {task_dir}", problems)
    return task
