"""VoxCeleb1 (Nagrani et al. 2017) speaker identification -> VC.

Distributed as ``vox1_dev_wav.zip`` and ``vox1_test_wav.zip``, which both extract to
``wav/<speaker id>/<youtube id>/<nnnnn>.wav`` (16 kHz mono 16-bit wav), plus the
identification split file ``iden_split.txt`` (from the VoxCeleb1 meta page), one line per
utterance: ``<set> <speaker>/<youtube id>/<nnnnn>.wav`` with set 1 = train,
2 = validation, 3 = test. Label: the speaker id (1,251 speakers).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eval_suites.lape.base import Clip, Converter

__all__ = ["VoxCelebSpeakers"]

_SPLITS = {"1": "train", "2": "valid", "3": "test"}


@dataclass
class VoxCelebSpeakers(Converter):
    task_name: str = field(init=False, default="lape_vc")
    window: float = field(init=False, default=8.0)
    layout: str = field(init=False, default=(
        "  <root>/\n"
        "    iden_split.txt   (lines '<1|2|3> idNNNNN/<youtube id>/NNNNN.wav')\n"
        "    wav/idNNNNN/<youtube id>/NNNNN.wav   (vox1_dev_wav.zip and vox1_test_wav.zip "
        "extracted into the same root)"
    ))

    def _entries(self, root: Path) -> list[tuple[str, str]]:
        entries = []
        for n, line in enumerate(self.read_text(root / "iden_split.txt").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[0] not in _SPLITS:
                raise self.layout_error(f"{root / 'iden_split.txt'} line {n} is {line!r}; expected "
                                        f"'<1|2|3> idNNNNN/<youtube id>/NNNNN.wav'")
            entries.append((_SPLITS[parts[0]], parts[1]))
        return entries

    def check_layout(self, root: Path) -> None:
        if not (root / "iden_split.txt").is_file():
            raise self.missing(root, "iden_split.txt", "the identification split file")
        if not (root / "wav").is_dir():
            raise self.missing(root, "wav", "the audio folder")
        absent = [rel for _, rel in self._entries(root) if not (root / "wav" / rel).is_file()]
        if absent:
            raise self.layout_error(
                f"{len(absent)} file(s) listed in iden_split.txt are missing under {root / 'wav'}, "
                f"e.g. {', '.join(absent[:3])}; extract both vox1_dev_wav.zip and "
                f"vox1_test_wav.zip into {root}.")

    def notes(self) -> dict:
        return {"source": "VoxCeleb1", "split": "official iden_split.txt (1 train, 2 valid, 3 test)"}

    def list_clips(self, root: Path) -> list[Clip]:
        return [Clip(split, rel.replace("/", "__"), root / "wav" / rel, (rel.split("/")[0],))
                for split, rel in self._entries(root)]
