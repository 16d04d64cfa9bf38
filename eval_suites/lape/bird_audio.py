"""Bird audio detection development data (freefield1010 + warblr) -> BSD.

Distributed as ``ff1010bird_wav.zip`` and ``warblrb10k_public_wav.zip`` (10 s, 44.1 kHz,
16-bit mono wav named ``<itemid>.wav``; both zips extract to a ``wav/`` folder) and one
label file per dataset, in either of two releases (hasbird 0/1; label ``bird`` /
``no_bird``):

- the 2016/17 Bird Audio Detection challenge files on figshare, which LAPE used:
  ``ff1010bird_metadata.csv`` and ``warblrb10k_public_metadata.csv`` (``itemid,hasbird``);
- the DCASE 2018 Task 3 files: ``ff1010bird_metadata_2018.csv`` and
  ``warblrb10k_public_metadata_2018.csv`` (``itemid,datasetid,hasbird``).

The audio is the same in both. Where both label files of a dataset are present the 2018
one is read.

Expected root: a label file per dataset, and each zip extracted into its own folder
(``ff1010bird/wav/``, ``warblrb10k/wav/``) or both into one ``wav/`` folder (the layout
of the DCASE 2018 baseline). Split: 20 % test, stratified by label with a fixed seed;
10 % of the rest valid (stratified); the others train.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from eval_suites.lape.base import Clip, Converter
from eval_suites.lape.splits import stratified_holdout

__all__ = ["BirdAudioDetection", "SOURCES"]

SOURCES = {"ff1010bird": ("ff1010bird_metadata_2018.csv", "ff1010bird_metadata.csv"),
           "warblrb10k": ("warblrb10k_public_metadata_2018.csv", "warblrb10k_public_metadata.csv")}
"""Dataset name -> its label file names (DCASE 2018, then the 2016 figshare release)."""


@dataclass
class BirdAudioDetection(Converter):
    test_fraction: float = 0.2
    valid_fraction: float = 0.1
    task_name: str = field(init=False, default="lape_bsd")
    window: float = field(init=False, default=10.0)
    layout: str = field(init=False, default=(
        "  <root>/\n"
        "    ff1010bird_metadata_2018.csv         (itemid,datasetid,hasbird; DCASE 2018)\n"
        "    warblrb10k_public_metadata_2018.csv  (itemid,datasetid,hasbird; DCASE 2018)\n"
        "      or ff1010bird_metadata.csv, warblrb10k_public_metadata.csv (itemid,hasbird; 2016 figshare)\n"
        "    ff1010bird/wav/<itemid>.wav          (ff1010bird_wav.zip extracted in ff1010bird/)\n"
        "    warblrb10k/wav/<itemid>.wav          (warblrb10k_public_wav.zip in warblrb10k/)\n"
        "  or both zips extracted into a single <root>/wav/"
    ))

    def _audio_dir(self, root: Path, dataset: str) -> Path | None:
        for d in (root / dataset / "wav", root / "wav"):
            if d.is_dir():
                return d
        return None

    def _label_file(self, root: Path, dataset: str) -> Path | None:
        return next((root / n for n in SOURCES[dataset] if (root / n).is_file()), None)

    def _table(self, root: Path, dataset: str) -> pd.DataFrame:
        path = self._label_file(root, dataset)
        table = pd.read_csv(io.StringIO(self.read_text(path)), dtype={"itemid": str})
        absent = {"itemid", "hasbird"} - set(table.columns)
        if absent:
            raise self.layout_error(f"{path} has columns {list(table.columns)}; expected "
                                    f"itemid,hasbird or itemid,datasetid,hasbird (missing {sorted(absent)})")
        bad = sorted(set(table["hasbird"].astype(str)) - {"0", "1"})
        if bad:
            raise self.layout_error(f"{path}: hasbird must be 0 or 1, found {bad[:5]}")
        return table

    def check_layout(self, root: Path) -> None:
        for dataset, names in SOURCES.items():
            if self._label_file(root, dataset) is None:
                raise self.missing(root, f"{names[0]} (or {names[1]})", f"the {dataset} label file")
            if self._audio_dir(root, dataset) is None:
                raise self.missing(root, f"{dataset}/wav", f"the {dataset} audio folder")

    def notes(self) -> dict:
        return {
            "source": "DCASE 2018 bird audio detection: freefield1010 + warblrb10k",
            "split": (f"no official split: {self.test_fraction:.0%} test (stratified by label, "
                      f"seed {self.seed}); {self.valid_fraction:.0%} of the rest valid (seed "
                      f"{self.seed + 1})"),
        }

    def list_clips(self, root: Path) -> list[Clip]:
        items = []  # (dataset, itemid, wav, label)
        for dataset in SOURCES:
            audio = self._audio_dir(root, dataset)
            for row in self._table(root, dataset).itertuples(index=False):
                wav = audio / f"{row.itemid}.wav"
                if not wav.is_file():
                    raise self.missing(root, wav.relative_to(root).as_posix(),
                                       f"audio of {dataset} item {row.itemid} (listed in "
                                       f"{self._label_file(root, dataset).name})")
                items.append((dataset, row.itemid, wav, "bird" if int(row.hasbird) else "no_bird"))
        items.sort(key=lambda t: (t[0], t[1]))
        labels = [t[3] for t in items]
        test = stratified_holdout(labels, self.test_fraction, self.seed)
        rest = [i for i in range(len(items)) if i not in test]
        valid = {rest[j] for j in stratified_holdout([labels[i] for i in rest], self.valid_fraction,
                                                     self.seed + 1)}
        return [Clip("test" if i in test else "valid" if i in valid else "train",
                     f"{d}__{item}.wav", wav, (lab,))
                for i, (d, item, wav, lab) in enumerate(items)]
