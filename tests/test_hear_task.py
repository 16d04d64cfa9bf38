"""eval_suites.hear_format.task: HEAR task folders written, read, validated, resumed (real espeak-ng audio)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval_suites.synthetic import synth
from eval_suites.hear_format.task import (
    TaskFormatError,
    TaskMetadata,
    TaskWriter,
    fold_names,
    load_task,
    task_is_complete,
    validate_task,
)

SR = 16000
WORDS = ("yes", "no", "left")


@pytest.fixture(scope="module")
def speech() -> dict[str, np.ndarray]:
    """Real espeak-ng words at espeak's native 22050 Hz (the writer must resample)."""
    return {w: synth.espeak(w, sample_rate=22050) for w in WORDS}


def write_scene_task(task_dir: Path, speech, sample_duration=1.0) -> Path:
    meta = TaskMetadata.scene("words", sample_duration=sample_duration,
                              notes={"valid": "carved from train"})
    w = TaskWriter(task_dir, meta)
    for split in ("train", "valid", "test"):
        for word in WORDS:
            w.add_clip(split, f"{split}_{word}.wav", speech[word], 22050, [word])
    return w.finalize()


def write_event_task(task_dir: Path, speech) -> Path:
    meta = TaskMetadata.event("wordevents", sample_duration=2.0)
    w = TaskWriter(task_dir, meta)
    for split in ("train", "valid", "test"):
        x = np.zeros(2 * 22050, np.float32)
        x[4410: 4410 + len(speech["yes"])] = speech["yes"]
        events = [{"label": "yes", "start": 200.0, "end": 200.0 + 1000 * len(speech["yes"]) / 22050},
                  {"label": "beep", "start": 1500, "end": 1900}]
        w.add_clip(split, f"{split}_0.wav", x, 22050, events)
    return w.finalize()


# --------------------------------------------------------------------------- round trip


def test_scene_round_trip(tmp_path, speech):
    root = write_scene_task(tmp_path / "words-v1-full", speech)
    assert task_is_complete(root)
    assert not (root / ".taskwriter").exists()
    task = validate_task(root)
    assert task.vocabulary == sorted(WORDS)
    assert task.sample_rates == [SR]
    assert task.metadata.notes == {"valid": "carved from train"}
    assert task.labels["test"] == {f"test_{w}.wav": [w] for w in WORDS}
    assert (root / "labelvocabulary.csv").read_text() == "idx,label\n0,left\n1,no\n2,yes\n"
    # audio: resampled from 22050 Hz, padded to 1 s, 16-bit mono
    info = sf.info(str(task.audio_path("train", "train_yes.wav")))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", SR)
    x, sr = task.read_audio("train", "train_yes.wav")
    ref = synth.resample(speech["yes"], 22050, SR)
    n = min(len(ref), SR)
    assert np.max(np.abs(x[:n] - ref[:n])) <= 1 / 32768 + 1e-6
    assert not np.any(x[n:])  # zero padding
    meta = json.loads((root / "task_metadata.json").read_text())
    assert TaskMetadata.from_dict(meta) == task.metadata
    for key in ("task_name", "embedding_type", "prediction_type", "split_mode",
                "sample_duration", "evaluation", "splits", "nfolds", "mode", "version"):
        assert key in meta


def test_crop_to_sample_duration(tmp_path, speech):
    root = write_scene_task(tmp_path / "t", speech, sample_duration=0.25)
    task = validate_task(root)
    x, _ = task.read_audio("valid", "valid_left.wav")
    assert len(x) == int(0.25 * SR)


def test_event_round_trip(tmp_path, speech):
    root = write_event_task(tmp_path / "e", speech)
    task = validate_task(root)
    assert task.vocabulary == ["beep", "yes"]
    events = task.labels["train"]["train_0.wav"]
    assert [e["label"] for e in events] == ["yes", "beep"]
    assert all(isinstance(e["start"], float) and isinstance(e["end"], float) for e in events)
    assert events[1] == {"label": "beep", "start": 1500.0, "end": 1900.0}


def test_kfold_task(tmp_path, speech):
    meta = TaskMetadata.scene("k", split_mode="new_split_kfold", nfolds=3, splits=fold_names(3))
    w = TaskWriter(tmp_path / "k", meta)
    for i, fold in enumerate(fold_names(3)):
        w.add_clip(fold, f"c{i}.wav", speech["yes"], 22050, ["yes"])
    task = validate_task(w.finalize())
    assert task.metadata.splits == ["fold00", "fold01", "fold02"]
    # variable length clips (sample_duration None) keep their own length
    x, _ = task.read_audio("fold01", "c1.wav")
    assert abs(len(x) - len(speech["yes"]) * SR / 22050) <= 2


def test_event_times_are_trimmed_on_request(tmp_path, speech):
    meta = TaskMetadata.event("e", sample_duration=1.0)
    w = TaskWriter(tmp_path / "e", meta)
    long_events = [{"label": "a", "start": 500, "end": 1500}, {"label": "b", "start": 1200, "end": 1300}]
    with pytest.raises(ValueError, match="after the clip's end"):
        w.add_clip("train", "x.wav", np.zeros(SR), SR, long_events)
    w.add_clip("train", "x.wav", np.zeros(SR), SR, long_events, trim_events=True)
    assert w._clips["train"]["x.wav"][0] == [{"label": "a", "start": 500.0, "end": 1000.0}]


# --------------------------------------------------------------------------- metadata


def test_metadata_errors_name_every_bad_key():
    with pytest.raises(TaskFormatError) as e:
        TaskMetadata.from_dict({"task_name": "t", "embedding_type": "sceen",
                                "prediction_type": "multiclass", "split_mode": "kfold",
                                "sample_duration": -1, "evaluation": ["accuracy"],
                                "splits": ["train"]})
    text = str(e.value)
    for key in ("embedding_type", "split_mode", "sample_duration", "evaluation"):
        assert f"key '{key}'" in text
    with pytest.raises(TaskFormatError, match="key 'splits' is missing"):
        TaskMetadata.from_dict({"task_name": "t", "embedding_type": "scene",
                                "prediction_type": "multiclass", "split_mode": "trainvaltest",
                                "sample_duration": None, "evaluation": ["top1_acc"]})
    with pytest.raises(TaskFormatError, match="multilabel"):
        TaskMetadata.event("e", prediction_type="multiclass")
    with pytest.raises(TaskFormatError, match="nfolds"):
        TaskMetadata.scene("k", split_mode="presplit_kfold", splits=fold_names(2), nfolds=2)
    with pytest.raises(TaskFormatError, match="event_onset_200ms_fms"):
        TaskMetadata.scene("s", evaluation=["event_onset_200ms_fms"])


def test_metadata_keeps_unknown_keys():
    d = TaskMetadata.scene("s").to_dict()
    d["download_urls"] = ["x"]
    d["evaluation_params"] = {"task_specific_param_grid": {"lr": [1e-3]}}
    again = TaskMetadata.from_dict(d).to_dict()
    assert again == d


# --------------------------------------------------------------------------- validation


def break_and_validate(root: Path, breaker) -> str:
    breaker(root)
    with pytest.raises(TaskFormatError) as e:
        validate_task(root)
    return str(e.value)


def _rewrite_json(path: Path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


CASES = {
    "missing metadata": (lambda r: (r / "task_metadata.json").unlink(), "task_metadata.json is missing"),
    "missing vocabulary": (lambda r: (r / "labelvocabulary.csv").unlink(), "labelvocabulary.csv is missing"),
    "missing split file": (lambda r: (r / "valid.json").unlink(), "valid.json is missing"),
    "label not in vocabulary": (
        lambda r: _rewrite_json(r / "train.json", lambda d: d.update({"train_yes.wav": ["maybe"]})),
        "label 'maybe' is not in labelvocabulary.csv"),
    "two labels in multiclass": (
        lambda r: _rewrite_json(r / "train.json", lambda d: d.update({"train_yes.wav": ["yes", "no"]})),
        "exactly one label"),
    "wav missing": (lambda r: (r / "16000" / "test" / "test_no.wav").unlink(), "16000/test/test_no.wav: missing"),
    "stereo": (lambda r: sf.write(r / "16000/train/train_no.wav", np.zeros((SR, 2)), SR, subtype="PCM_16"),
               "expected mono"),
    "24 bit": (lambda r: sf.write(r / "16000/train/train_no.wav", np.zeros(SR), SR, subtype="PCM_24"),
               "expected 16-bit PCM WAV"),
    "wrong rate": (lambda r: sf.write(r / "16000/train/train_no.wav", np.zeros(22050), 22050, subtype="PCM_16"),
                   "expected sample rate 16000"),
    "wrong length": (lambda r: sf.write(r / "16000/train/train_no.wav", np.zeros(SR // 2), SR, subtype="PCM_16"),
                     "expected 16000 samples"),
    "name in two splits": (
        lambda r: _rewrite_json(r / "test.json", lambda d: d.update({"train_no.wav": ["no"]})),
        "names must be unique across splits"),
    "repeated json key": (
        lambda r: (r / "test.json").write_text('{"test_no.wav": ["no"], "test_no.wav": ["yes"]}'),
        "repeated keys"),
    "escaping name": (
        lambda r: _rewrite_json(r / "test.json", lambda d: d.update({"../train/train_no.wav": ["no"]})),
        "not a plain file name"),
    "vocabulary index gap": (
        lambda r: (r / "labelvocabulary.csv").write_text("idx,label\n0,left\n2,no\n3,yes\n"),
        "row 3"),
    "empty split": (lambda r: (r / "valid.json").write_text("{}"), "valid.json: expected a non-empty"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_catches(tmp_path, speech, case):
    root = write_scene_task(tmp_path / "t", speech)
    breaker, expected = CASES[case]
    assert expected in break_and_validate(root, breaker)


def test_validation_lists_every_problem_at_once(tmp_path, speech):
    root = write_scene_task(tmp_path / "t", speech)
    msg = break_and_validate(root, lambda r: [CASES[c][0](r) for c in
                                              ("wav missing", "stereo", "label not in vocabulary")])
    for c in ("wav missing", "stereo", "label not in vocabulary"):
        assert CASES[c][1] in msg


def test_validation_catches_event_outside_clip(tmp_path, speech):
    root = write_event_task(tmp_path / "e", speech)

    def late(d):
        d["test_0.wav"][1]["end"] = 2500.0

    msg = break_and_validate(root, lambda r: _rewrite_json(r / "test.json", late))
    assert "after the clip's end at 2000.000 ms" in msg


def test_labels_pandas_would_change_are_refused(tmp_path, speech):
    w = TaskWriter(tmp_path / "t", TaskMetadata.scene("t"))
    for split in ("train", "valid", "test"):
        w.add_clip(split, f"{split}.wav", speech["yes"], 22050, ["01"])
    with pytest.raises(TaskFormatError, match="'01'"):
        w.finalize()
    assert not task_is_complete(tmp_path / "t")


def test_writer_refuses_bad_input(tmp_path, speech):
    w = TaskWriter(tmp_path / "t", TaskMetadata.scene("t"))
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        w.add_clip("dev", "a.wav", speech["yes"], 22050, ["yes"])
    with pytest.raises(ValueError, match="shape"):
        w.add_clip("train", "a.wav", np.zeros((2, 100)), SR, ["yes"])
    with pytest.raises(ValueError, match="not a plain file name"):
        w.add_clip("train", "a.mp3", speech["yes"], 22050, ["yes"])
    w.add_clip("train", "a.wav", speech["yes"], 22050, ["yes"])
    with pytest.raises(ValueError, match="already added"):
        w.add_clip("train", "a.wav", speech["yes"], 22050, ["yes"])
    with pytest.raises(ValueError, match="unique across splits"):
        w.add_clip("test", "a.wav", speech["yes"], 22050, ["yes"])
    with pytest.raises(TaskFormatError, match="split 'valid' has no clips"):
        w.finalize()


# --------------------------------------------------------------------------- path safety


def test_audio_path_refuses_escapes(tmp_path, speech):
    root = write_scene_task(tmp_path / "t", speech)
    task = load_task(root)
    secret = tmp_path / "secret.wav"
    synth.write_wav(secret, speech["no"], SR)
    for name in ("../train/train_yes.wav", "..", str(secret), "/etc/passwd", "sub/x.wav",
                 "..\\x.wav", ".hidden.wav"):
        with pytest.raises(ValueError):
            task.audio_path("train", name)
    with pytest.raises(ValueError, match="unknown split"):
        task.audio_path("../..", "x.wav")
    link = root / "16000" / "train" / "link.wav"
    os.symlink(secret, link)
    with pytest.raises(ValueError, match="outside"):
        task.audio_path("train", "link.wav")
    # a symlinked sample-rate folder pointing out of the task is refused too
    outside = tmp_path / "elsewhere" / "test"
    outside.mkdir(parents=True)
    synth.write_wav(outside / "test_no.wav", speech["no"], 8000)
    os.symlink(tmp_path / "elsewhere", root / "8000")
    with pytest.raises(ValueError, match="outside"):
        task.audio_path("test", "test_no.wav", sample_rate=8000)
    assert task.audio_path("train", "train_yes.wav") == root / "16000" / "train" / "train_yes.wav"


# --------------------------------------------------------------------------- resume


def test_resume_after_interruption_gives_the_same_task(tmp_path, speech):
    full = write_scene_task(tmp_path / "full", speech)
    meta = load_task(full).metadata
    clips = [(s, f"{s}_{w}.wav", w) for s in ("train", "valid", "test") for w in WORDS]

    part = tmp_path / "part"
    w = TaskWriter(part, meta)
    for split, name, word in clips[:4]:
        w.add_clip(split, name, speech[word], 22050, [word])
    del w  # interrupted: no finalize
    # a crash in the middle of the next record leaves a torn line behind
    with open(part / ".taskwriter" / "valid.jsonl", "a") as f:
        f.write('{"name": "valid_no.wav", "lab')
    assert not task_is_complete(part)

    w = TaskWriter(part, meta)
    assert [w.has_clip(s, n) for s, n, _ in clips] == [True] * 4 + [False] * 5
    for split, name, word in clips:
        if not w.has_clip(split, name):
            w.add_clip(split, name, speech[word], 22050, [word])
    w.finalize()

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(part) == files(full)


def test_resume_with_other_metadata_is_refused(tmp_path, speech):
    w = TaskWriter(tmp_path / "t", TaskMetadata.scene("t"))
    w.add_clip("train", "a.wav", speech["yes"], 22050, ["yes"])
    with pytest.raises(ValueError, match="other metadata"):
        TaskWriter(tmp_path / "t", TaskMetadata.scene("t", sample_duration=1.0))
    with pytest.raises(ValueError, match="other metadata"):
        TaskWriter(tmp_path / "t", TaskMetadata.scene("t"), sample_rate=22050)
    fresh = TaskWriter(tmp_path / "t", TaskMetadata.scene("t", sample_duration=1.0), overwrite=True)
    assert not fresh.has_clip("train", "a.wav")


def test_complete_task_and_foreign_folders_are_protected(tmp_path, speech):
    root = write_scene_task(tmp_path / "t", speech)
    with pytest.raises(FileExistsError, match="complete task"):
        TaskWriter(root, load_task(root).metadata)
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to delete"):
        TaskWriter(foreign, TaskMetadata.scene("t"), overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
