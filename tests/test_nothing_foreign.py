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

