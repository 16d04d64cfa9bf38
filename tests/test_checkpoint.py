"""Checkpoint format: round trip, safe loading, and a clear error for every bad file."""
import dataclasses
import os

import pytest
import torch

import hear_slicer
from hear_slicer.checkpoint import (FORMAT_VERSION, Checkpoint, CheckpointError, build_encoder, build_frontend,
                                    load_checkpoint, save_checkpoint)
from hear_slicer.encoder import AudioNTT2020, EncoderConfig
from hear_slicer.frontend import FrontendConfig

SMALL = EncoderConfig(channels=8, d=32)


def make_ckpt(**kw) -> Checkpoint:
    torch.manual_seed(1)
    student, teacher = AudioNTT2020(SMALL), AudioNTT2020(SMALL)
    args = dict(frontend=FrontendConfig(), encoder=SMALL, norm_mean=-6.5, norm_std=3.25,
                student=student.state_dict(), teacher=teacher.state_dict(), use="teacher",
                train_config={"objective": {"name": "slicer"}}, provenance={"objective": "slicer", "steps": 3},
                training_state={"step": 3, "queue": torch.randn(4, 2), "rng": [1, 2, (3, 4)]})
    args.update(kw)
    return Checkpoint(**args)


def test_round_trip_keeps_everything(tmp_path):
    ckpt = make_ckpt()
    path = save_checkpoint(ckpt, tmp_path / "sub" / "a.pt")
    back = load_checkpoint(path)
    assert back.frontend == ckpt.frontend and back.encoder == ckpt.encoder
    assert (back.norm_mean, back.norm_std, back.use) == (-6.5, 3.25, "teacher")
    assert back.provenance == ckpt.provenance and back.train_config == ckpt.train_config
    assert torch.equal(back.training_state["queue"], ckpt.training_state["queue"])
    for k, v in ckpt.teacher.items():
        assert torch.equal(back.teacher[k], v)
    enc = build_encoder(back)
    assert not enc.training
    # 'use' selects the teacher weights, not the student's.
    key = "blocks.0.0.weight"
    assert torch.equal(enc.state_dict()[key], ckpt.teacher[key])
    assert not torch.equal(enc.state_dict()[key], ckpt.student[key])
    assert float(build_frontend(back).norm_std) == 3.25
    assert not list(tmp_path.joinpath("sub").glob("*.tmp"))  # atomic write leaves no temp file
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_model_from_checkpoint_embeds_with_its_stats(tmp_path):
    path = save_checkpoint(make_ckpt(), tmp_path / "a.pt")
    model = hear_slicer.load_model(str(path))
    assert model.scene_embedding_size == model.timestamp_embedding_size == 32
    assert not model.is_random_init
    assert model.provenance["objective"] == "slicer"
    assert hear_slicer.get_scene_embeddings(torch.zeros(1, 16000), model).shape == (1, 32)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="not found"):
        hear_slicer.load_model(str(tmp_path / "nope.pt"))


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a torch file")
    with pytest.raises(CheckpointError, match="could not read"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a hear-slicer checkpoint"):
        load_checkpoint(other)


class Evil:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_untrusted_pickle_does_not_execute(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    d = make_ckpt().to_dict()
    d["provenance"] = {"payload": Evil()}
    torch.save(d, path)
    with pytest.raises(CheckpointError, match="safely"):
        load_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out


def test_unknown_version(tmp_path):
    d = make_ckpt().to_dict()
    d["format_version"] = FORMAT_VERSION + 1
    torch.save(d, tmp_path / "v.pt")
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(tmp_path / "v.pt")


def test_weights_that_do_not_match_the_config(tmp_path):
    ckpt = make_ckpt(encoder=dataclasses.replace(SMALL, d=64))
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="do not match the encoder config"):
        build_encoder(load_checkpoint(path))
    with pytest.raises(CheckpointError, match="do not match"):
        hear_slicer.load_model(str(path))


def test_teacher_selected_without_teacher():
    with pytest.raises(CheckpointError, match="no teacher"):
        make_ckpt(teacher=None, use="teacher")


def test_export_keeps_only_the_embedding_encoder(tmp_path):
    from pretrain.export import main as export_main

    src = save_checkpoint(make_ckpt(), tmp_path / "run" / "checkpoints" / "step_00000003.pt")
    out = tmp_path / "slim.pt"
    assert export_main([str(tmp_path / "run"), str(out)]) == 0
    slim = load_checkpoint(out)
    full = load_checkpoint(src)
    assert slim.teacher is None and slim.training_state is None and slim.use == "student"
    for k, v in full.teacher.items():  # the source marked the teacher for embedding
        assert torch.equal(slim.student[k], v)
    assert slim.provenance["exported_from"] == "teacher" and slim.norm_mean == full.norm_mean
    assert out.stat().st_size < src.stat().st_size
    x = torch.randn(1, 16000) * 0.1
    a = hear_slicer.get_scene_embeddings(x, hear_slicer.load_model(str(src)))
    b = hear_slicer.get_scene_embeddings(x, hear_slicer.load_model(str(out)))
    assert torch.equal(a, b)
    assert export_main([str(tmp_path / "empty_run"), str(out)]) == 2
