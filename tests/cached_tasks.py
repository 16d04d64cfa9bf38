"""Helpers for tests that write a cached task directly in heareval's embedding layout (the
one :func:`eval_suites.core.embeddings.read_split` reads)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_embeddings(d: Path, split: str, x) -> None:
    """``<split>.embeddings.npy`` (a float32 memmap of x (M, D)) and its dimensions file."""
    x = np.asarray(x, dtype=np.float32)
    (d / f"{split}.embedding-dimensions.json").write_text(json.dumps(list(x.shape)))
    mm = np.memmap(d / f"{split}.embeddings.npy", dtype=np.float32, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    del mm
