"""Helpers for tests that write a cached task directly in heareval's embedding layout (the
one :func:`eval_suites.core.embeddings.read_split` reads)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd


def write_embeddings(d: Path, split: str, x) -> None:
    """``<split>.embeddings.npy`` (a float32 memmap of x (M, D)) and its dimensions file."""
    x = np.asarray(x, dtype=np.float32)
    (d / f"{split}.embedding-dimensions.json").write_text(json.dumps(list(x.shape)))
    mm = np.memmap(d / f"{split}.embeddings.npy", dtype=np.float32, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    del mm


def write_cached_task(d: Path, splits: dict[str, tuple[np.ndarray, list[str]]],
                      vocabulary: list[str], split_mode: str = "trainvaltest") -> Path:
    """A scene/multiclass cached task: {split: (x (M, D), labels)} in heareval's layout."""
    d.mkdir(parents=True)
    meta = {"task_name": "planted", "version": "v1", "embedding_type": "scene",
            "prediction_type": "multiclass", "split_mode": split_mode,
            "sample_duration": 1.0, "evaluation": ["top1_acc"], "splits": list(splits)}
    (d / "task_metadata.json").write_text(json.dumps(meta))
    pd.DataFrame({"idx": range(len(vocabulary)), "label": vocabulary}).to_csv(
        d / "labelvocabulary.csv", index=False)
    for split, (x, labels) in splits.items():
        write_embeddings(d, split, x)
        with open(d / f"{split}.target-labels.pkl", "wb") as fh:
            pickle.dump([[str(lab)] for lab in labels], fh)  # plain strings, as the writer stores them
    return d
