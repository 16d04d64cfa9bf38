"""Hostile inputs, round two (issue 21), pretraining side: one test per example, each naming
what it feeds and what it expects (a clear error, a listed skip or a correct result).

Classes: `--overwrite` on folders that are not (only) a run; the prepared store (out-of-range
and non-UTF-8 files, tampered rows, index, store.json and shards, sources changed between a
killed prepare and its rerun, an OUT that cannot be written); checkpoints (a flipped byte,
a directory, frontend and encoder disagreeing); resume (fewer steps, another world size, a
moved run folder, non-finite state, orphan temporary files); the loop (a NaN loss naming
its batch's files, an unreadable subfolder); and the one error path of the CLIs (exit 2/3,
one line, a traceback only with --debug). Runs are tiny (synthetic tones, 1-3 steps).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import pretrain.prepare as prepare_mod
import pretrain.train as train_mod
from hear_slicer.checkpoint import HASH_KEY, CheckpointError, load_checkpoint, save_checkpoint
from pretrain.__main__ import main as pretrain_main
from pretrain.export import main as export_main
from pretrain.prepare import main as prepare_main
from pretrain.prepare import prepare
from pretrain.store import StoreCrops, StoreError

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
from test_hostile_inputs import HUGE, SR, TINY, _argv, _tone, file_size_limit  # noqa: E402  (the same tiny model, audio, full disk)

ODD = os.fsdecode(b"odd_\xff\xfe.wav")  # a readable file whose name is not UTF-8


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    """8 good clips, one huge float WAV and one good file whose name is not UTF-8."""
    root = tmp_path_factory.mktemp("hostile2_audio")
    for i in range(8):
        sf.write(root / f"clip{i}.wav", _tone(i), SR)
    sf.write(root / HUGE, _tone(9) * 1e20, SR, subtype="FLOAT")
    sf.write(root / "odd.wav", _tone(10), SR)
    os.rename(root / "odd.wav", root / ODD)
    return root


@pytest.fixture(scope="module")
def run_dir(audio, tmp_path_factory) -> Path:
    """A finished 2-step run (checkpoints at steps 1 and 2)."""
    out = tmp_path_factory.mktemp("hostile2_run") / "run"
    assert pretrain_main(_argv(audio, out, "run.steps=2", "run.checkpoint_every=1")) == 0
    return out


def _copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest)
    return dest


# ----------------------------------------------------------------------------- --overwrite
def test_overwrite_never_deletes_a_folder_that_is_not_a_run(audio, tmp_path, capsys):
    """Feeds `--overwrite` a folder holding checkpoints/my_other_model.bin and a run.log but no
    run of ours (no record of the files a run wrote); expects exit 2 naming the file, 'nothing was
    touched', and every file intact (it used to delete both)."""
    out = tmp_path / "theirs"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "my_other_model.bin").write_bytes(b"weights")
    (out / "run.log").write_text("their log\n")
    assert pretrain_main(_argv(audio, out, "run.steps=1") + ["--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "was not written by the run" in err and "nothing was touched" in err and "my_other_model.bin" in err, err
    assert (out / "checkpoints" / "my_other_model.bin").read_bytes() == b"weights"
    assert (out / "run.log").read_text() == "their log\n"


def test_overwrite_replaces_a_run_that_crashed_before_its_first_checkpoint(audio, tmp_path, monkeypatch, capsys):
    """Feeds `--overwrite` a run of ours that crashed before its first checkpoint (run.json, run.log,
    stats.pt, log.csv, all recorded); expects it replaced and the removed files listed in run.log
    (the study reruns such folders with --overwrite). A folder as a run from before the record left
    it (run.log with pretrain's header, stats.pt) is refused untouched: nothing proves it ours."""
    out = tmp_path / "crashed"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # stands for a kill during the first checkpoint write

    monkeypatch.setattr(train_mod, "save_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        pretrain_main(_argv(audio, out, "run.steps=1"))
    monkeypatch.undo()
    assert (out / "run.json").is_file() and (out / "stats.pt").is_file() and not (out / "checkpoints").exists()
    assert pretrain_main(_argv(audio, out, "run.steps=1") + ["--overwrite"]) == 0
    assert (out / "checkpoints" / "step_00000001.pt").is_file() and (out / "run.json").is_file()
    log = (out / "run.log").read_text()
    assert "--overwrite: removed" in log and "stats.pt" in log and "run.json" in log
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "run.log").write_text("[2026-01-01 00:00:00] pretrain: objective slicer, code revision x, 1 process(es)\n")
    (legacy / "stats.pt").write_bytes(b"old stats")
    capsys.readouterr()
    assert pretrain_main(_argv(audio, legacy, "run.steps=1") + ["--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "legacy/run.log (and 1 more: stats.pt) was not written by the run" in err, err
    assert sorted(p.name for p in legacy.iterdir()) == ["run.log", "stats.pt"]
    assert (legacy / "stats.pt").read_bytes() == b"old stats"


def test_overwrite_removes_only_what_the_run_wrote_and_lists_it(run_dir, audio, tmp_path, capsys):
    """Feeds `--overwrite` a run of ours with a foreign file at the top (notes.txt), then also one in
    checkpoints/; expects the run replaced and notes.txt kept, its removed files listed in run.log;
    with the foreign checkpoints/my_other_model.bin, exit 2 naming it and nothing touched."""
    out = _copy_run(run_dir, tmp_path / "run")
    (out / "notes.txt").write_text("mine")
    (out / "checkpoints" / "my_other_model.bin").write_bytes(b"weights")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert pretrain_main(_argv(audio, out, "run.steps=1") + ["--overwrite"]) == 2
    assert "checkpoints/my_other_model.bin was not written by the run" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    (out / "checkpoints" / "my_other_model.bin").unlink()
    assert pretrain_main(_argv(audio, out, "run.steps=1") + ["--overwrite"]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000001.pt"]
    assert (out / "notes.txt").read_text() == "mine"
    log = (out / "run.log").read_text()
    assert "--overwrite: removed" in log and "checkpoints/step_00000002.pt" in log and "notes.txt" not in log


# ----------------------------------------------------------------------------- prepared store
@pytest.fixture(scope="module")
def store(audio, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile2_store") / "store"
    assert prepare_main([str(audio), str(out), "--workers", "1", "--files-per-shard", "4", "--no-progress"]) == 0
    return out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


def test_prepare_skips_an_out_of_range_file_and_keeps_a_non_utf8_name(store, audio):
    """Feeds prepare a float WAV with |x| ~ 1e20 and a file whose name is not UTF-8; expects
    the first listed in skipped.csv as out of range (it was stored clipped to full scale) and
    the second stored like any other (the whole corpus used to be refused)."""
    skipped = {Path(r["path"]).name: r["reason"] for r in _rows(store / "skipped.csv")}
    assert list(skipped) == [HUGE] and skipped[HUGE].startswith("out of range (peak |x| = 4.76e+19"), skipped
    names = {Path(r["path"]).name for r in _rows(store / "index.csv")}
    assert ODD in names and HUGE not in names and len(names) == 9
    ds = StoreCrops(store, SR, 8000, verify=True)
    assert ODD in {Path(p).name for p in ds.files}


def _spoiled_copy(store: Path, dest: Path) -> Path:
    shutil.copytree(store, dest)
    return dest


def _set_index_hash(store: Path) -> None:
    info = json.loads((store / "store.json").read_text())
    info["index_blake2b"] = hashlib.blake2b((store / "index.csv").read_bytes(), digest_size=16).hexdigest()
    (store / "store.json").write_text(json.dumps(info))


def test_a_clip_at_negative_full_scale_is_no_damage(tmp_path):
    """A sample at or below -1 is stored as int16 -32768, whose peak is 32768 / 32767 > 1: the
    store's row check accepts it (a real corpus had one: a game's music track)."""
    src = tmp_path / "src"
    src.mkdir()
    x = _tone(1)
    x[100] = -1.00002  # a float WAV just past full scale
    sf.write(src / "loud.wav", x, SR, subtype="FLOAT")
    sf.write(src / "quiet.wav", _tone(2), SR)
    info = prepare(src, tmp_path / "store", progress=False)
    assert info["clips"] == 2
    ds = StoreCrops(tmp_path / "store", SR, 8000, verify=True)
    assert max(ds.peak) == pytest.approx(32768 / 32767)


def test_a_tampered_store_is_refused_naming_the_file(store, tmp_path):
    """Feeds stores with a row of samples=0 (with and without the index hash updated), a
    store.json that is not JSON or has a wrong type, and a shard one byte short; expects a
    StoreError naming the file when the store is opened (they used to train)."""
    bad = _spoiled_copy(store, tmp_path / "zero")
    text = (bad / "index.csv").read_text(encoding="utf-8", errors="surrogateescape")
    lines = text.splitlines(keepends=True)
    fields = lines[1].split(",")
    fields[3] = "0"  # samples
    (bad / "index.csv").write_text("".join([lines[0], ",".join(fields), *lines[2:]]), encoding="utf-8",
                                   errors="surrogateescape")
    with pytest.raises(StoreError, match="index.csv was changed after the store was written"):
        StoreCrops(bad, SR, 8000)
    _set_index_hash(bad)
    with pytest.raises(StoreError, match=r"index.csv line 2 is damaged .*samples >= 1"):
        StoreCrops(bad, SR, 8000)

    js = _spoiled_copy(store, tmp_path / "json")
    (js / "store.json").write_text("{not json")
    with pytest.raises(StoreError, match="store.json cannot be read"):
        StoreCrops(js, SR, 8000)
    info = json.loads((store / "store.json").read_text())
    (js / "store.json").write_text(json.dumps({**info, "clips": "many"}))
    with pytest.raises(StoreError, match="store.json is damaged: 'clips'"):
        StoreCrops(js, SR, 8000)

    short = _spoiled_copy(store, tmp_path / "short")
    pcm = short / "shards" / "00000.pcm"
    pcm.write_bytes(pcm.read_bytes()[:-2])
    with pytest.raises(StoreError, match="00000.pcm is .* bytes but index.csv says"):
        StoreCrops(short, SR, 8000)


def test_a_shard_overwritten_with_noise_is_caught_by_the_full_check(store, tmp_path, audio, capsys):
    """Feeds a store whose shard was overwritten with noise of the same size; expects the cheap
    check on open to pass and the full one (data.verify_store, prepare --verify) to refuse it
    naming the shard: exit 3 and one line from `python -m pretrain`, no traceback."""
    noisy = _spoiled_copy(store, tmp_path / "noisy")
    pcm = noisy / "shards" / "00001.pcm"
    pcm.write_bytes(np.random.default_rng(0).integers(-3000, 3000, pcm.stat().st_size // 2, dtype="<i2").tobytes())
    StoreCrops(noisy, SR, 8000)  # sizes and index are intact
    with pytest.raises(StoreError, match="00001.pcm: the samples of .* do not match their recorded hash"):
        StoreCrops(noisy, SR, 8000, verify=True)
    argv = ["--config", str(REPO / "pretrain/configs/slicer.yaml"), "--out", str(tmp_path / "run"), "--set", *TINY,
            f"data.path={noisy}", "data.verify_store=true", "run.steps=1"]
    assert pretrain_main(argv) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "00001.pcm" in err and "Traceback" not in err, err
    assert prepare_main([str(audio), str(noisy), "--workers", "1", "--files-per-shard", "4", "--no-progress",
                         "--verify"]) == 3
    assert "do not match their recorded hash" in capsys.readouterr().err


def test_a_source_changed_between_a_killed_prepare_and_its_rerun_is_prepared_again(audio, tmp_path, monkeypatch,
                                                                                 capsys):
    """Feeds prepare a rerun after a kill, where a source file of a finished shard changed in
    between; expects that shard prepared again (said on stderr) and the store holding the new
    content (only the file names used to be compared)."""
    source = tmp_path / "src"
    shutil.copytree(audio, source)
    out = tmp_path / "store"
    real = prepare_mod._prepare_shard

    def dies_on_shard_1(root, shard, *a):
        if shard == 1:
            raise KeyboardInterrupt  # as if killed while writing shard 1
        return real(root, shard, *a)

    monkeypatch.setattr(prepare_mod, "_prepare_shard", dies_on_shard_1)
    with pytest.raises(KeyboardInterrupt):
        prepare(source, out, files_per_shard=4, progress=False)
    monkeypatch.setattr(prepare_mod, "_prepare_shard", real)
    sf.write(source / "clip0.wav", _tone(20), SR)  # same size, other content
    capsys.readouterr()
    prepare(source, out, files_per_shard=4, progress=False)
    assert "shard 0: 1 source file(s) changed since it was written" in capsys.readouterr().err
    ds = StoreCrops(out, SR, 8000, verify=True)
    i = [Path(p).name for p in ds.files].index("clip0.wav")
    np.testing.assert_allclose(ds.clip(i) / 32767.0, _tone(20), atol=1e-4)


def test_prepare_on_a_full_or_unwritable_out_is_one_line_naming_the_path(audio, tmp_path, capsys):
    """Feeds prepare an OUT on a disk that fills mid-shard (RLIMIT_FSIZE) and an OUT below a
    file; expects exit 3 and one line naming the path (tracebacks before)."""
    out = tmp_path / "full"
    with file_size_limit(20000):
        code = prepare_main([str(audio), str(out), "--workers", "1", "--files-per-shard", "4", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and f"cannot write {out / 'shards' / '00000.pcm'}" in err and "Traceback" not in err, err
    assert not list((out / "shards").glob(".*.tmp"))  # no half-written file left
    (tmp_path / "a_file").write_text("x")
    assert prepare_main([str(audio), str(tmp_path / "a_file" / "store"), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "cannot create" in err and "a_file" in err and err.count("\n") == 1, err


# ----------------------------------------------------------------------------- checkpoints
def _flip_tensor_byte(src: Path, dst: Path) -> None:
    """Copy `src` with one byte of its largest tensor storage flipped (the zip entry's data)."""
    with zipfile.ZipFile(src) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(src.read_bytes())
    with open(src, "rb") as f:  # the entry's data starts after its local header (30 bytes + name + extra)
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
    raw[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x10
    dst.write_bytes(bytes(raw))


def test_a_checkpoint_with_one_flipped_byte_does_not_load(run_dir, tmp_path, capsys):
    """Feeds a checkpoint with one byte of tensor data flipped; expects CheckpointError 'is
    corrupt' (it used to load and embed) and exit 3 from export; a checkpoint without the
    hash (older ones) still loads, and the shipped default.pt carries it."""
    good = run_dir / "checkpoints" / "step_00000002.pt"
    bad = tmp_path / "flipped.pt"
    _flip_tensor_byte(good, bad)
    with pytest.raises(CheckpointError, match="is corrupt: its tensor data does not match"):
        load_checkpoint(bad)
    assert export_main([str(bad), str(tmp_path / "out.pt")]) == 3
    assert "is corrupt" in capsys.readouterr().err
    d = torch.load(good, weights_only=True)
    assert HASH_KEY in d
    del d[HASH_KEY]
    torch.save(d, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").training_state["step"] == 2
    assert torch.load(REPO / "hear_slicer/assets/default.pt", weights_only=True).get(HASH_KEY) is not None
    load_checkpoint(REPO / "hear_slicer/assets/default.pt")  # checked


def test_a_checkpoint_that_is_a_directory_is_named_as_one(tmp_path, capsys):
    """Feeds a directory named like a checkpoint to load_checkpoint, `--resume` and export;
    expects 'is a directory' each time (it was reported as not found / no checkpoint)."""
    folder = tmp_path / "step_00000002.pt"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(folder)
    assert pretrain_main(["--resume", str(folder)]) == 2
    assert "is a directory, neither a checkpoint file nor a run folder" in capsys.readouterr().err
    assert export_main([str(folder), str(tmp_path / "out.pt")]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_a_checkpoint_whose_frontend_and_encoder_disagree_is_refused_at_load(run_dir, tmp_path):
    """Feeds a checkpoint with frontend.n_mels=32 and encoder.n_mels=64; expects CheckpointError
    at load naming both (it used to fail at the first embedding)."""
    ckpt = load_checkpoint(run_dir / "checkpoints" / "step_00000002.pt")
    ckpt.frontend.n_mels = 32
    save_checkpoint(ckpt, tmp_path / "mels.pt")
    with pytest.raises(CheckpointError, match="32 mel bins but the encoder expects 64"):
        load_checkpoint(tmp_path / "mels.pt")


# ----------------------------------------------------------------------------- resume
def test_resuming_to_fewer_steps_than_the_checkpoint_is_one_line(run_dir, capsys):
    """Feeds `--resume` of a step-2 checkpoint with run.steps=1; expects exit 2 naming both."""
    assert pretrain_main(["--resume", str(run_dir), "--set", "run.steps=1"]) == 2
    err = capsys.readouterr().err
    assert "run.steps=1 but" in err and "already at step 2" in err and err.count("\n") == 1, err


def test_resuming_with_another_world_size_is_refused_unless_allowed(run_dir, tmp_path, capsys):
    """Feeds a 2-process checkpoint to a 1-process resume; expects exit 2 naming both sizes
    (it went on with one log line), and with run.allow_world_size_change=true a resumed run
    that says so in run.log."""
    out = _copy_run(run_dir, tmp_path / "run")
    ckpt_path = out / "checkpoints" / "step_00000002.pt"
    ckpt = load_checkpoint(ckpt_path)
    ckpt.provenance["processes"] = 2
    save_checkpoint(ckpt, ckpt_path)
    assert pretrain_main(["--resume", str(out), "--set", "run.steps=3"]) == 2
    err = capsys.readouterr().err
    assert "written by 2 process(es), this run has 1" in err and "run.allow_world_size_change=true" in err, err
    assert pretrain_main(["--resume", str(out), "--set", "run.steps=3", "run.allow_world_size_change=true"]) == 0
    assert "world size: " in (out / "run.log").read_text()


def test_a_moved_run_folder_resumes_in_its_new_place(run_dir, tmp_path):
    """Feeds `--resume NEW` after `mv OLD NEW`; expects the next checkpoint in NEW, nothing
    recreated at OLD (it used to write into OLD), and run.log saying the folder moved."""
    old = _copy_run(run_dir, tmp_path / "old")
    ckpt = load_checkpoint(old / "checkpoints" / "step_00000002.pt")  # its config must name the old folder
    ckpt.train_config["run"]["out"] = str(old)
    save_checkpoint(ckpt, old / "checkpoints" / "step_00000002.pt")
    new = tmp_path / "new"
    old.rename(new)
    assert pretrain_main(["--resume", str(new), "--set", "run.steps=3"]) == 0
    assert (new / "checkpoints" / "step_00000003.pt").is_file() and not old.exists()
    assert f"run folder moved" in (new / "run.log").read_text()
    assert load_checkpoint(new / "checkpoints" / "step_00000003.pt").train_config["run"]["out"] == str(new)


def test_a_checkpoint_with_non_finite_optimizer_or_queue_state_is_not_resumed(run_dir, tmp_path, capsys):
    """Feeds checkpoints whose optimizer moment or queue holds NaN (weights finite); expects
    exit 3 naming the entry (they were resumed)."""
    good = run_dir / "checkpoints" / "step_00000002.pt"
    for name, spoil in {"optimizer": lambda s: next(iter(s["optimizer"]["state"].values()))["exp_avg"].fill_(
            float("nan")), "queue": lambda s: s["objective"]["queue.keys"].fill_(float("inf"))}.items():
        ckpt = load_checkpoint(good)
        spoil(ckpt.training_state)
        path = tmp_path / name / "checkpoints" / "step_00000002.pt"
        save_checkpoint(ckpt, path)
        assert pretrain_main(["--resume", str(path), "--set", "run.steps=3"]) == 3
        err = capsys.readouterr().err
        assert "holds NaN or Inf training state" in err and name in err, err


def test_a_rank_file_with_non_finite_memories_or_garbage_is_not_resumed(tmp_path):
    """Feeds load_rank_state a rank file whose mixup memory holds NaN and one that is not a
    torch file; expects CheckpointError naming the file (NaN was restored; garbage raised an
    unpickling error)."""
    from hear_slicer.encoder import EncoderConfig
    from pretrain.augment import AugmentConfig, AugmentPipeline
    from pretrain.objectives.slicer import Slicer, SlicerConfig
    from pretrain.rank_state import load_rank_state, rank_state_path, save_rank_state

    aug = AugmentPipeline(AugmentConfig(), 16, 12)
    obj = Slicer(EncoderConfig(n_mels=16, d=32, channels=4), SlicerConfig(queue_size=8, n_clusters=4, instance_dim=8))
    aug.remember(torch.randn(3, 16, 12))
    aug.mixup.memory.clips.view(-1)[0] = float("nan")
    ckpt = tmp_path / "checkpoints" / "step_00000003.pt"
    path = save_rank_state(ckpt, 1, aug, obj)
    with pytest.raises(CheckpointError, match=rf"{path}.*NaN or Inf.*augment.mixup.memory.clips"):
        load_rank_state(ckpt, 1, aug, obj)
    rank_state_path(ckpt, 2).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="rank2.pt cannot be read"):
        load_rank_state(ckpt, 2, aug, obj)


def test_a_store_cannot_switch_its_checks_off_by_saying_it_is_version_1(store, tmp_path):
    """Feeds StoreCrops a tampered store (a shard overwritten with noise of the same size) whose
    store.json was set to version 1, and a store as version 1 wrote it (no hashes); expects both
    refused, 'version 1 ... refused; prepare it again' (issue 29: version 1 used to switch every
    hash check off, so the tampered shard trained)."""
    tampered = _spoiled_copy(store, tmp_path / "tampered")
    pcm = tampered / "shards" / "00000.pcm"
    pcm.write_bytes(np.random.default_rng(0).integers(-2000, 2000, pcm.stat().st_size // 2, dtype="<i2").tobytes())
    with pytest.raises(StoreError, match="do not match their recorded hash"):
        StoreCrops(tampered, SR, 8000, verify=True)
    info = json.loads((tampered / "store.json").read_text())
    info["version"] = 1
    (tampered / "store.json").write_text(json.dumps(info))
    for verify in (False, True):
        with pytest.raises(StoreError, match="version 1 store .* cannot be verified and it is refused; prepare it "
                                             "again"):
            StoreCrops(tampered, SR, 8000, verify=verify)
    old = _spoiled_copy(store, tmp_path / "v1")
    info = json.loads((old / "store.json").read_text())
    info["version"] = 1
    del info["index_blake2b"], info["max_peak"]
    (old / "store.json").write_text(json.dumps(info))
    with pytest.raises(StoreError, match="version 1 store"):
        StoreCrops(old, SR, 8000)


def test_a_non_finite_state_is_never_written_nor_called_the_last_good_checkpoint(audio, tmp_path, monkeypatch):
    """Feeds a run whose queue becomes NaN after step 2 while its loss is still finite;
    expects TrainingDiverged naming step 1's checkpoint as the last good one and no step-2
    checkpoint (step 2 was written and then called the last good one)."""
    from pretrain.config import load_config
    from pretrain.objectives.slicer import Slicer

    real = Slicer.after_step

    def poisons_the_queue(self, step, total):
        real(self, step, total)
        if step == 2:
            self.queue.keys.fill_(float("nan"))

    monkeypatch.setattr(Slicer, "after_step", poisons_the_queue)
    out = tmp_path / "run"
    cfg = load_config(REPO / "pretrain/configs/slicer.yaml", TINY + [
        f"data.path={audio}", f"run.out={out}", "run.steps=3", "run.checkpoint_every=1"])
    with pytest.raises(train_mod.TrainingDiverged, match=r"queue.keys.*step_00000002.pt is not written.*"
                                                        r"last good checkpoint is .*step_00000001.pt"):
        train_mod.train(cfg)
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*.pt")) == ["step_00000001.pt"]


def test_orphan_temporary_files_are_removed_on_resume_and_logged(run_dir, tmp_path, monkeypatch):
    """Feeds a resume a run folder holding what a kill in the middle of a write leaves (a recorded
    temporary file) and a file named like one that the run did not write; expects the first
    removed and named in run.log (they stayed forever), the second kept (never deleted by name)."""
    import hear_slicer.written as written_mod

    out = _copy_run(run_dir, tmp_path / "run")

    def killed(fd):
        raise KeyboardInterrupt  # stands for a kill while a file's bytes are being written

    monkeypatch.setattr(written_mod.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        pretrain_main(["--resume", str(out), "--set", "run.steps=3"])
    monkeypatch.undo()
    (orphan,) = out.rglob(".*.tmp")  # the first file the resume wrote (the header scan's cache)
    planted = out / "checkpoints" / ".step_00000003.pt.x1y2.tmp"
    planted.write_bytes(b"not the run's")
    assert pretrain_main(["--resume", str(out), "--set", "run.steps=3"]) == 0
    assert not orphan.exists() and planted.read_bytes() == b"not the run's"
    log = (out / "run.log").read_text()
    assert f"removed 1 temporary file(s) left by an interrupted write: {orphan.relative_to(out)}" in log


# ----------------------------------------------------------------------------- the loop
def test_a_nan_loss_names_the_files_of_its_batch(audio, tmp_path):
    """Feeds a corpus with a |x| ~ 1e20 file and data.max_peak=1e30 (so it is not skipped);
    expects TrainingDiverged naming that file, loudest first (no file was named)."""
    from pretrain.config import load_config

    cfg = load_config(REPO / "pretrain/configs/slicer.yaml", TINY + [
        f"data.path={audio}", f"run.out={tmp_path / 'run'}", "run.steps=6", "data.max_peak=1e30",
        "run.checkpoint_every=100"])
    with pytest.raises(train_mod.TrainingDiverged, match=rf"loss became nan .* clips from \S*{HUGE} \(peak"):
        train_mod.train(cfg)


def test_an_unreadable_subfolder_is_named_in_run_log(audio, tmp_path, monkeypatch):
    """Feeds a corpus with a subfolder that cannot be listed (PermissionError from scandir, as
    for a folder without read permission); expects a run.log line naming it (it was silent)."""
    corpus = tmp_path / "corpus"
    shutil.copytree(audio, corpus)
    (corpus / "locked").mkdir()
    real = os.scandir

    def scandir(path="."):
        if Path(os.fsdecode(path)).name == "locked":
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "run"
    assert pretrain_main(_argv(corpus, out, "run.steps=1")) == 0
    assert f"skipped {corpus / 'locked'}: unreadable folder: Permission denied" in (out / "run.log").read_text()


# ----------------------------------------------------------------------------- the CLIs' error path
def test_cli_errors_are_one_line_with_exit_2_or_3_and_a_traceback_only_with_debug(run_dir, tmp_path, capsys):
    """Feeds each pretrain CLI a usage error and a data error; expects exit 2 / 3 with one
    line 'error: ...' naming the input, and the traceback only with --debug."""
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    cases = [
        (pretrain_main, ["--set", "run.steps=0"], 2, "run.steps"),
        (pretrain_main, ["--resume", str(broken)], 3, str(broken)),
        (prepare_main, [str(tmp_path / "nowhere"), str(tmp_path / "x"), "--no-progress"], 2, "nowhere"),
        (prepare_main, [str(tmp_path), str(tmp_path / "x"), "--no-progress"], 3, str(tmp_path)),
        (export_main, [str(broken), str(tmp_path / "o.pt")], 3, str(broken)),
        (export_main, [str(tmp_path / "missing.pt"), str(tmp_path / "o.pt")], 2, "missing.pt"),
    ]
    for main, argv, code, named in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and named in err, (argv, err)
        assert main([*argv, "--debug"]) == code
        assert "Traceback" in capsys.readouterr().err


def test_a_binary_data_list_is_one_line(tmp_path, capsys):
    """Feeds data.path / prepare's SOURCE a .txt and a .csv list that are binary (NUL bytes);
    expects exit 3 and one line naming the list (a ValueError traceback from os.stat)."""
    for name in ("list.txt", "list.csv"):
        data = tmp_path / name
        data.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)))
        assert pretrain_main(_argv(data, tmp_path / f"run_{name}", "run.steps=1")) == 3
        assert prepare_main([str(data), str(tmp_path / f"store_{name}"), "--no-progress"]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 2 and err.count(f"manifest {data} is not a list of audio files") == 2, err


@pytest.mark.slow
def test_cpu_sync_batchnorm_under_torchrun_is_one_line(tmp_path, audio):
    """Feeds `torchrun --nproc_per_node=2 -m pretrain` on CPU with run.sync_batchnorm=true;
    expects the one-line error from each process and no traceback from our code (torchrun's
    launcher then reports the failed processes its own way)."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "pretrain",
                           *_argv(audio, tmp_path / "run", "run.device=cpu", "run.sync_batchnorm=true")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "error: run.sync_batchnorm=true needs CUDA devices" in out, out[-3000:]
    assert "pretrain/train.py" not in out and "pretrain/__main__.py" not in out, out[-3000:]  # no traceback of ours
