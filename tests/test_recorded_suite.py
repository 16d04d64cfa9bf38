"""The recorded development suite (eval_suites.recorded): sources, splits, converters, command line.

Every converter runs on a small file tree this test writes at the packages' real paths (real
WAV/Ogg files on disk; the drum kits are the FluidR3 SoundFont the set-up installs, at the
AVL kits' paths), and its output is checked as a HEAR task.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval_suites.hear_format.task import load_task, validate_task
from eval_suites.recorded import build, sources, tasks
from eval_suites.recorded.tasks import TASKS, plan_task, split_by_group

from recorded_tree import write_tree

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fs_root(tmp_path_factory) -> Path:
    return write_tree(tmp_path_factory.mktemp("fsroot"))


@pytest.fixture
def small_drums(monkeypatch):
    monkeypatch.setattr(tasks, "DRUM_PIECES", {36: "kick", 38: "snare", 42: "hihat_closed"})
    monkeypatch.setattr(tasks, "DRUM_VELOCITIES", (40, 70, 100, 127))


# ------------------------------------------------------------------ sources
def test_no_source_is_a_corpus_package_or_reserved():
    from pretrain.debian_corpus import PACKAGES as CORPUS, STUDY_TASK_SOURCES

    ours = set(sources.PACKAGES)
    assert not ours & set(CORPUS), "a recorded-suite package is in the pretraining corpus"
    assert not ours & set(STUDY_TASK_SOURCES), "the study corpus plays freepats and sonic-pi recordings"
    assert "fluid-soundfont-gm" not in ours  # the synthesised corpus's soundfont
    for spec in TASKS.values():
        assert set(spec.packages) <= ours, spec.name


def test_corpus_overlap_finds_suite_files_in_a_corpus_listing(fs_root):
    ours = fs_root / tasks.ASTERISK / "fr_CA_f_June" / "beep.wav"
    other = fs_root / "usr/share/games/wesnoth/music/a.ogg"
    assert sources.corpus_overlap([str(other)], fs_root) == []
    assert sources.corpus_overlap([str(other), str(ours)], fs_root) == [str(ours)]
    # a path through a symbolic link to a suite file counts too
    link = fs_root / "link.wav"
    link.symlink_to(ours)
    assert sources.corpus_overlap([str(link)], fs_root) == [str(link)]


def test_the_real_pretraining_listing_if_present_shares_no_file():
    listing = Path(os.environ.get("HEAR_SLICER_CORPUS_LISTING", "runs/learning_curves/corpus_files.txt"))
    if not listing.is_file():
        pytest.skip(f"no corpus listing at {listing} (python -m studies.learning_curves --prepare-only writes it)")
    files = [f for f in listing.read_text().splitlines() if f]
    assert sources.corpus_overlap(files) == []


def test_missing_packages_are_named_with_their_install_line_and_nothing_installs(tmp_path, capsys):
    code = build.main(["--root", str(tmp_path / "out"), "--fs-root", str(tmp_path), "--tasks", "drums"])
    err = capsys.readouterr().err
    assert code == 2
    assert "avldrums.lv2-soundfont" in err and "apt-get install" in err and "MB" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ splits
def test_split_by_group_is_deterministic_and_covers_every_split():
    groups = [f"g{i}" for i in range(40)]
    a, b = split_by_group(groups), split_by_group(list(reversed(groups)))
    assert a == b
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "valid", "test")}
    assert counts == {"train": 20, "valid": 8, "test": 12}
    three = split_by_group(["x", "y", "z"])
    assert sorted(three.values()) == ["test", "train", "valid"]


def _no_group_in_two_splits(plan):
    seen = {}
    for split, items in plan.items():
        for it in items:
            assert seen.setdefault(it.group, split) == split, f"{it.group} in {seen[it.group]} and {split}"


@pytest.mark.parametrize("name", [n for n in TASKS if n not in ("drums", "vowels")])
def test_hash_split_tasks_keep_each_group_in_one_split(fs_root, name):
    plan = plan_task(TASKS[name], fs_root)
    assert all(plan[s] for s in plan), {s: len(v) for s, v in plan.items()}
    _no_group_in_two_splits(plan)


def test_speakers_split_by_prompt_across_voices(fs_root):
    plan = plan_task(TASKS["speakers"], fs_root)
    split_of_prompt = {}
    for split, items in plan.items():
        for it in items:
            assert split_of_prompt.setdefault(it.group, split) == split
    labels = {it.label for v in plan.values() for it in v}
    assert labels == {"allison", "june", "carlo", "ivrvoice_ru", "menardi"}  # en and es Allison: one speaker


def test_vowels_label_what_is_said_and_split_by_consonant(fs_root):
    plan = plan_task(TASKS["vowels"], fs_root)
    said = {(it.path.parts[-3], it.path.stem): it.label for items in plan.values() for it in items}
    expected = {(lang, syl): f"vowel_{syl[1]}" for lang in ("es", "it", "pt_BR") for syl in ("ba", "be", "bi", "bo")}
    expected.update({("ml", "baa"): "vowel_a", ("ml", "be"): "vowel_e", ("ml", "bhi"): "vowel_i",
                     ("ml", "cho"): "vowel_o", ("ml", "du"): "vowel_u"})
    assert said == expected  # fr, en: not in VOWEL_LANGUAGES; bam, cchooo: not consonant-vowel
    split_of_onset = {}
    for split, items in plan.items():
        for it in items:
            onset = re.match(r"[^aeiou]+", it.path.stem)[0]
            assert split_of_onset.setdefault(onset, split) == split, f"onset {onset} in two splits"
    assert sorted(split_of_onset) == ["b", "bh", "ch", "d"] and all(plan[s] for s in plan)


@pytest.mark.skipif(not all((Path("/") / rel).is_file() for rel in tasks.DRUM_KITS.values()),
                    reason="avldrums.lv2-soundfont is not installed")
def test_the_real_kits_sound_on_every_piece():
    """The AVL kits hold their one preset at bank 0, program 0: a note on the General MIDI drum
    channel (bank 128) renders silence (a whole task of silent clips, found by the build)."""
    items = [it for it in tasks.drums(Path("/")) if it.note[1] == tasks.DRUM_VELOCITIES[-1]]
    rendered = build._render_drums(items, TASKS["drums"].seconds)
    silent = {(it.group.split("/")[0], it.note[0]) for it in items
              if float(np.abs(rendered[it.name]).max()) < build.SILENT_PEAK}
    assert not silent, f"(kit, key) rendered silent: {sorted(silent)}"


def test_drums_train_on_one_kit_and_test_on_the_other(fs_root, small_drums):
    plan = plan_task(TASKS["drums"], fs_root)
    assert {it.path.name for it in plan["train"]} == {"Black_Pearl_4_LV2.sf2"}
    assert {it.path.name for it in plan["test"] + plan["valid"]} == {"Red_Zeppelin_4_LV2.sf2"}
    assert {it.label for it in plan["test"]} == {"kick", "snare", "hihat_closed"}


def test_labels_come_from_the_packages_structure(fs_root):
    langs = plan_task(TASKS["languages"], fs_root)
    assert {it.label for v in langs.values() for it in v} == set(tasks.STAMP_LANGUAGES)
    snd = plan_task(TASKS["sounds"], fs_root)
    by_file = {it.path.name: it.label for v in snd.values() for it in v}
    assert by_file["duck.ogg"] == "bird" and by_file["kettle.ogg"] == "household" and by_file["violin.ogg"] == "instrument"
    assert "apple.ogg" not in by_file  # not one of the sound classes
    by_member = {(it.member or it.path.relative_to(fs_root).as_posix()): it.label for v in snd.values() for it in v}
    assert by_member["sound/footsteps/grass1.ogg"] == by_member["sound/footsteps/dirt1.ogg"] == "footsteps"  # inside the .pk3
    assert by_member[f"{tasks.MINETEST_SOUNDS.path}/default/sounds/default_grass_footstep.2.ogg"] == "footsteps"
    assert by_member["sound/weapons/explosion-grenade.ogg"] == "explosion" and by_member["sound/weapons/bullet-rifle.ogg"] == "shot"
    assert by_member[f"{tasks.SCORCHED3D_SOUNDS.path}/apoc/data/wav/explosions/tank.wav"] == "explosion"
    assert by_member[f"{tasks.BTANKS_SOUNDS.path}/explosion.ogg"] == "explosion"
    assert "sound/misc/popup.ogg" not in by_member  # no class
    assert not {"door", "ambience"} & set(by_member.values())  # fewer than 3 recordings each: left out
    fx = plan_task(TASKS["game_effects"], fs_root)
    assert {it.label for v in fx.values() for it in v} == set(tasks.EFFECTS)
    music = plan_task(TASKS["music"], fs_root)
    assert {it.label for v in music.values() for it in v} == set(tasks.SOUNDTRACKS)


@pytest.mark.parametrize("rel, takes, group", [
    ("footsteps/grass3.ogg", True, "footsteps/grass"),
    ("default/sounds/default_dig_cracky.2.ogg", True, "default/sounds/default_dig_cracky"),
    ("civilians/civfemdeath01a.ogg", True, "civilians/civfemdeath"),
    ("weapons/bullet-rifle-3x.ogg", True, "weapons/bullet-rifle-3x"),
    ("sound003.wav", False, "sound003"),  # Colobot numbers different sounds, not takes
])
def test_takes_of_one_sound_are_one_group(rel, takes, group):
    assert tasks._sound_group(rel, takes) == group


def test_takes_share_a_split_and_a_sound_under_two_names_is_kept_once(fs_root):
    for name in ("sounds", "game_effects"):
        plan = plan_task(TASKS[name], fs_root)
        split_of = {(it.member or it.path.name): s for s, v in plan.items() for it in v}
        assert split_of["sound/footsteps/grass1.ogg"] == split_of["sound/footsteps/grass2.ogg"]
        _no_group_in_two_splits(plan)
    fx = [it for v in plan_task(TASKS["game_effects"], fs_root).values() for it in v]
    warmux = sorted(it.path.name for it in fx if it.label == "warmux")
    assert len(warmux) == 2 and "explosion1.ogg" in warmux  # newcomer.ogg and teleport_start.ogg: one sound, kept once


def test_a_clip_inside_an_archive_is_read_like_a_file(fs_root, tmp_path):
    import zipfile

    it = next(it for v in plan_task(TASKS["game_effects"], fs_root).values() for it in v if it.member)
    loose = tmp_path / "loose.ogg"
    with zipfile.ZipFile(it.path) as z:
        loose.write_bytes(z.read(it.member))
    as_file = tasks.Item(loose, it.label, it.group)
    for start in (None, 0.2):
        a = tasks.read_clip(tasks.Item(it.path, it.label, it.group, start=start, member=it.member), 0.5)
        b = tasks.read_clip(tasks.Item(loose, it.label, it.group, start=start), 0.5)
        assert np.abs(a).max() > 0.01 and np.array_equal(a, b)
    assert it.name != as_file.name


def test_cap_takes_whole_groups_up_to_the_limit(fs_root):
    spec = TASKS["speakers"]
    capped = plan_task(tasks.TaskSpec(**{**spec.__dict__, "max_per_label": 4}), fs_root)
    per_label = {}
    for v in capped.values():
        for it in v:
            per_label[it.label] = per_label.get(it.label, 0) + 1
    assert per_label == {"allison": 4, "june": 4, "carlo": 4, "ivrvoice_ru": 4, "menardi": 4}


def test_active_start_skips_the_silent_lead_in():
    sr = 16000
    x = np.zeros(sr, dtype=np.float32)
    x[8000:] = 0.5 * np.sin(np.arange(8000) / 3)
    assert tasks.active_start(x, sr) == pytest.approx(0.45, abs=0.011)
    assert tasks.active_start(np.zeros(100), sr) == 0.0


# ------------------------------------------------------------------ the build
@pytest.mark.slow  # make test-fast: over 3 s (with its fixture)
def test_build_writes_valid_hear_tasks_and_keeps_them_on_a_rerun(fs_root, small_drums, tmp_path, capsys):
    out = tmp_path / "rec"
    assert build.main(["--root", str(out), "--fs-root", str(fs_root), "--no-progress"]) == 0
    for spec in TASKS.values():
        task = validate_task(out / "tasks" / f"recorded_{spec.name}-{spec.version}-full")
        assert task.metadata.sample_duration == spec.seconds
        counts = {s: sum(task.label_counts(s).values()) for s in ("train", "valid", "test")}
        assert all(counts.values()), (spec.name, counts)
    drums = out / "tasks" / "recorded_drums-v1-full"
    for split in ("train", "valid", "test"):
        for name in json.loads((drums / f"{split}.json").read_text()):
            audio, _ = sf.read(str(load_task(drums).audio_path(split, name)))
            assert np.abs(audio).max() > 0.005, (split, name)  # rendered from the kit, not silence
    text = (out / "SOURCES.md").read_text()
    assert "avldrums.lv2-soundfont" in text and "| speakers |" in text
    stamp = {p: p.stat().st_mtime_ns for p in (out / "tasks").rglob("*.json")}
    assert build.main(["--root", str(out), "--fs-root", str(fs_root), "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "tasks").rglob("*.json")} == stamp


def test_a_task_of_another_recipe_is_refused_and_left_as_it_is(fs_root, tmp_path, capsys):
    out = tmp_path / "rec"
    assert build.main(["--root", str(out), "--fs-root", str(fs_root), "--tasks", "game_effects", "--no-progress"]) == 0
    meta = out / "tasks" / "recorded_game_effects-v2-full" / "task_metadata.json"
    data = json.loads(meta.read_text())
    data["notes"]["recipe_version"] = 0
    meta.write_text(json.dumps(data))
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()
    assert build.main(["--root", str(out), "--fs-root", str(fs_root), "--tasks", "game_effects"]) == 2
    err = capsys.readouterr().err
    assert "another recipe" in err and "game_effects" in err and "nothing was changed" in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_an_interrupted_build_resumes(fs_root, tmp_path, monkeypatch):
    out = tmp_path / "rec"
    calls = {"n": 0}
    real = tasks.read_clip

    def flaky(item, seconds, sample_rate=16000):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(item, seconds, sample_rate)

    monkeypatch.setattr(build, "read_clip", flaky)
    with pytest.raises(KeyboardInterrupt):
        build.build_suite(out, ["game_effects"], fs_root, progress=False)
    assert not (out / "tasks" / "recorded_game_effects-v2-full" / "task_metadata.json").exists()
    calls["n"] = -10 ** 6
    build.build_suite(out, ["game_effects"], fs_root, progress=False)
    task = validate_task(out / "tasks" / "recorded_game_effects-v2-full")
    n = sum(len(v) for v in plan_task(TASKS["game_effects"], fs_root).values())
    assert sum(sum(task.label_counts(s).values()) for s in ("train", "valid", "test")) == n
    assert calls["n"] == -10 ** 6 + n - 4  # the 4 clips written before the interruption were not read again


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_users_file_at_a_clips_name_is_never_replaced(fs_root, tmp_path, capsys):
    """Feeds the build a root whose task folder (no build there yet) holds a user's file at the name of a
    clip the build writes; expects exit 2, one line naming it, nothing written (the build used to replace it)."""
    out = tmp_path / "rec"
    clip = plan_task(TASKS["game_effects"], fs_root)["train"][0].name
    mine = out / "tasks" / tasks.metadata(TASKS["game_effects"], {}).folder_name / "16000" / "train" / clip
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own recording")
    before = _snapshot(out)
    assert build.main(["--root", str(out), "--fs-root", str(fs_root), "--tasks", "game_effects", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{mine} was not written by the recorded-suite builder" in err, err
    assert _snapshot(out) == before


def test_a_users_sources_md_is_never_replaced(fs_root, tmp_path, capsys):
    """Feeds the build a root holding a user's SOURCES.md; expects exit 2 naming it before anything is
    written (the build used to overwrite it); once the build wrote it, a rerun replaces it."""
    out = tmp_path / "rec"
    out.mkdir()
    (out / "SOURCES.md").write_text("my notes on the sources\n")
    argv = ["--root", str(out), "--fs-root", str(fs_root), "--tasks", "game_effects", "--no-progress"]
    assert build.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out / 'SOURCES.md'} was not written by the recorded-suite builder" in err
    assert _snapshot(out) == {"SOURCES.md": b"my notes on the sources\n"}
    (out / "SOURCES.md").unlink()
    assert build.main(argv) == 0 and build.main(argv) == 0
    assert "| game_effects |" in (out / "SOURCES.md").read_text()


def test_sources_md_lists_every_task_built_not_only_the_last_tasks_flag(fs_root, tmp_path):
    """Builds game_effects, then vowels alone; expects SOURCES.md to list both with their packages
    (it used to list only the tasks of the last --tasks)."""
    out = tmp_path / "rec"
    base = ["--root", str(out), "--fs-root", str(fs_root), "--no-progress", "--tasks"]
    assert build.main(base + ["game_effects"]) == 0 and build.main(base + ["vowels"]) == 0
    text = (out / "SOURCES.md").read_text()
    assert "| game_effects |" in text and "| vowels |" in text and "| klettres-data |" in text
    assert "| pingus-data |" in text and "| speakers |" not in text


@pytest.mark.parametrize("argv, words", [
    (["--tasks", "nope"], ["--tasks", "nope", "speakers"]),
    (["--fs-root", "/does/not/exist"], ["--fs-root", "/does/not/exist"]),
])
def test_bad_arguments_are_one_line_errors(argv, words, tmp_path, capsys):
    assert build.main(["--root", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    for w in words:
        assert w in err


def test_the_manifest_lists_every_task_of_the_suite():
    from eval_suites.core.manifest import load_manifest

    m = load_manifest(REPO / "eval_suites" / "manifests" / "recorded.yaml", tasks_root=REPO)
    assert [t.name for t in m.tasks] == list(TASKS)
    assert [Path(t.path).name for t in m.tasks] == [f"recorded_{n}-{s.version}-full" for n, s in TASKS.items()]


def test_a_changed_recipe_has_its_own_folder():
    """sounds and game_effects were rebuilt from more packages (v2): their folders are new, never
    the v1 folders a running study may still read."""
    for name in ("sounds", "game_effects"):
        md = tasks.metadata(TASKS[name], {})
        assert md.folder_name == f"recorded_{name}-v2-full" and md.notes["recipe_version"] == 2
