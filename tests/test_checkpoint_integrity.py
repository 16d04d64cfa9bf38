"""Integrity of every value that changes a result (issue 29, item 2), on real files on disk.

A checkpoint's tensors and its other values (normalisation statistics, frontend, encoder,
`use`, training config, provenance, training state) are each covered by a recorded hash: a
flipped bit in any of them is a CheckpointError, not different embeddings or a resume at
another learning rate. A file without the hashes loads with a logged warning. A prepared
store cannot switch its checks off through store.json: version 1 is refused.
"""
from __future__ import annotations

import io
import logging
import struct
import zipfile
from pathlib import Path

import pytest
import torch

import hear_slicer
from hear_slicer.checkpoint import (HASH_KEY, SETTINGS_HASH_KEY, CheckpointError, load_checkpoint,
                                    save_checkpoint)

from test_checkpoint import make_ckpt

REPO = Path(__file__).resolve().parents[1]


def _flip_pickled_float(src: Path, dst: Path, value: float) -> None:
    """Copy `src` with the lowest exponent bit of the pickled float `value` flipped in its data.pkl
    (a bit flip on disk: -6.5 becomes -3.25), the zip entry left as it is."""
    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("data.pkl"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    body = bytes(raw[start:start + info.file_size])
    at = body.index(b"G" + struct.pack(">d", value))  # BINFLOAT: 'G' and 8 bytes, big-endian
    raw[start + at + 2] ^= 0x10  # byte 1 of the double holds the exponent's lowest bits
    dst.write_bytes(bytes(raw))


def test_a_flipped_bit_in_norm_mean_on_disk_does_not_load(tmp_path):
    """Feeds a checkpoint whose norm_mean has one bit flipped in the file (-6.5 -> -3.25);
    expects CheckpointError naming its settings (it loaded and shifted every embedding)."""
    good = save_checkpoint(make_ckpt(), tmp_path / "good.pt")
    bad = tmp_path / "flipped.pt"
    _flip_pickled_float(good, bad, -6.5)
    assert torch.load(bad, weights_only=True)["norm_mean"] == -3.25  # the flip took, the file still reads
    with pytest.raises(CheckpointError, match="is corrupt: its settings .* do not match"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="is corrupt"):
        hear_slicer.load_model(str(bad))


def _tampered(tmp_path: Path, edit) -> Path:
    """A saved checkpoint read back, changed by `edit(dict)` and saved with its recorded hashes kept."""
    path = save_checkpoint(make_ckpt(), tmp_path / "a.pt")
    d = torch.load(path, weights_only=True)
    edit(d)
    out = tmp_path / "tampered.pt"
    torch.save(d, out)
    return out


@pytest.mark.parametrize("what, edit", [
    ("norm_std", lambda d: d.update(norm_std=6.5)),
    ("frontend f_min", lambda d: d["frontend"].update(f_min=d["frontend"]["f_min"] + 100.0)),
    ("frontend f_max", lambda d: d["frontend"].update(f_max=4000.0)),
    ("encoder", lambda d: d["encoder"].update(d=64)),
    ("an int stored as a float", lambda d: d["encoder"].update(channels=float(d["encoder"]["channels"]))),
    ("use", lambda d: d.update(use="student")),
    ("training config lr", lambda d: d["train_config"].update(optim={"lr": 1.0})),
    ("provenance", lambda d: d["provenance"].update(steps=30)),
    ("training state step", lambda d: d["training_state"].update(step=4)),
    ("a value in a tuple", lambda d: d["training_state"].update(rng=[1, 2, (3, 5)])),
])
def test_every_setting_is_covered_by_the_hash(tmp_path, what, edit):
    """Feeds checkpoints with one non-tensor value changed and the hashes left as written; expects
    CheckpointError each time (each loaded and changed embeddings or the resumed run)."""
    with pytest.raises(CheckpointError, match="its settings .* do not match the hash"):
        load_checkpoint(_tampered(tmp_path, edit))


def test_a_checkpoint_without_hashes_loads_with_a_logged_warning(tmp_path, caplog):
    """Feeds a checkpoint with no hashes, and one with the tensor hash only (as written before the
    settings hash existed); expects both to load, each with a warning naming what is unverified,
    and a fully hashed file to load without one."""
    none = _tampered(tmp_path, lambda d: (d.pop(HASH_KEY), d.pop(SETTINGS_HASH_KEY)))
    with caplog.at_level(logging.WARNING, logger="hear_slicer.checkpoint"):
        assert load_checkpoint(none).norm_mean == -6.5
    assert "records no hash of its tensors or its settings" in caplog.text and str(none) in caplog.text
    caplog.clear()
    old = _tampered(tmp_path, lambda d: d.pop(SETTINGS_HASH_KEY))
    with caplog.at_level(logging.WARNING, logger="hear_slicer.checkpoint"):
        load_checkpoint(old)
    assert "records no hash of its settings" in caplog.text and "tensors" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hear_slicer.checkpoint"):
        load_checkpoint(save_checkpoint(make_ckpt(), tmp_path / "new.pt"))
    assert caplog.text == ""


def test_the_shipped_default_checkpoint_records_both_hashes(caplog):
    """The shipped default.pt was re-hashed (scripts/rehash_checkpoint.py), not retrained: it
    carries both hashes and loads without a warning."""
    d = torch.load(REPO / "hear_slicer/assets/default.pt", weights_only=True)
    assert d.get(HASH_KEY) and d.get(SETTINGS_HASH_KEY)
    with caplog.at_level(logging.WARNING, logger="hear_slicer.checkpoint"):
        load_checkpoint(REPO / "hear_slicer/assets/default.pt")
    assert caplog.text == ""


def test_a_checkpoint_saved_to_a_buffer_hashes_the_same_values_it_reads_back(tmp_path):
    """The settings hash is computed on what `torch.load(weights_only=True)` gives back (ints, floats,
    tuples, nested dicts with int keys, as an optimiser state holds): a round trip verifies."""
    state = {"step": 3, "optimizer": {"state": {0: {"step": torch.tensor(3.0)}},
                                      "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0]}]},
             "rng": {"python": {"version": 3, "internal": [1, 2, 3], "gauss": None}}}
    path = save_checkpoint(make_ckpt(training_state=state), tmp_path / "a.pt")
    buf = io.BytesIO(path.read_bytes())
    assert torch.load(buf, weights_only=True)[SETTINGS_HASH_KEY]
    assert load_checkpoint(path).training_state["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
