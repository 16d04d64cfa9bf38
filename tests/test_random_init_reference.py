"""The one random-init reference: `hear_slicer.load_model(random_init=True)`.

It must be the default model's architecture and input normalisation with fixed-seed random
weights, the same on every call, reachable from a manifest (`options: {random_init: true}`),
and equal to what the mini-LAPE study scored as `random_init` (a checkpoint holding the
SLICER run's frontend and normalisation with a seed-0 encoder), so its committed results
stay valid.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import hear_slicer
from hear_slicer.api import DEFAULT_CHECKPOINT, RANDOM_INIT_SEED
from hear_slicer.checkpoint import load_checkpoint, save_checkpoint
from hear_slicer.encoder import AudioNTT2020

SR = 16000


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(123)  # must not matter: the reference has its own seed
    return hear_slicer.load_model(random_init=True)


@pytest.fixture(scope="module")
def audio():
    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(3, SR, generator=g)


def test_it_says_what_it_is(reference):
    assert reference.is_random_init and reference.checkpoint_path == ""
    assert reference.provenance == {"objective": "none (random init)", "seed": RANDOM_INIT_SEED,
                                    "norm_stats_from": str(DEFAULT_CHECKPOINT)}


def test_weights_are_the_same_on_every_call_whatever_the_global_seed(reference):
    torch.manual_seed(7)
    again = hear_slicer.load_model(random_init=True)
    mine, theirs = reference.encoder.state_dict(), again.encoder.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_architecture_and_normalisation_are_the_default_models(reference):
    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    assert reference.encoder.cfg == ckpt.encoder and reference.frontend.cfg == ckpt.frontend
    assert reference.frontend.norm_mean.item() == pytest.approx(ckpt.norm_mean, rel=1e-6)
    assert reference.frontend.norm_std.item() == pytest.approx(ckpt.norm_std, rel=1e-6)
    assert ckpt.norm_std != 1.0  # the default's statistics are not the identity (else this test shows nothing)


def test_weights_differ_from_the_trained_model(reference):
    trained = hear_slicer.load_model().encoder.state_dict()
    ours = reference.encoder.state_dict()
    weights = [k for k in ours if k.endswith("weight") and ours[k].dim() > 1]
    assert weights and not any(torch.allclose(ours[k], trained[k]) for k in weights)


def test_it_is_what_the_study_scored_as_random_init(tmp_path, audio, reference):
    """The study's former construction, spelled out: the default checkpoint with its encoder
    replaced by AudioNTT2020 built right after seeding RANDOM_INIT_SEED."""
    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    torch.manual_seed(RANDOM_INIT_SEED)
    encoder = AudioNTT2020(ckpt.encoder)
    path = tmp_path / "random_init.pt"
    save_checkpoint(dataclasses.replace(ckpt, student=encoder.state_dict(), teacher=None, use="student"), path)
    expected = hear_slicer.get_scene_embeddings(audio, hear_slicer.load_model(str(path)))
    assert torch.equal(hear_slicer.get_scene_embeddings(audio, reference), expected)
    # and with an explicit checkpoint, that checkpoint's normalisation
    assert torch.equal(hear_slicer.get_scene_embeddings(audio, hear_slicer.load_model(str(path), random_init=True)),
                       expected)


def test_it_passes_through_the_hear_api(reference, audio):
    scene = hear_slicer.get_scene_embeddings(audio, reference)
    emb, ts = hear_slicer.get_timestamp_embeddings(audio, reference)
    assert scene.shape == (3, reference.scene_embedding_size) and torch.isfinite(scene).all()
    assert emb.shape[:2] == ts.shape and emb.shape[0] == 3 and torch.isfinite(emb).all()
    trained = hear_slicer.get_scene_embeddings(audio, hear_slicer.load_model())
    assert not torch.allclose(scene, trained)


def test_a_manifest_model_option_asks_for_it(tmp_path, audio, reference):
    from eval_suites.core.embeddings import load_hear_model
    from eval_suites.core.manifest import load_manifest

    (tmp_path / "m.yaml").write_text(
        "models:\n  - {name: random_init, module: hear_slicer, options: {random_init: true}}\ntasks: [a_task]\n")
    spec = load_manifest(tmp_path / "m.yaml").models[0]
    loaded = load_hear_model(spec, "cpu")
    assert loaded.model.is_random_init
    assert np.array_equal(loaded.scene(audio.numpy()), hear_slicer.get_scene_embeddings(audio, reference).numpy())


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_random_init_must_be_a_bool(value):
    with pytest.raises(TypeError, match="random_init must be True or False"):
        hear_slicer.load_model(random_init=value)


def test_without_the_default_checkpoint_it_refuses_naming_the_file(monkeypatch, tmp_path):
    import hear_slicer.api as api

    monkeypatch.setattr(api, "DEFAULT_CHECKPOINT", tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        hear_slicer.load_model(random_init=True)


def test_random_init_seed_draws_another_initialisation_with_the_same_normalisation(reference):
    other = hear_slicer.load_model(random_init=True, random_init_seed=1)
    again = hear_slicer.load_model(random_init=True, random_init_seed=RANDOM_INIT_SEED)
    a, b, c = (dict(m.encoder.state_dict()) for m in (reference, other, again))
    assert all(torch.equal(a[k], c[k]) for k in a)  # the default seed is RANDOM_INIT_SEED
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    assert torch.equal(other.frontend.norm_mean, reference.frontend.norm_mean)
    assert other.provenance["seed"] == 1 and other.is_random_init


@pytest.mark.parametrize("kwargs, words", [
    ({"random_init": True, "random_init_seed": -1}, "random_init_seed must be an integer"),
    ({"random_init": True, "random_init_seed": True}, "random_init_seed must be an integer"),
    ({"random_init": True, "random_init_seed": "1"}, "random_init_seed must be an integer"),
    ({"random_init_seed": 3}, "only used with random_init=True"),
])
def test_random_init_seed_is_checked(kwargs, words):
    with pytest.raises(TypeError, match=words):
        hear_slicer.load_model(**kwargs)
