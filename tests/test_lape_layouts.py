"""Layout errors of the LAPE converters, the split carving helpers and the CLI.

Each broken layout is a real partial copy of the dataset's layout; the error must name
what is missing and show what the root should look like.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval_suites.core.clip_outputs import load_outputs
from eval_suites.core.results import cell_dir
from eval_suites.hear_format.task import validate_task
from eval_suites.lape.base import LayoutError
from eval_suites.lape.cli import prepare_manifest
from eval_suites.lape.speech_commands import WORDS_V1, WORDS_V2
from eval_suites.lape.splits import per_label_fractions, stratified_holdout
from eval_suites.lape.tasks import SOURCE_DIRS, converter
from eval_suites.synthetic.synth import espeak, write_wav

REPO = Path(__file__).resolve().parents[1]


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("") if "." in path.name else path.mkdir(exist_ok=True)


def raises_layout(key: str, root: Path, *fragments: str) -> str:
    with pytest.raises(LayoutError) as err:
        converter(key).convert(root, root.parent / "tasks", progress=False)
    msg = str(err.value)
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    assert converter(key).layout in msg  # shows what the root should look like
    return msg


# --------------------------------------------------------------------------- layouts


def test_missing_source_folder(tmp_path):
    raises_layout("ns", tmp_path / "nope", "does not exist", "nsynth-train/examples.json")


def test_speech_commands_missing_list_and_words(tmp_path):
    root = tmp_path / "sc"
    touch(root, "validation_list.txt", "_background_noise_", *WORDS_V1)
    raises_layout("sc_v1", root, "testing_list.txt", "validation_list.txt", "_background_noise_/")
    touch(root, "testing_list.txt")
    (root / "wow").rmdir()
    (root / "tree").rmdir()
    raises_layout("sc_v1", root, "2 word folder(s) missing", "tree, wow")
    touch(root, "wow", "tree", *WORDS_V2)
    raises_layout("sc_v1", root, "'backward'", "v0.02", "speech_commands_v0.01")
    (root / "_background_noise_").rmdir()
    raises_layout("sc_v2_12", root, "_background_noise_", "source of _silence_")
    # the 35-class task needs no background noise: the layout is fine, the folders empty
    raises_layout("sc_v2_35", root, "no clips were found")


def test_librispeech_points_at_parent(tmp_path):
    touch(tmp_path / "LibriSpeech", "train-clean-100/19/198")
    raises_layout("lbs", tmp_path, "train-clean-100", f"pass {tmp_path / 'LibriSpeech'} as --source")
    raises_layout("lbs", tmp_path / "LibriSpeech", "flac utterances")


def test_voxceleb_missing_files_and_bad_split_lines(tmp_path):
    root = tmp_path / "vox"
    touch(root, "wav/id10001/abc/00001.wav")
    raises_layout("vc", root, "iden_split.txt", "identification split file")
    (root / "iden_split.txt").write_text("1 id10001/abc/00001.wav\n3 id10270/xyz/00002.wav\n")
    raises_layout("vc", root, "1 file(s) listed in iden_split.txt are missing", "id10270/xyz/00002.wav",
                  "vox1_test_wav.zip")
    (root / "iden_split.txt").write_text("train id10001/abc/00001.wav\n")
    raises_layout("vc", root, "line 1", "'<1|2|3> idNNNNN/<youtube id>/NNNNN.wav'")


def test_iemocap_missing_session_labels(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    for k in range(1, 6):
        touch(root, f"Session{k}/sentences/wav", f"Session{k}/dialog/EmoEvaluation")
    (root / "Session3/dialog/EmoEvaluation").rmdir()
    raises_layout("ic", root, "Session3/dialog/EmoEvaluation", "emotion label folder", "Session1/ ... Session5/")
    touch(root, "Session3/dialog/EmoEvaluation")
    (root / "Session3/dialog/EmoEvaluation/Ses03F_impro01.txt").write_text(
        "[1.0 - 2.0]\tSes03F_impro01_F000\tneu\t[2.5, 2.5, 2.5]\n")
    raises_layout("ic", root, "Ses03F_impro01_F000", "is missing")


def test_voxforge_archives_not_extracted(tmp_path):
    root = tmp_path / "vf"
    touch(root, "de", "en", "es", "fr", "it")
    raises_layout("vf", root, "'ru'", "one folder per language")
    touch(root, "ru/user-20100101-abc.tgz", "de/s1/wav/a.wav", "en/s1/wav/a.wav", "es/s1/wav/a.wav",
          "fr/s1/wav/a.wav", "it/s1/wav/a.wav")
    raises_layout("vf", root, "no session audio", "1 .tgz archive(s): extract them first", "tar -xzf")


def test_nsynth_bird_tut_us8k_missing_metadata(tmp_path):
    ns = tmp_path / "nsynth"
    touch(ns, "nsynth-train/examples.json", "nsynth-train/audio", "nsynth-test/examples.json", "nsynth-test/audio")
    raises_layout("ns", ns, "nsynth-valid/examples.json", "nsynth-valid/audio/<note_str>.wav")

    bsd = tmp_path / "bsd"
    touch(bsd, "ff1010bird_metadata_2018.csv", "ff1010bird/wav")
    raises_layout("bsd", bsd, "warblrb10k_public_metadata_2018.csv", "warblrb10k/wav/<itemid>.wav")
    (bsd / "warblrb10k_public_metadata_2018.csv").write_text("itemid,hasbird\n")
    raises_layout("bsd", bsd, "warblrb10k/wav", "the warblrb10k audio folder")
    touch(bsd, "warblrb10k/wav")
    (bsd / "ff1010bird_metadata_2018.csv").write_text("id,bird\n1,0\n")
    raises_layout("bsd", bsd, "missing ['hasbird', 'itemid']")

    tut = tmp_path / "tut"
    touch(tut, "audio", "meta.csv", "evaluation_setup/fold1_train.txt")
    raises_layout("tut", tut, "evaluation_setup/fold1_evaluate.txt", "official fold-1 evaluation list")

    us = tmp_path / "UrbanSound8K"
    touch(us, "metadata/UrbanSound8K.csv", *[f"audio/fold{k}" for k in range(1, 11) if k != 7])
    raises_layout("us8k", us, "audio/fold7", "audio/fold1/ ... audio/fold10/")


def test_unreadable_audio_names_the_file(tmp_path):
    root = tmp_path / "vox"
    (root / "wav/id10001/abc").mkdir(parents=True)
    (root / "wav/id10001/abc/00001.wav").write_bytes(b"\x00\x00\x00 ftypM4A not a wav")
    (root / "iden_split.txt").write_text("1 id10001/abc/00001.wav\n")
    with pytest.raises(ValueError, match=r"cannot decode .*00001\.wav.*ffmpeg"):
        converter("vc").convert(root, tmp_path / "tasks", workers=1, progress=False)


# --------------------------------------------------------------------------- splits


def test_stratified_holdout_fraction_per_label_and_seed():
    labels = ["a"] * 50 + ["b"] * 20 + ["c"] * 3
    held = stratified_holdout(labels, 0.2, seed=0)
    counts = {lab: sum(1 for i in held if labels[i] == lab) for lab in "abc"}
    assert counts == {"a": 10, "b": 4, "c": 1}
    assert held == stratified_holdout(labels, 0.2, seed=0)
    assert held != stratified_holdout(labels, 0.2, seed=1)


def test_stratified_holdout_keeps_groups_whole():
    rng = np.random.default_rng(0)
    groups = [f"g{int(g)}" for g in rng.integers(0, 12, size=200)]
    labels = ["x" if int(g[1:]) % 2 else "y" for g in groups]
    held = stratified_holdout(labels, 0.25, seed=3, groups=groups)
    held_groups = {groups[i] for i in held}
    kept_groups = {groups[i] for i in range(len(groups)) if i not in held}
    assert held_groups and not held_groups & kept_groups


def test_per_label_fractions_every_split_per_label():
    labels = [f"s{i % 4}" for i in range(40)] + ["rare"] * 3
    out = per_label_fractions(labels, [("train", 0.8), ("valid", 0.1), ("test", 0.1)], seed=0)
    for lab in set(labels):
        splits = [s for s, l in zip(out, labels) if l == lab]
        assert set(splits) == {"train", "valid", "test"}
    assert sum(1 for s, l in zip(out, labels) if l == "s0" and s == "train") == 8


# --------------------------------------------------------------------------- CLI


def _tiny_voxceleb(root: Path) -> None:
    lines = []
    for s, voice in enumerate(["en+m1", "en+f3"]):
        for code in "123":
            rel = f"id1000{s + 1}/yt{code}/00001.wav"
            (root / "wav" / rel).parent.mkdir(parents=True, exist_ok=True)
            write_wav(root / "wav" / rel, espeak(f"number {code}", voice=voice), 16000)
            lines.append(f"{code} {rel}")
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.slow  # a subprocess end to end (make test-fast skips it)
def test_cli_single_task_and_layout_error_exit_code(tmp_path):
    src = tmp_path / "VoxCeleb1"
    _tiny_voxceleb(src)
    cmd = [sys.executable, "-m", "eval_suites", "prepare", "lape", "--task", "vc", "--source", str(src),
           "--out", str(tmp_path / "tasks"), "--workers", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    task = validate_task(tmp_path / "tasks/lape_vc-v1-full")
    assert task.vocabulary == ["id10001", "id10002"]
    bad = subprocess.run(cmd[:8] + [str(tmp_path / "missing")] + cmd[9:], capture_output=True,
                         text=True, cwd=REPO)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "iden_split.txt" in bad.stderr


def test_prepare_from_manifest_then_run_it(tmp_path):
    from eval_suites.core.manifest import load_manifest
    from eval_suites.core.runner import run_manifest

    sources = tmp_path / "sources"
    _tiny_voxceleb(sources / SOURCE_DIRS["vc"])
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "suite: lape\ntasks_root: tasks\nmodels:\n  - {name: toy, module: hear_toy_module}\n"
        "protocols:\n  linear: {epochs: 2, device: cpu}\n"
        "tasks:\n  - {path: lape_vc-v1-full, name: VC}\n")
    [task_dir] = prepare_manifest(manifest, sources, progress=False)
    assert task_dir == tmp_path / "tasks/lape_vc-v1-full"
    task = validate_task(task_dir)
    [cell] = run_manifest(load_manifest(manifest), tmp_path / "results", progress=False, device="cpu")
    assert cell.ok and cell.task == "VC" and cell.suite == "lape" and cell.protocol == "linear"
    # The score is the accuracy of the stored per-clip predictions against the converted
    # task's own test labels, clip by clip (not a value merely in [0, 1]).
    [fold] = load_outputs(cell_dir(tmp_path / "results", "toy", "VC", "linear")).folds
    test_labels = task.labels["test"]
    assert sorted(fold.ids.tolist()) == sorted(test_labels)
    truth = np.array([task.vocabulary.index(test_labels[i][0]) for i in fold.ids.tolist()])
    assert (fold.targets.argmax(1) == truth).all() and (fold.targets.sum(1) == 1).all()
    assert cell.metrics[0].metric == "top1_acc"
    assert cell.metrics[0].value == pytest.approx(float((fold.scores.argmax(1) == truth).mean()), abs=1e-9)
    # a dataset missing from the sources root fails before anything is converted
    manifest.write_text(manifest.read_text() + "  - {path: lape_ns-v1-full, name: NS}\n")
    with pytest.raises(LayoutError, match="nsynth"):
        prepare_manifest(manifest, sources, out=tmp_path / "other", progress=False)
    assert not (tmp_path / "other").exists()


def test_shipped_manifest_lists_the_11_tasks(tmp_path):
    from eval_suites.core.manifest import load_manifest
    from eval_suites.lape.tasks import TASKS

    m = load_manifest(REPO / "eval_suites/manifests/lape.yaml", tasks_root=tmp_path)
    folders = {t.path.name for t in m.tasks}
    assert folders == {converter(k).metadata().folder_name for k in TASKS}
    assert all("linear" in t.protocols for t in m.tasks) and {t.suite for t in m.tasks} == {"lape"}
