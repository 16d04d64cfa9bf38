"""The last tracebacks and misleading messages of issue 29 (item 5, this part): one test per
example, each naming what it feeds and the one line it expects. The corpus-list cases (file
names that are not UTF-8, a binary files.txt) are in `test_corpus_installs.py`.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import hear_slicer
from eval_suites.__main__ import main as eval_main
from hear_slicer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pretrain.export import main as export_main

from test_checkpoint import make_ckpt

torch.set_num_threads(1)


@pytest.mark.parametrize("entry, value", [("provenance", ["objective", "slicer"]), ("provenance", "slicer"),
                                          ("train_config", 3), ("training_state", ["step", 3])])
def test_a_checkpoint_whose_provenance_is_not_a_mapping_is_one_line(tmp_path, capsys, entry, value):
    """Feeds load_checkpoint, load_model and `pretrain.export` a checkpoint (hashes intact) whose
    provenance, training config or training state is not a mapping; expects CheckpointError naming
    the entry and exit 3 in one line (export died with `TypeError: 'list' object is not a mapping`)."""
    path = save_checkpoint(make_ckpt(**{entry: value}), tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=f"'{entry}' must be a mapping, got a {type(value).__name__}"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=f"'{entry}' must be a mapping"):
        hear_slicer.load_model(str(path))
    assert export_main([str(path), str(tmp_path / "out.pt")]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and f"'{entry}' must be a mapping" in err, err
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("embed", [hear_slicer.get_scene_embeddings, hear_slicer.get_timestamp_embeddings])
def test_a_sparse_tensor_into_the_plugin_is_a_type_error_saying_so(tmp_path, embed):
    """Feeds the plugin a sparse (COO and CSR) tensor of audio; expects TypeError 'expected a dense
    audio tensor ... audio.to_dense()' (it failed inside torch with a message about sparse kernels)."""
    model = hear_slicer.load_model(str(save_checkpoint(make_ckpt(), tmp_path / "a.pt")))
    audio = torch.zeros(2, 16000)
    audio[0, 100] = 0.5
    for sparse in (audio.to_sparse(), audio.to_sparse_csr()):
        with pytest.raises(TypeError, match=r"expected a dense audio tensor, got layout torch\.sparse_\w+; "
                                            r"convert it first \(audio\.to_dense\(\)\)"):
            embed(sparse, model)
    assert embed(audio, model) is not None  # the dense tensor embeds


def test_a_directory_given_as_a_manifest_checkpoint_is_named_as_one(tmp_path, capsys):
    """Feeds `eval_suites list` a manifest whose model checkpoint is a directory; expects the problem
    'is a directory, not a checkpoint file' and exit 2 (it said the checkpoint 'does not exist')."""
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    m = tmp_path / "m.yaml"
    m.write_text(f"tasks_root: {tmp_path}\nmodels: [{{name: a, module: hear_slicer, checkpoint: {folder}}}]\n"
                 "tasks: [nowhere]\n")
    assert eval_main(["list", str(m)]) == 2
    out = capsys.readouterr().out
    assert f"checkpoint {folder} is a directory, not a checkpoint file" in out and f"{folder} does not exist" not in out, out
