"""eval_suites.synthetic.demo_tasks: real-audio HEAR tasks are valid, balanced, deterministic and truthful."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eval_suites.synthetic import demo_tasks
from eval_suites.hear_format.task import load_task, validate_task

SR = 16000
BUILDERS = {
    "keywords": lambda out, **kw: demo_tasks.build_keyword_task(out, clips_per_word_per_split=2, **kw),
    "instruments": lambda out, **kw: demo_tasks.build_instrument_task(out, clips_per_class_per_split=2, **kw),
    "events": lambda out, **kw: demo_tasks.build_event_task(out, n_clips_per_split=3, **kw),
}


def tree_bytes(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("demo")
    return {kind: build(out) for kind, build in BUILDERS.items()}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_valid_format(built, kind):
    task = validate_task(built[kind])
    assert task.metadata.split_mode == "trainvaltest"
    assert task.sample_rates == [SR]
    assert built[kind].name == task.metadata.folder_name


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_deterministic_bytes(built, kind, tmp_path):
    again = BUILDERS[kind](tmp_path, workers=1) if kind == "keywords" else BUILDERS[kind](tmp_path)
    assert tree_bytes(again) == tree_bytes(built[kind])


@pytest.mark.parametrize("kind", ["keywords", "instruments"])
def test_scene_labels_balanced(built, kind):
    task = load_task(built[kind])
    for split in task.metadata.splits:
        counts = task.label_counts(split)
        assert set(counts.values()) == {2}, (split, counts)
        assert len(counts) == 4


def test_seed_changes_the_audio(built, tmp_path):
    other = demo_tasks.build_keyword_task(tmp_path, clips_per_word_per_split=2, seed=1)
    a, b = tree_bytes(other), tree_bytes(built["keywords"])
    wavs = [p for p in a if p.suffix == ".wav"]
    assert wavs and all(a[p] != b[p] for p in wavs)


def test_keyword_speakers_disjoint_across_splits(built):
    by_split = load_task(built["keywords"]).metadata.notes["voices_by_split"]
    train, valid, test = (set(by_split[s]) for s in ("train", "valid", "test"))
    assert train and valid and test
    assert not (train & test) and not (train & valid) and not (valid & test)
    assert train | valid | test == set(demo_tasks.DEFAULT_VOICES)


def test_keyword_clips_hold_speech_louder_than_the_noise(built):
    task = load_task(built["keywords"])
    for name in list(task.labels["test"])[:4]:
        x, sr = task.read_audio("test", name)
        assert sr == SR and len(x) == SR and np.abs(x).max() == pytest.approx(0.9, abs=1e-3)
        frames = x[: len(x) // 160 * 160].reshape(-1, 160)
        rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
        assert rms.max() > 3 * np.median(rms), name  # speech stands out of the background


def test_event_labels_inside_clip_and_on_the_sound(built):
    task = load_task(built["events"])
    clip_ms = 1000.0 * task.metadata.sample_duration
    seen = set()
    for split, clips in task.labels.items():
        for name, events in clips.items():
            x, _ = task.read_audio(split, name)
            assert len(x) == int(task.metadata.sample_duration * SR)
            assert len(events) >= 2
            inside = np.zeros(len(x), bool)
            for ev in events:
                assert 0 <= ev["start"] < ev["end"] <= clip_ms
                assert ev["label"] in demo_tasks.EVENT_LABELS
                seen.add(ev["label"])
                inside[int(ev["start"] * SR / 1000): int(ev["end"] * SR / 1000)] = True
            # the labelled spans hold the sounds: much more energy inside than outside
            e_in = np.mean(x[inside].astype(np.float64) ** 2)
            e_out = np.mean(x[~inside].astype(np.float64) ** 2)
            assert e_in > 4 * e_out, (split, name, e_in, e_out)
            starts = [ev["start"] for ev in events]
            assert starts == sorted(starts)
    assert seen == set(demo_tasks.EVENT_LABELS)


def test_second_call_reuses_a_complete_task_and_other_args_are_refused(built):
    root = built["keywords"]
    stamp = (root / "task_metadata.json").stat().st_mtime_ns
    assert BUILDERS["keywords"](root.parent) == root
    assert (root / "task_metadata.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="overwrite=True"):
        demo_tasks.build_keyword_task(root.parent, clips_per_word_per_split=1)


def test_bad_voice_fails_before_writing(tmp_path):
    with pytest.raises(ValueError, match="nosuch"):
        demo_tasks.build_keyword_task(tmp_path, voices=("espeak:en+nosuch", "flite:slt", "flite:awb"))
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_heareval_reads_the_tasks(built):
    """heareval 2021.1.3's own readers and scorers accept the tasks (imports TensorFlow: slow)."""
    import json

    from heareval.embeddings.task_embeddings import AudioFileDataset, get_labels_for_timestamps
    from heareval.predictions.task_predictions import get_splits_from_metadata, label_vocab_nlabels
    from heareval.score import available_scores, label_vocab_as_dict
    from torch.utils.data import DataLoader

    for kind, root in built.items():
        meta = json.loads((root / "task_metadata.json").read_text())
        vocab, nlabels = label_vocab_nlabels(root)
        label_to_idx = label_vocab_as_dict(vocab, key="label", value="idx")
        assert get_splits_from_metadata(meta) == [{"train": ["train"], "valid": ["valid"], "test": ["test"]}]
        for score in meta["evaluation"]:
            available_scores[score](label_to_idx=label_to_idx)
        for split in meta["splits"]:
            data = json.loads((root / f"{split}.json").read_text())
            ds = AudioFileDataset(data, root / "16000" / split, 16000)
            batch, names = next(iter(DataLoader(ds, batch_size=len(ds))))  # same-length clips batch
            assert batch.shape == (len(data), int(meta["sample_duration"] * 16000))
            for labels in data.values():
                for lbl in labels:
                    assert (lbl if isinstance(lbl, str) else lbl["label"]) in label_to_idx
            if meta["embedding_type"] == "event":
                times = np.tile(np.arange(0, 1000 * meta["sample_duration"], 50.0), (len(names), 1))
                per_frame = get_labels_for_timestamps([data[n] for n in names], times)
                assert any(any(frame) for clip in per_frame for frame in clip)
    # ground truth scored as a prediction gives a perfect onset F-measure
    root = built["events"]
    meta = json.loads((root / "task_metadata.json").read_text())
    vocab, _ = label_vocab_nlabels(root)
    test = json.loads((root / "test.json").read_text())
    score = available_scores["event_onset_200ms_fms"](
        label_to_idx=label_vocab_as_dict(vocab, key="label", value="idx"))
    assert dict(score(test, test))["f_measure"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- NSynth families, pitch, speakers, languages


@pytest.mark.slow  # make test-fast: over 3 s (with its fixture)
def test_nsynth_programs_sound_at_both_ends_of_their_range():
    """Every program of every NSynth family is audible at the lowest and highest pitch
    of its family's range in FluidR3_GM (the whole grid was checked when choosing them)."""
    for fam, programs in demo_tasks.NSYNTH_FAMILIES.items():
        lo, hi = demo_tasks.NSYNTH_PITCH_RANGES[fam]
        assert demo_tasks.silent_notes(programs, [lo, hi]) == [], fam


def test_silent_notes_finds_a_known_gap():
    # FluidR3_GM's contrabass (43) has no samples above about MIDI 57
    assert demo_tasks.silent_notes([43, 40], [50, 70]) == [(43, 70)]


def test_nsynth_family_programs_are_distinct_and_split_disjointly():
    all_programs = [p for ps in demo_tasks.NSYNTH_FAMILIES.values() for p in ps]
    assert len(demo_tasks.NSYNTH_FAMILIES) == 11 and len(set(all_programs)) == len(all_programs)
    for ps in demo_tasks.NSYNTH_FAMILIES.values():
        s = demo_tasks.split_programs(ps)
        assert sorted(s["train"] + s["valid"] + s["test"]) == sorted(ps)
        assert not set(s["train"]) & (set(s["valid"]) | set(s["test"]))
    with pytest.raises(ValueError, match="at least 3"):
        demo_tasks.split_programs([0, 1])


def _f0_midi(x: np.ndarray, sr: int = SR) -> float:
    """MIDI pitch of the loudest 200 ms of ``x`` by autocorrelation (55-1000 Hz)."""
    a, _ = demo_tasks._active_span(x)
    seg = x[a + 800: a + 800 + 3200].astype(np.float64)
    seg = seg - seg.mean()
    ac = np.correlate(seg, seg, "full")[len(seg) - 1:]
    lo, hi = int(sr / 1000), int(sr / 55)
    lag = lo + int(np.argmax(ac[lo:hi]))
    return 69 + 12 * np.log2(sr / lag / 440.0)


def test_pitch_task_labels_are_the_pitch_heard(tmp_path):
    root = demo_tasks.build_pitch_task(
        tmp_path, programs={"train": [0], "valid": [24], "test": [40]},
        pitches=range(55, 67), clips_per_pitch_per_split=1, snr_db=(30.0, 40.0))
    task = validate_task(root)
    assert task.vocabulary == [str(p) for p in range(55, 67)]
    hits = total = 0
    for split, clips in task.labels.items():
        for name, (label,) in clips.items():
            x, _ = task.read_audio(split, name)
            total += 1
            hits += round(_f0_midi(x)) % 12 == int(label) % 12  # octave errors allowed
    assert hits >= 0.85 * total, (hits, total)
    with pytest.raises(ValueError, match="consecutive"):
        demo_tasks.build_pitch_task(tmp_path, programs={"train": [0], "valid": [0], "test": [0]},
                                    pitches=[98, 99, 100])


def test_instrument_task_with_disjoint_programs(tmp_path):
    fams = ("bass", "flute", "mallet")
    root = demo_tasks.build_instrument_task(
        tmp_path, families=fams, clips_per_class_per_split={"train": 3, "valid": 1, "test": 2},
        family_programs=demo_tasks.NSYNTH_FAMILIES, pitch_ranges=demo_tasks.NSYNTH_PITCH_RANGES,
        disjoint_programs=True, name="fam")
    task = validate_task(root)
    assert [task.label_counts(s) for s in ("train", "valid", "test")] == [
        {f: n for f in fams} for n in (3, 1, 2)]
    by_split = task.metadata.notes["programs_by_split"]
    for f in fams:
        assert by_split["test"][f] == [demo_tasks.NSYNTH_FAMILIES[f][-1]]


def test_speaker_task_one_class_per_voice_and_sentences_checked(tmp_path):
    voices = ("espeak:en-us+m3", "espeak:en-us+f2", "flite:slt")
    sentences = {"train": ["A red boat.", "The cold wind."], "valid": ["Green hills."],
                 "test": ["A tall tree."]}
    root = demo_tasks.build_speaker_task(tmp_path, voices, sentences,
                                         clips_per_speaker_per_split={"train": 2, "valid": 1, "test": 1})
    task = validate_task(root)
    assert task.vocabulary == sorted(voices)
    assert set(task.label_counts("train").values()) == {2}
    with pytest.raises(ValueError, match="share sentences"):
        demo_tasks.build_speaker_task(tmp_path, voices, {**sentences, "test": ["Green hills."]},
                                      name="bad")


def test_language_task_refuses_shared_variants(tmp_path):
    sentences = {lang: {"train": ["a b c"], "valid": ["d e"], "test": ["f g"]} for lang in ("de", "fr")}
    with pytest.raises(ValueError, match="disjoint"):
        demo_tasks.build_language_task(tmp_path, sentences,
                                       {"train": ["m1", "m2"], "valid": ["m3"], "test": ["m2"]})
    with pytest.raises(ValueError, match="nosuch"):
        demo_tasks.build_language_task(tmp_path, sentences,
                                       {"train": ["m1"], "valid": ["m3"], "test": ["nosuch"]})
    assert not any(tmp_path.iterdir())


def test_progress_counts_every_clip(tmp_path):
    seen = []
    demo_tasks.build_keyword_task(tmp_path, words=("yes", "no"), clips_per_word_per_split=1,
                                  progress=seen.append)
    assert sum(seen) == 6
