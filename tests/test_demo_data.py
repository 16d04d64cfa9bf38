"""eval_suites.synthetic.demo_data: the offline demo is deterministic, valid, balanced, disjoint, cached."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval_suites.synthetic import demo_data
from eval_suites.synthetic.demo_data import PRESETS, SplitCounts, build_demo, corpus_overlap
from eval_suites.synthetic.demo_tasks import split_voices
from eval_suites.hear_format.task import load_task, validate_task
from hear_slicer.written import RECORD_NAME

TINY = PRESETS["tiny"]
TASKS = ("keywords", "speakers", "languages", "nsynth_family", "nsynth_pitch", "events")
N_CLASSES = {"keywords": len(demo_data.KEYWORDS), "speakers": TINY.n_speakers,
             "languages": len(demo_data.LANGUAGE_SENTENCES), "nsynth_family": 11,
             "nsynth_pitch": TINY.pitch_range[1] - TINY.pitch_range[0] + 1}
PER_CLASS = {"keywords": TINY.keywords, "speakers": TINY.speakers, "languages": TINY.languages,
             "nsynth_family": TINY.instruments, "nsynth_pitch": TINY.pitch}


def tree_bytes(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def mtimes(root: Path) -> dict[Path, int]:
    return {p.relative_to(root): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("demo")
    return root, build_demo(root, "tiny", workers=2, progress=False)


def test_parts_and_layout(built):
    root, paths = built
    assert list(paths) == [*TASKS, "corpus"]
    for name in TASKS:
        assert paths[name] == root / "tasks" / f"demo_{name}-v1-full"
    assert paths["corpus"] == root / "corpus"
    assert (root / demo_data.RECIPE_FILE).is_file()


@pytest.mark.parametrize("name", list(N_CLASSES))
def test_scene_tasks_valid_and_balanced(built, name):
    task = validate_task(built[1][name])
    assert task.metadata.embedding_type == "scene" and task.sample_rates == [16000]
    assert len(task.vocabulary) == N_CLASSES[name]
    for split, n in PER_CLASS[name].as_dict().items():
        counts = task.label_counts(split)
        assert set(counts.values()) == {n}, (split, counts)


def test_event_task_valid_and_every_label_in_train(built):
    task = validate_task(built[1]["events"])
    assert task.metadata.embedding_type == "event"
    assert len(task.labels["train"]) == TINY.events.train
    counts = task.label_counts("train")
    assert min(counts.values()) >= 1 and max(counts.values()) <= 3 * min(counts.values()), counts
    for clips in task.labels.values():
        for events in clips.values():
            assert all(0 <= e["start"] < e["end"] <= 1000 * TINY.event_seconds for e in events)


def test_pitch_labels_sort_as_consecutive_semitones(built):
    task = load_task(built[1]["nsynth_pitch"])
    assert task.metadata.evaluation == ["pitch_acc", "chroma_acc"]
    lo, hi = TINY.pitch_range
    assert task.vocabulary == [str(p) for p in range(lo, hi + 1)]  # index % 12 is the chroma


def test_test_speakers_and_sentences_unseen_in_training(built):
    _, paths = built
    kw = load_task(paths["keywords"]).metadata.notes["voices_by_split"]
    assert not set(kw["train"]) & set(kw["test"]) and not set(kw["valid"]) & set(kw["test"])
    lang = load_task(paths["languages"]).metadata.notes["build_args"]
    assert not set(lang["variants"]["train"]) & set(lang["variants"]["test"])
    for sentences in lang["sentences"].values():
        assert not set(sentences["train"]) & set(sentences["test"])
    spk = load_task(paths["speakers"]).metadata.notes["build_args"]
    assert not set(spk["sentences"]["train"]) & set(spk["sentences"]["test"])
    fam = load_task(paths["nsynth_family"]).metadata.notes["programs_by_split"]
    for family in fam["test"]:
        assert not set(fam["train"][family]) & set(fam["test"][family])


@pytest.mark.slow  # make test-fast: over 10 s
def test_deterministic_bytes(built, tmp_path):
    root, _ = built
    build_demo(tmp_path, "tiny", workers=1, progress=False)
    a, b = tree_bytes(tmp_path), tree_bytes(root)
    for tree in (a, b):  # the builder's record of its files names unique temporary files: bookkeeping, not data
        tree.pop(Path(RECORD_NAME))
    assert a.keys() == b.keys()
    assert [p for p in a if a[p] != b[p]] == []


def test_corpus_files(built):
    root, paths = built
    wavs = sorted(paths["corpus"].glob("*.wav"))
    assert len(wavs) == TINY.corpus_files
    kinds = {w.stem.split("_")[1] for w in wavs}
    assert kinds == {"speech", "music"}
    for w in wavs:
        info = sf.info(str(w))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert 1.0 <= info.frames / 16000 <= 6.0
        x, _ = sf.read(str(w))
        assert np.abs(x).max() > 0.25  # gain 0.3-0.95 after peak normalisation: not silence


def test_corpus_disjoint_from_every_test_split(built):
    root, _ = built
    assert corpus_overlap(root, "tiny") == {"voices": set(), "texts": set(), "programs": set(),
                                            "recordings": set()}


def test_corpus_overlap_detects_a_test_voice_text_and_program(built, tmp_path):
    root, _ = built
    shutil.copytree(root / "corpus", tmp_path / "corpus")
    index = tmp_path / "corpus" / "index.csv"
    test_voice = split_voices(demo_data.KEYWORD_VOICES)["test"][-1]  # espeak:en+michel
    test_text = demo_data.LANGUAGE_SENTENCES["de"]["test"][0]
    with open(index, "a", encoding="utf-8") as f:
        f.write(f'x.wav,speech,1.00,{test_voice.replace("en+", "fr+")},fr,"{test_text}",\n')
        f.write("y.wav,music,1.00,,,,0\n")
    found = corpus_overlap(tmp_path, "tiny")
    assert found == {"voices": {"espeak-variant:michel"}, "texts": {test_text}, "programs": {0},
                     "recordings": set()}


def test_corpus_sources_of_the_small_preset_are_disjoint():
    """The same check on the small preset's pools, without building it."""
    test = demo_data._test_split_sources(PRESETS["small"])
    assert not {f"espeak-variant:{v}" for v in demo_data.CORPUS_VARIANTS} & test["voices"]
    assert not set(demo_data._corpus_programs()) & test["programs"]
    texts = {t for ts in demo_data._corpus_texts().values() for t in ts}
    assert not texts & test["texts"]
    assert len(demo_data.CORPUS_VARIANTS) >= 8 and len(demo_data._corpus_programs()) >= 30


def test_second_build_is_a_noop(built):
    root, paths = built
    before = mtimes(root)
    again = build_demo(root, "tiny", workers=2, progress=False)  # its time: benchmarks/build_tasks.py
    assert again == paths
    assert mtimes(root) == before


@pytest.mark.slow  # make test-fast: over 3 s (with its fixture)
def test_changed_recipe_rebuilds_only_what_changed(built, tmp_path):
    root, _ = built
    shutil.copytree(root, tmp_path / "demo")  # copy2 keeps modification times
    work = tmp_path / "demo"
    before, old_bytes = mtimes(work), tree_bytes(work)
    changed = dataclasses.replace(TINY, keywords=SplitCounts(3, 1, 1), corpus_files=14)
    build_demo(work, changed, workers=2, progress=False)
    after = mtimes(work)
    rebuilt = {p.parts[0] if p.parts[0] != "tasks" else p.parts[1] for p in after
               if before.get(p) != after[p] and p.name != RECORD_NAME}  # the record grows with every write
    assert rebuilt == {"demo_keywords-v1-full", "corpus", demo_data.RECIPE_FILE}
    assert load_task(work / "tasks" / "demo_keywords-v1-full").label_counts("train") == {
        w: 3 for w in demo_data.KEYWORDS}
    assert len(list((work / "corpus").glob("*.wav"))) == 14
    # the unchanged corpus files are kept byte for byte (same seeds)
    assert (work / "corpus" / "00003_music.wav").read_bytes() == old_bytes[Path("corpus/00003_music.wav")]


def test_code_version_is_part_of_every_hash(monkeypatch):
    parts = demo_data.demo_parts(TINY)
    hashes = [demo_data._part_hash(p) for p in parts]
    assert len(set(hashes)) == len(parts)
    demo_data.code_version.cache_clear()
    monkeypatch.setattr(demo_data, "_engine_versions", lambda: {"espeak-ng": "other"})
    try:
        assert all(demo_data._part_hash(p) != h for p, h in zip(parts, hashes))
    finally:
        demo_data.code_version.cache_clear()


def test_manifest_lists_the_demo_tasks(built):
    from eval_suites.core.manifest import check_inputs, load_manifest

    root, paths = built
    manifest = load_manifest(Path(__file__).parents[1] / "eval_suites/manifests/demo.yaml",
                             tasks_root=root / "tasks")
    assert sorted(t.path for t in manifest.tasks) == sorted(paths[n] for n in TASKS)
    problems = [p for p in check_inputs(manifest, check_audio=True) if p.startswith("task")]
    assert problems == []


def test_cli(built, capsys):
    root, paths = built
    assert demo_data.main(["--root", str(root), "--preset", "tiny", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert all(str(p) in out for p in paths.values())
    with pytest.raises(SystemExit) as e:
        demo_data.main(["--help"])
    assert e.value.code == 0 and "--preset" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        demo_data.main(["--root", str(root), "--preset", "huge"])


def test_unknown_preset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="tiny"):
        build_demo(tmp_path, "huge")
