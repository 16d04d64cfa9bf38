"""Give a checkpoint written before the settings hash existed its hashes, changing nothing else.

    .venv/bin/python scripts/rehash_checkpoint.py hear_slicer/assets/default.pt

Reads the checkpoint (its tensor hash, when it has one, is checked), writes it back with
`hear_slicer.checkpoint.save_checkpoint` (tensor and settings hashes), then reads the new
file and checks that every tensor is bit-identical and every other value equal to the old
file's. Used once for the shipped default checkpoint (issue 29): its weights are not retrained.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from hear_slicer.checkpoint import HASH_KEY, SETTINGS_HASH_KEY, load_checkpoint, save_checkpoint


def same(a, b) -> bool:
    """Bit-identical tensors, equal values, same structure."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a.contiguous().reshape(-1).view(torch.uint8),
                                                       b.contiguous().reshape(-1).view(torch.uint8)))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    path = ap.parse_args(argv).checkpoint
    before = torch.load(path, map_location="cpu", weights_only=True)
    if SETTINGS_HASH_KEY in before:
        print(f"{path} already records its settings hash; nothing to do")
        return 0
    save_checkpoint(load_checkpoint(path), path)
    after = torch.load(path, map_location="cpu", weights_only=True)
    load_checkpoint(path)  # both hashes check
    for d in (before, after):
        d.pop(HASH_KEY, None)
        d.pop(SETTINGS_HASH_KEY, None)
    if not same(before, after):
        print(f"error: {path} changed beyond its hashes; restore it from git", file=sys.stderr)
        return 1
    print(f"{path}: tensor and settings hashes recorded; weights and values unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
