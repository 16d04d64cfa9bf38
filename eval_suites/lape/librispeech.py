"""LibriSpeech (Panayotov et al. 2015) speaker identification -> LBS.

Distributed as ``train-clean-100.tar.gz`` (openslr.org/12), which extracts to
``LibriSpeech/train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``
(16 kHz mono flac) with ``<speaker>-<chapter>.trans.txt`` next to the audio and
``SPEAKERS.TXT`` etc. in ``LibriSpeech/``. The label is the speaker id (251 speakers).

LibriSpeech has no speaker-ID split. We split each speaker's utterances 80/10/10
(train/valid/test) at random with a fixed seed (stratified by speaker), the usual
closed-set protocol of COLA / LAPE's LBS task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eval_suites.lape.base import Clip, Converter
from eval_suites.lape.splits import per_label_fractions

__all__ = ["LibriSpeechSpeakers"]


@dataclass
class LibriSpeechSpeakers(Converter):
    subset: str = "train-clean-100"
    shares: tuple[float, float, float] = (0.8, 0.1, 0.1)
    task_name: str = field(init=False, default="lape_lbs")
    window: float = field(init=False, default=13.0)
    layout: str = field(init=False, default=(
        "  <root>/   (the LibriSpeech/ folder extracted from train-clean-100.tar.gz)\n"
        "    SPEAKERS.TXT (optional)\n"
        "    train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac\n"
        "    train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt"
    ))

    def check_layout(self, root: Path) -> None:
        if not (root / self.subset).is_dir():
            hint = ""
            if (root / "LibriSpeech" / self.subset).is_dir():
                hint = f" (found {root / 'LibriSpeech' / self.subset}: pass {root / 'LibriSpeech'} as --source)"
            raise self.layout_error(f"the {self.subset} folder not found: expected "
                                    f"{root / self.subset}.{hint}")
        if not any((root / self.subset).glob("*/*/*.flac")):
            raise self.missing(root, f"{self.subset}/<speaker>/<chapter>/*.flac", "flac utterances")

    def notes(self) -> dict:
        return {
            "source": f"LibriSpeech {self.subset}",
            "split": (f"no official speaker-ID split: each speaker's utterances split "
                      f"{self.shares[0]:.0%}/{self.shares[1]:.0%}/{self.shares[2]:.0%} train/valid/test "
                      f"at random (seed {self.seed})"),
        }

    def list_clips(self, root: Path) -> list[Clip]:
        files = sorted((root / self.subset).glob("*/*/*.flac"))
        speakers = [f.parent.parent.name for f in files]
        splits = per_label_fractions(speakers, list(zip(("train", "valid", "test"), self.shares)), self.seed)
        return [Clip(s, f.stem + ".wav", f, (f"spk{spk}",)) for f, spk, s in zip(files, speakers, splits)]
