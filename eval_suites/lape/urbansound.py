"""UrbanSound8K (Salamon et al. 2014), 10 classes, 10 official folds -> US8K.

Distributed as ``UrbanSound8K.tar.gz``, extracting to ``UrbanSound8K/audio/fold1..fold10/``
(wav files of at most 4 s, as uploaded to Freesound: sample rates from 8 to 192 kHz, 8- to
32-bit, mono or stereo; all readable by libsndfile) and ``UrbanSound8K/metadata/UrbanSound8K.csv``
(columns slice_file_name, fsID, start, end, salience, fold, classID, class).

Split: the 10 official folds, kept as ``presplit_kfold`` (fold k -> split ``fold{k-1:02d}``);
the authors of the dataset ask for 10-fold cross-validation on exactly these folds.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from eval_suites.hear_format.task import fold_names
from eval_suites.lape.base import Clip, Converter

__all__ = ["UrbanSound8K", "CLASSES"]

CLASSES = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
           "engine_idling", "gun_shot", "jackhammer", "siren", "street_music")
_COLUMNS = {"slice_file_name", "fold", "class"}


@dataclass
class UrbanSound8K(Converter):
    task_name: str = field(init=False, default="lape_us8k")
    window: float = field(init=False, default=4.0)
    split_mode: str = field(init=False, default="presplit_kfold")
    layout: str = field(init=False, default=(
        "  <root>/   (UrbanSound8K)\n"
        "    metadata/UrbanSound8K.csv   (slice_file_name,fsID,start,end,salience,fold,classID,class)\n"
        "    audio/fold1/ ... audio/fold10/   (<fsID>-<classID>-<occurrence>-<slice>.wav)"
    ))

    def splits(self) -> list[str]:
        return fold_names(10)

    def check_layout(self, root: Path) -> None:
        if not (root / "metadata/UrbanSound8K.csv").is_file():
            raise self.missing(root, "metadata/UrbanSound8K.csv", "the metadata file")
        for k in range(1, 11):
            if not (root / f"audio/fold{k}").is_dir():
                raise self.missing(root, f"audio/fold{k}", f"the audio folder of fold {k}")

    def notes(self) -> dict:
        return {"source": "UrbanSound8K", "split": "official 10 folds (fold k -> fold{k-1:02d})"}

    def list_clips(self, root: Path) -> list[Clip]:
        path = root / "metadata/UrbanSound8K.csv"
        table = pd.read_csv(io.StringIO(self.read_text(path)))
        absent = _COLUMNS - set(table.columns)
        if absent:
            raise self.layout_error(f"{path} lacks column(s) {sorted(absent)}; expected "
                                    f"slice_file_name,fsID,start,end,salience,fold,classID,class")
        clips = []
        for row in table.sort_values("slice_file_name").to_dict("records"):
            name, fold, label = str(row["slice_file_name"]), int(row["fold"]), str(row["class"])
            if not 1 <= fold <= 10 or label not in CLASSES:
                raise self.layout_error(f"{path}: {name} has fold {fold} and class {label!r}; "
                                        f"expected folds 1-10 and classes {CLASSES}")
            wav = root / f"audio/fold{fold}" / name
            if not wav.is_file():
                raise self.missing(root, f"audio/fold{fold}/{name}",
                                   "an audio file listed in UrbanSound8K.csv")
            clips.append(Clip(f"fold{fold - 1:02d}", name, wav, (label,)))
        return clips
