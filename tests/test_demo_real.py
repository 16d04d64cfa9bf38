"""Real recordings (sonic-pi-samples, freepats) and the `study` preset of the demo data.

The GUS patch reader is checked on a patch this file writes from the format's field
layout (literal offsets below) and on a real freepats patch; the study preset's code path
is built with tiny counts (same tasks, same corpus rule) and checked for balance,
disjoint recordings and the corpus overlap check.
"""
from __future__ import annotations

import csv
import dataclasses
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval_suites.synthetic import demo_data, recordings
from eval_suites.synthetic.demo_data import PRESETS, SplitCounts, build_demo, corpus_overlap, split_sizes
from eval_suites.hear_format.task import load_task, validate_task

SR = 16000


# --------------------------------------------------------------------------- a GUS patch by hand


def gus_wave(data: bytes, *, rate: int, low_mhz: int, high_mhz: int, root_mhz: int,
             loop: tuple[int, int], modes: int) -> bytes:
    """One 96-byte wave header + data, field by field (GF1 patch layout)."""
    h = b"wave\0\0\0"                                   # 0: name, 7 bytes
    h += bytes([0])                                     # 7: loop fractions
    h += struct.pack("<III", len(data), *loop)          # 8: data length, loop start/end (bytes)
    h += struct.pack("<H", rate)                        # 20: sample rate
    h += struct.pack("<III", low_mhz, high_mhz, root_mhz)  # 22: low/high/root frequency (mHz)
    h += struct.pack("<h", 512)                         # 34: tune
    h += bytes([7])                                     # 36: balance
    h += bytes(6) + bytes(6)                            # 37: envelope rates, offsets
    h += bytes(3) + bytes(3)                            # 49: tremolo, vibrato
    h += bytes([modes])                                 # 55: modes
    h += struct.pack("<hH", 60, 1024)                   # 56: scale frequency, factor
    h += bytes(36)                                      # 60: reserved
    assert len(h) == 96
    return h + data


def gus_file(waves: list[bytes]) -> bytes:
    header = b"GF1PATCH110\0" + b"ID#000002\0" + b"made by a test".ljust(60, b"\0")
    header += bytes([1, 14, 0]) + struct.pack("<HHI", len(waves), 127, sum(map(len, waves)))
    header += bytes(36)
    instrument = struct.pack("<H", 0) + b"test".ljust(16, b"\0") + struct.pack("<I", 0) + bytes([1])
    instrument += bytes(40)
    layer = bytes([0, 0]) + struct.pack("<I", 0) + bytes([len(waves)]) + bytes(40)
    assert (len(header), len(instrument), len(layer)) == (129, 63, 47)
    return header + instrument + layer + b"".join(waves)


def peak_hz(x: np.ndarray, sr: int) -> float:
    """Frequency of the largest spectral peak (parabolic interpolation of log magnitude)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) + 1e-12
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1: k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / len(x)


@pytest.fixture
def patch_file(tmp_path) -> Path:
    rate, f = 22050, 441.0                 # 50 samples per period
    t = np.arange(2000) / rate
    sine16 = np.round(20000 * np.sin(2 * np.pi * f * t)).astype("<i2")
    ramp8 = (np.arange(300) % 256).astype("u1")  # unsigned 8-bit: 128 is zero
    path = tmp_path / "test.pat"
    path.write_bytes(gus_file([
        gus_wave(sine16.tobytes(), rate=rate, low_mhz=8175, high_mhz=1_000_000,
                 root_mhz=441_000, loop=(1000 * 2, 1500 * 2), modes=1 | 4),  # 16-bit, looping
        gus_wave(ramp8.tobytes(), rate=8000, low_mhz=1_000_001, high_mhz=12_000_000,
                 root_mhz=2_000_000, loop=(0, 0), modes=2),                 # 8-bit unsigned
    ]))
    return path


def test_gus_reader_fields_and_data(patch_file):
    w16, w8 = recordings.read_gus_patch(patch_file)
    assert (w16.sample_rate, w16.low_hz, w16.high_hz, w16.root_hz) == (22050, 8.175, 1000.0, 441.0)
    assert (w16.loop_start, w16.loop_end, w16.looping, w16.pingpong) == (1000, 1500, True, False)
    t = np.arange(2000) / 22050
    np.testing.assert_allclose(w16.data, np.round(20000 * np.sin(2 * np.pi * 441 * t)) / 32768,
                               atol=1e-7)
    assert (w8.sample_rate, w8.root_hz, w8.looping) == (8000, 2000.0, False)
    np.testing.assert_allclose(w8.data, ((np.arange(300) % 256) - 128) / 128.0)


def test_gus_note_pitch_loop_and_release(patch_file):
    waves = recordings.read_gus_patch(patch_file)
    # at its root pitch and rate, a note replays the recording sample for sample
    x = recordings.render_patch_note(waves, 12 * np.log2(441 / 440) + 69, 0.04, 22050)
    np.testing.assert_allclose(x[:800], waves[0].data[:800], atol=1e-6)
    # an octave up at 16 kHz: f0 doubles; the loop sustains past the 2000-sample wave
    y = recordings.render_patch_note(waves, 12 * np.log2(882 / 440) + 69, 1.0, SR, release=0.2)
    assert len(y) == int(1.2 * SR)
    assert peak_hz(y[: SR], SR) == pytest.approx(882.0, rel=2e-3)
    assert np.abs(y[int(0.9 * SR): SR]).max() > 0.5           # still sounding (looped)
    assert np.abs(y[int(1.19 * SR):]).max() < 0.05            # faded out in the release
    # above 1000 Hz the second (non-looping) wave plays, and stops at its end
    z = recordings.render_patch_note(waves, 12 * np.log2(2000 / 440) + 69, 1.0, 8000)
    np.testing.assert_allclose(z, waves[1].data[: len(z)], atol=1e-6)
    assert len(z) == 300


def test_gus_reader_refuses_bad_files(tmp_path, patch_file):
    bad = tmp_path / "bad.pat"
    bad.write_bytes(b"RIFF" + bytes(300))
    with pytest.raises(ValueError, match="not a GUS patch"):
        recordings.read_gus_patch(bad)
    bad.write_bytes(patch_file.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        recordings.read_gus_patch(bad)


# --------------------------------------------------------------------------- installed recordings


def test_installed_freepats_patch_replays_its_waves():
    """A real patch (freepats piano): every wave covers its own root and replays at it."""
    path = recordings.source_path("freepats:Tone_000/000_Acoustic_Grand_Piano")
    waves = recordings.read_gus_patch(path)
    assert len(waves) >= 5
    lows = [w.low_hz for w in waves]
    assert lows == sorted(lows)
    for w in waves:
        assert w.looping and 0 <= w.loop_start < w.loop_end <= len(w.data)
        root = 12 * np.log2(w.root_hz / 440) + 69
        note = recordings.render_patch_note([w], root, 0.5, w.sample_rate)
        n = min(len(note), w.loop_end, int(0.5 * w.sample_rate))  # before loop and release
        np.testing.assert_allclose(note[:n], w.data[:n], atol=1e-5)


def test_installed_sonic_pi_flac_is_read_and_resampled():
    x = recordings.load_source("sonic-pi:bd_808", SR)
    raw, sr = sf.read(recordings.source_path("sonic-pi:bd_808"), dtype="float32", always_2d=True)
    assert sr == 44100 and abs(len(x) - len(raw) * SR / sr) <= 1
    assert float(np.abs(x).max()) == pytest.approx(float(np.abs(raw.mean(1)).max()), rel=0.1)
    every = recordings.available_sources()
    assert sum(s.startswith("sonic-pi:") for s in every) >= 150
    assert sum(s.startswith("freepats:Tone_000/") for s in every) >= 60
    for group in (demo_data.REAL_SOUND_CLASSES.values(), [demo_data.CORPUS_ONLY_RECORDINGS]):
        for sources in group:
            assert set(sources) <= set(every)


def test_source_groups_and_bad_names():
    g = recordings.source_group
    assert g("sonic-pi:tabla_ghe1") == g("sonic-pi:tabla_ghe8") == "sonic-pi:tabla_ghe"
    assert g("sonic-pi:drum_tom_hi_hard") == g("sonic-pi:drum_tom_hi_soft")
    assert g("sonic-pi:loop_amen") == g("sonic-pi:loop_amen_full")
    assert g("sonic-pi:bd_808") != g("sonic-pi:bd_ada")
    assert g("freepats:Drum_000/035_Kick_1") != g("freepats:Drum_000/036_Kick_2")
    for bad in ("sonic-pi:../x", "freepats:Tone_000/../../etc", "wav:x", "sonic-pi:"):
        with pytest.raises(ValueError, match="expected"):
            recordings.source_path(bad)
    with pytest.raises(FileNotFoundError, match="apt-get install sonic-pi-samples"):
        recordings.source_path("sonic-pi:no_such_sample")


# --------------------------------------------------------------------------- the study preset

STUDY = PRESETS["study"]
STUDY_TINY = dataclasses.replace(
    STUDY, name="study-tiny", keywords=SplitCounts(1, 1, 1), speakers=SplitCounts(1, 1, 1),
    n_speakers=4, languages=SplitCounts(1, 1, 1), instruments=SplitCounts(1, 1, 1),
    pitch=SplitCounts(1, 1, 1), pitch_range=(60, 63), events=SplitCounts(2, 1, 1),
    event_seconds=4.0, events_per_clip=(2, 3), corpus_files=16,
    real_sounds=SplitCounts(2, 1, 1), real_instruments=SplitCounts(1, 1, 1))
"""The study's code path (all eight tasks, a real file every 4th corpus file), tiny counts."""


@pytest.fixture(scope="module")
def study_tiny(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("study")
    return root, build_demo(root, STUDY_TINY, workers=2, progress=False)


def test_study_sizes_meet_the_brief():
    sizes = split_sizes(STUDY)
    tasks = {k: v for k, v in sizes.items() if k != "corpus"}
    assert len(tasks) == 8 and {"real_sounds", "real_instruments"} <= set(tasks)
    assert all(v["test"] >= 300 and v["valid"] >= 150 for v in tasks.values()), tasks
    assert sizes["corpus"]["files"] >= 3000
    assert sizes["corpus"]["real"] >= 0.2 * sizes["corpus"]["files"]
    # small and tiny keep their six tasks and a synthesised corpus
    for name in ("small", "tiny"):
        assert [p.name for p in demo_data.demo_parts(PRESETS[name])] == [
            "keywords", "speakers", "languages", "nsynth_family", "nsynth_pitch", "events", "corpus"]
        assert split_sizes(name)["corpus"]["real"] == 0


@pytest.mark.slow  # make test-fast: over 3 s (with its fixture)
def test_study_tiny_builds_what_split_sizes_says(study_tiny):
    root, paths = study_tiny
    sizes = split_sizes(STUDY_TINY)
    assert set(paths) == set(sizes)
    for name, by_split in sizes.items():
        if name == "corpus":
            wavs = sorted(paths["corpus"].glob("*.wav"))
            assert len(wavs) == by_split["files"]
            real = [w for w in wavs if w.stem.endswith("_real")]
            assert [int(w.stem[:5]) for w in real] == [3, 7, 11, 15]
            for w in real:
                x, sr = sf.read(w)
                assert sr == SR and 1.0 <= len(x) / sr <= 6.0 and np.abs(x).max() > 0.25
            continue
        task = validate_task(paths[name])
        assert {s: len(task.labels[s]) for s in by_split} == by_split, name


@pytest.mark.parametrize("name,classes", [("real_sounds", demo_data.REAL_SOUND_CLASSES),
                                          ("real_instruments", demo_data.FREEPATS_FAMILIES)])
def test_real_tasks_balanced_and_recordings_disjoint(study_tiny, name, classes):
    task = load_task(study_tiny[1][name])
    assert task.vocabulary == sorted(classes)
    assert set(task.label_counts("test").values()) == {1}
    notes = task.metadata.notes
    groups = {s: set(notes["recordings_by_split"][s]) for s in ("train", "valid", "test")}
    assert not groups["train"] & groups["test"] and not groups["valid"] & groups["test"]
    assert not groups["train"] & groups["valid"]
    assert min(notes["n_recordings_by_split"].values()) >= len(classes)  # >= 1 per class
    for split, clips in task.labels.items():
        for clip in clips:
            x, _ = sf.read(task.audio_path(split, clip))
            assert np.abs(x).max() > 0.25, (split, clip)


def test_study_corpus_disjoint_from_test_recordings(study_tiny):
    root, _ = study_tiny
    assert corpus_overlap(root, STUDY_TINY) == {"voices": set(), "texts": set(),
                                                 "programs": set(), "recordings": set()}
    with open(root / "corpus" / "index.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert all(bool(r["recording"]) == (r["kind"] == "real") for r in rows)


def test_corpus_overlap_finds_a_planted_test_recording(study_tiny, tmp_path):
    root, _ = study_tiny
    shutil.copytree(root / "corpus", tmp_path / "corpus")
    test_rec = demo_data._real_sound_sources()["tabla"]["test"][0]        # e.g. tabla_tas1
    sibling = test_rec[:-1] + ("2" if test_rec[-1] == "1" else "1")       # same group
    with open(tmp_path / "corpus" / "index.csv", "a", encoding="utf-8") as f:
        f.write(f"z.wav,real,1.00,,,,,{sibling}\n")
    found = corpus_overlap(tmp_path, STUDY_TINY)
    assert found["recordings"] == {recordings.source_group(test_rec)}


def test_full_study_pools_are_disjoint_from_valid_and_test():
    """Without building it: the study corpus never plays a valid or test recording."""
    held_out = set()
    for by_split in (*demo_data._real_sound_sources().values(),
                     *demo_data._real_instrument_sources().values()):
        held_out |= {recordings.source_group(x) for s in ("valid", "test") for x in by_split[s]}
    corpus = {recordings.source_group(src) for src, _ in demo_data._corpus_recordings()}
    assert corpus and not corpus & held_out
    assert demo_data._test_split_sources(STUDY)["recordings"] <= held_out
    assert len(demo_data._test_split_sources(STUDY)["recordings"]) >= 20


def test_study_manifest_lists_the_study_tasks(study_tiny):
    from eval_suites.core.manifest import check_inputs, load_manifest

    root, paths = study_tiny
    manifest = load_manifest(Path(__file__).parents[1] / "eval_suites/manifests/study.yaml",
                             tasks_root=root / "tasks")
    # every study task but events, which is built and left out (at its ceiling on validation
    # at random init: see the manifest)
    assert "events" in paths
    assert sorted(t.path for t in manifest.tasks) == sorted(
        p for name, p in paths.items() if name not in ("corpus", "events"))
    assert [p for p in check_inputs(manifest, check_audio=True) if p.startswith("task")] == []
