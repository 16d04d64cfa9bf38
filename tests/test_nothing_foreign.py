"""Nothing foreign is ever deleted or replaced (issue 29, item 1): a run (`--overwrite`, pruning,
resuming), an export and a demo-data build touch only files their record
(`hear_slicer.written`, `.hear-slicer-written.jsonl`) proves they wrote; anything else in the
way is refused with one line naming it, exit 2, and every file is left as it was. Real runs
and files on disk; the debian_corpus cases are in `test_corpus_installs.py`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hear_slicer.checkpoint import load_checkpoint
from hear_slicer.written import RECORD_NAME, ForeignFileError, WrittenFiles
from pretrain.__main__ import main as pretrain_main
from pretrain.export import main as export_main

from test_hostile_inputs import SR, _argv, _tone  # the same tiny model and audio

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("foreign_audio")
    for i in range(8):
        sf.write(root / f"clip{i}.wav", _tone(i), SR)
    return root


@pytest.fixture(scope="module")
def run_dir(audio, tmp_path_factory) -> Path:
    """A finished 2-step run with TensorBoard curves (checkpoints at steps 1 and 2)."""
    out = tmp_path_factory.mktemp("foreign_run") / "run"
    assert pretrain_main(_argv(audio, out, "run.steps=2", "run.checkpoint_every=1")) == 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(err: str, *fragments: str) -> None:
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for f in fragments:
        assert f in err, (f, err)


def _another_tools_checkpoint(out: Path) -> None:
    (out / "checkpoints" / "step_1000.pt").write_bytes(b"another tool's weights")


def _a_users_log_csv(out: Path) -> None:
    (out / "log.csv").write_text("step,my_metric\n1,0.5\n")


def _a_users_copy_of_a_checkpoint(out: Path) -> None:
    shutil.copy(out / "checkpoints" / "step_00000002.pt", out / "checkpoints" / "step_best.pt")


def _a_file_in_tensorboard(out: Path) -> None:
    (out / "tensorboard" / "events.out.tfevents.0000000001.my_other_run").write_bytes(b"their curves")


def _another_run_json(out: Path) -> None:
    (out / "run.json").write_text('{"format": "hear-slicer-run", "theirs": true}\n')


@pytest.mark.parametrize("plant, named", [
    (_another_tools_checkpoint, "checkpoints/step_1000.pt"), (_a_users_log_csv, "log.csv"),
    (_a_users_copy_of_a_checkpoint, "checkpoints/step_best.pt"),
    (_a_file_in_tensorboard, "tensorboard/events.out.tfevents.0000000001.my_other_run"),
    (_another_run_json, "run.json")])
def test_overwrite_refuses_a_run_folder_holding_a_file_the_run_did_not_write(run_dir, audio, tmp_path, capsys,
                                                                           plant, named):
    """Feeds `--overwrite` a run of ours into which another tool's checkpoints/step_1000.pt, a user's
    log.csv, a user's step_best.pt copy, a file in tensorboard/ or another run.json was put; expects
    exit 2, one line naming that file, and every file untouched (each was deleted by name)."""
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    plant(out)
    before = snapshot(out)
    assert pretrain_main(_argv(audio, out, "run.steps=1") + ["--overwrite"]) == 2
    _one_line(capsys.readouterr().err, f"{out / named} was not written by the run", "nothing was touched")
    assert snapshot(out) == before


def test_a_folder_of_another_tools_files_is_never_emptied(audio, tmp_path, capsys):
    """Feeds `--overwrite` a folder holding only another tool's run.json, log.csv and
    checkpoints/step_1000.pt (no record); expects exit 2 naming one of them, nothing touched."""
    out = tmp_path / "theirs"
    (out / "checkpoints").mkdir(parents=True)
    _another_tools_checkpoint(out)
    _a_users_log_csv(out)
    _another_run_json(out)
    before = snapshot(out)
    assert pretrain_main(_argv(audio, out, "run.steps=1")) == 2
    _one_line(capsys.readouterr().err, "holds files a run writes")
    assert pretrain_main(_argv(audio, out, "run.steps=1") + ["--overwrite"]) == 2
    _one_line(capsys.readouterr().err, "was not written by the run", "nothing was touched")
    assert snapshot(out) == before


def test_a_resumed_run_never_prunes_nor_resumes_a_users_copy(run_dir, tmp_path):
    """Feeds `--resume RUN` a run holding a user's step_best.pt copy and keeping one checkpoint
    (run.keep_last=1); expects the resume to start from step_00000002.pt (the newest of the run,
    not the copy that sorts after it), the run's old checkpoints pruned and the copy kept."""
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    _a_users_copy_of_a_checkpoint(out)
    copy = (out / "checkpoints" / "step_best.pt").read_bytes()
    assert pretrain_main(["--resume", str(out), "--set", "run.steps=3", "run.keep_last=1"]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_file()) == ["step_00000003.pt",
                                                                                         "step_best.pt"]
    assert (out / "checkpoints" / "step_best.pt").read_bytes() == copy
    assert "resuming " + str(out / "checkpoints" / "step_00000002.pt") in (out / "run.log").read_text()


def test_overwrite_of_a_run_of_ours_deletes_exactly_its_files(run_dir, audio, tmp_path):
    """The other side: a run of ours (and a user's notes.txt beside it) is replaced by --overwrite; the
    notes stay and the record lists only the new run's files."""
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    (out / "notes.txt").write_text("mine")
    assert pretrain_main(_argv(audio, out, "run.steps=1") + ["--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000001.pt"]
    recorded = WrittenFiles(out).recorded()
    assert "notes.txt" not in recorded and "checkpoints/step_00000001.pt" in recorded and "log.csv" in recorded


# ----------------------------------------------------------------------------- export
def test_export_refuses_its_source_and_any_training_checkpoint(run_dir, tmp_path, capsys):
    """Feeds `pretrain.export X X`, an OUT that is another training checkpoint of the run, and an OUT
    holding a user's file; expects exit 2, one line naming it, each file unchanged (`export X X`
    overwrote the training checkpoint with its 50 kB export). An OUT that an earlier export wrote is
    replaced."""
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    step1, step2 = out / "checkpoints" / "step_00000001.pt", out / "checkpoints" / "step_00000002.pt"
    before = snapshot(out)
    assert export_main([str(step2), str(step2)]) == 2
    _one_line(capsys.readouterr().err, f"{step2} is the checkpoint being exported")
    assert export_main([str(out), str(step2)]) == 2  # the run folder: its newest checkpoint, the same file
    _one_line(capsys.readouterr().err, "is the checkpoint being exported")
    assert export_main([str(step2), str(step1)]) == 2
    _one_line(capsys.readouterr().err, f"{step1} is a training checkpoint")
    assert snapshot(out) == before
    mine = tmp_path / "model.pt"
    mine.write_bytes(b"my own model")
    assert export_main([str(step2), str(mine)]) == 2
    _one_line(capsys.readouterr().err, f"{mine} was not written by pretrain.export", "nothing was touched")
    assert mine.read_bytes() == b"my own model"
    slim = tmp_path / "slim.pt"
    assert export_main([str(step1), str(slim)]) == 0
    assert export_main([str(step2), str(slim)]) == 0  # its own earlier export: replaced
    assert load_checkpoint(slim).provenance["steps"] == 2 and (tmp_path / RECORD_NAME).is_file()


# ----------------------------------------------------------------------------- the record itself
def test_the_record_proves_content_not_names(tmp_path):
    """WrittenFiles: a file it wrote is proven; the same name with other content, another name with the
    same content, or a file it never wrote are not; remove() refuses all when one is foreign."""
    written = WrittenFiles(tmp_path, "the test")
    a = written.write(tmp_path / "a.bin", b"ours")
    log = written.append(tmp_path / "sub" / "log.txt", b"1\n")
    written.append(log, b"2\n")
    (tmp_path / "copy.bin").write_bytes(b"ours")
    assert written.proves(a) and written.proves(log) and not written.proves(tmp_path / "copy.bin")
    assert written.foreign([a, log, tmp_path / "copy.bin"]) == ["copy.bin"]
    with pytest.raises(ForeignFileError, match="copy.bin was not written by the test"):
        written.remove([a, tmp_path / "copy.bin"], "clean up")
    assert a.is_file()
    with pytest.raises(ForeignFileError):
        written.write(tmp_path / "copy.bin", b"new")
    assert (tmp_path / "copy.bin").read_bytes() == b"ours"
    a.write_bytes(b"changed by a user")
    assert not written.proves(a)
    assert written.remove([log], "clean up") == ["sub/log.txt"] and not log.exists()
    written.compact()
    assert WrittenFiles(tmp_path).recorded() == []


# ----------------------------------------------------------------------------- the demo-data builder
@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    """A demo root built with the tiny preset (every file through the builder's record)."""
    from eval_suites.synthetic.demo_data import build_demo

    root = tmp_path_factory.mktemp("foreign_demo") / "demo"
    build_demo(root, "tiny", workers=2, progress=False)
    return root


def _demo_main(root: Path, *extra: str) -> int:
    from eval_suites.synthetic.demo_data import main

    return main(["--root", str(root), "--preset", "tiny", "--workers", "2", "--no-progress", *extra])


def test_the_demo_builder_never_deletes_a_recording_a_user_put_into_corpus(tmp_path, capsys):
    """Feeds the demo-data builder a root whose corpus/ holds a user's recording (no demo built there
    yet); expects exit 2, one line naming the recording, the root untouched (corpus/ was deleted
    whole before the corpus was written)."""
    root = tmp_path / "demo"
    (root / "corpus").mkdir(parents=True)
    sf.write(root / "corpus" / "my_field_recording.wav", _tone(1), SR)
    before = snapshot(root)
    assert _demo_main(root) == 2
    _one_line(capsys.readouterr().err, f"{root / 'corpus' / 'my_field_recording.wav'} was not written by the "
                                       "demo-data builder", "nothing was touched")
    assert snapshot(root) == before


@pytest.mark.slow  # make test-fast: over 10 s
def test_the_demo_builder_never_deletes_a_labels_file_put_into_a_task_folder(demo_root, tmp_path):
    """Feeds a rebuild with another recipe (seed 1) a built root into one of whose task folders a user put
    a labels file; expects a usage error (DemoRootError, exit 2) naming it and every file untouched (the
    task folder was deleted whole); without that file the rebuild goes through, deleting only the
    builder's files."""
    import dataclasses

    from eval_suites.errors import UsageError
    from eval_suites.synthetic.demo_data import PRESETS, build_demo

    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    labels = root / "tasks" / "demo_keywords-v1-full" / "my_relabelled_train.json"
    labels.write_text('{"a.wav": ["yes"]}')
    before = snapshot(root)
    other = dataclasses.replace(PRESETS["tiny"], seed=1)
    with pytest.raises(UsageError, match=f"{labels} was not written by the demo-data builder"):
        build_demo(root, other, workers=2, progress=False)
    assert snapshot(root) == before
    labels.unlink()
    build_demo(root, other, workers=2, progress=False)
    assert snapshot(root) != before and not WrittenFiles(root).foreign(
        p for p in root.rglob("*") if p.is_file() and p.name != RECORD_NAME)


def test_a_planted_recipe_cannot_steer_the_demo_builder_to_another_folder(tmp_path, capsys):
    """Feeds the demo-data builder a root holding a user's folder mydata/ and a recipe.json that says
    the corpus part lives there (with another hash); expects exit 2, one line naming recipe.json and
    the folder, nothing touched (mydata/ was deleted as the old corpus)."""
    import json

    root = tmp_path / "demo"
    (root / "mydata").mkdir(parents=True)
    (root / "mydata" / "thesis.wav").write_bytes(b"years of work")
    (root / "recipe.json").write_text(json.dumps({"format": 1, "parts": {
        "corpus": {"path": "mydata", "hash": "0" * 64, "complete": True, "params": {}}}}))
    before = snapshot(root)
    assert _demo_main(root) == 2
    _one_line(capsys.readouterr().err, "puts demo part 'corpus' at 'mydata'", "nothing was touched")
    assert snapshot(root) == before


def test_a_task_writer_with_a_record_never_deletes_nor_resumes_into_a_folder_it_did_not_write(tmp_path):
    """Feeds TaskWriter (with a builder's record) a task folder holding a task_metadata.json and a user's
    notes, with overwrite=True, and a partial folder holding a user's clip; expects ForeignFileError naming
    the user's file and both folders untouched (without a record, overwrite deletes a folder that merely
    holds task_metadata.json)."""
    from eval_suites.hear_format.task import TaskMetadata, TaskWriter

    written = WrittenFiles(tmp_path, "the builder")
    complete = tmp_path / "t-v1-full"
    complete.mkdir()
    (complete / "task_metadata.json").write_text("{}")
    (complete / "my_notes.txt").write_text("mine")
    partial = tmp_path / "p-v1-full"
    (partial / "16000" / "train").mkdir(parents=True)
    sf.write(partial / "16000" / "train" / "a.wav", _tone(0), SR)
    before = snapshot(tmp_path)
    with pytest.raises(ForeignFileError, match="my_notes.txt"):
        TaskWriter(complete, TaskMetadata.scene("t"), overwrite=True, written=written)
    with pytest.raises(ForeignFileError, match="a.wav was not written by the builder"):
        TaskWriter(partial, TaskMetadata.scene("p"), written=written)
    assert snapshot(tmp_path) == before
    ours = TaskWriter(tmp_path / "o-v1-full", TaskMetadata.scene("o"), written=written)
    ours.add_clip("train", "a.wav", _tone(0), SR, ["x"])
    TaskWriter(tmp_path / "o-v1-full", TaskMetadata.scene("o"), overwrite=True, written=written)  # all ours
    assert not (tmp_path / "o-v1-full" / "16000").exists()
