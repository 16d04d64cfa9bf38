"""TUT Urban Acoustic Scenes 2018, development set (DCASE 2018 Task 1A) -> TUT.

Distributed as ``TUT-urban-acoustic-scenes-2018-development.audio.<n>.zip`` plus
``.meta.zip`` and ``.doc.zip``, extracting to ``TUT-urban-acoustic-scenes-2018-development/``
with ``audio/<scene>-<city>-<location>-<segment>-a.wav`` (10 s, 48 kHz, 24-bit stereo),
``meta.csv`` (tab-separated: filename, scene_label, identifier, source_label) and the
official cross-validation setup ``evaluation_setup/fold1_train.txt`` and
``fold1_evaluate.txt`` (tab-separated ``audio/<file>.wav<TAB><scene>``). Ten scenes.

Split: fold1_evaluate is test. The official setup has no validation split: 10 % of the
fold1_train recording locations (``identifier``, e.g. ``barcelona-0``; grouped so a
location is never on both sides) per scene, with a fixed seed, are valid.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from eval_suites.lape.base import Clip, Converter
from eval_suites.lape.splits import stratified_holdout

__all__ = ["TutUrbanScenes", "SCENES"]

SCENES = ("airport", "bus", "metro", "metro_station", "park", "public_square",
          "shopping_mall", "street_pedestrian", "street_traffic", "tram")


@dataclass
class TutUrbanScenes(Converter):
    valid_fraction: float = 0.1
    task_name: str = field(init=False, default="lape_tut")
    window: float = field(init=False, default=9.0)
    layout: str = field(init=False, default=(
        "  <root>/   (TUT-urban-acoustic-scenes-2018-development)\n"
        "    audio/<scene>-<city>-<location>-<segment>-a.wav\n"
        "    meta.csv   (tab-separated: filename, scene_label, identifier, source_label)\n"
        "    evaluation_setup/fold1_train.txt     (audio/<file>.wav<TAB><scene>)\n"
        "    evaluation_setup/fold1_evaluate.txt  (audio/<file>.wav<TAB><scene>)"
    ))

    def check_layout(self, root: Path) -> None:
        for rel, what in (("audio", "the audio folder"), ("meta.csv", "the metadata file"),
                          ("evaluation_setup/fold1_train.txt", "the official fold-1 train list"),
                          ("evaluation_setup/fold1_evaluate.txt", "the official fold-1 evaluation list")):
            if not (root / rel).exists():
                raise self.missing(root, rel, what)

    def notes(self) -> dict:
        return {
            "source": "TUT Urban Acoustic Scenes 2018 development set",
            "split": (f"official fold 1: fold1_evaluate.txt is test; {self.valid_fraction:.0%} of the "
                      f"fold1_train.txt recording locations per scene (seed {self.seed}) are valid"),
        }

    def _rows(self, path: Path) -> list[list[str]]:
        text = io.StringIO(self.read_text(path), newline="")
        return [r for r in csv.reader(text, delimiter="\t") if r and r[0].strip()]

    def list_clips(self, root: Path) -> list[Clip]:
        meta = {r[0]: r for r in self._rows(root / "meta.csv") if r[0] != "filename"}
        split_of = {"fold1_train.txt": "train", "fold1_evaluate.txt": "test"}
        rows = []  # (split, filename, scene, location)
        for list_name, split in split_of.items():
            for r in self._rows(root / "evaluation_setup" / list_name):
                if len(r) < 2 or r[1] not in SCENES:
                    raise self.layout_error(
                        f"{root / 'evaluation_setup' / list_name}: line {r!r} is not "
                        f"'<audio/file.wav><TAB><scene>' with a scene in {SCENES}")
                if not (root / r[0]).is_file():
                    raise self.missing(root, r[0], f"an audio file listed in {list_name}")
                location = meta[r[0]][2] if r[0] in meta and len(meta[r[0]]) > 2 else r[0]
                rows.append((split, r[0], r[1], location))
        rows.sort(key=lambda t: t[1])
        train = [i for i, t in enumerate(rows) if t[0] == "train"]
        held = {train[j] for j in stratified_holdout(
            [rows[i][2] for i in train], self.valid_fraction, self.seed,
            groups=[rows[i][3] for i in train])}
        return [Clip("valid" if i in held else split, Path(name).name, root / name, (scene,))
                for i, (split, name, scene, _) in enumerate(rows)]
