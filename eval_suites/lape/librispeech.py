"""LibriSpeech (Panayotov et al. 2015) train-clean-100 -> LBS (585 chapters) or speaker ID.

Distributed as ``train-clean-100.tar.gz`` (openslr.org/12), which extracts to
``LibriSpeech/train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``
(16 kHz mono flac) with ``<speaker>-<chapter>.trans.txt`` next to the audio and
``SPEAKERS.TXT`` etc. in ``LibriSpeech/``. train-clean-100 holds 28,539 utterances of
251 speakers reading 585 chapters (each chapter is read by one speaker).

Two labelings (one class, the ``label`` field):

- ``label="chapter"`` (task ``lbs``, the default, LAPE's LBS): 585 classes, one per
  ``<speaker>-<chapter>`` folder. LAPE's and DeLoRes' downstream code declare
  ``no_of_classes = 585`` for LibriSpeech-100 and read their labels from prepared CSVs
  that are not published; 585 is the number of chapters of train-clean-100 (251 speakers
  would give 251), so a class is a chapter. Their split is 80/20 train/test; ours holds
  out 20 % of each chapter's utterances as test (seed), then 10 % of the rest as valid
  (seed + 1): LAPE had no validation split.
- ``label="speaker"`` (task ``lbs_spk``, a variant): speaker identification over the 251
  speakers, each speaker's utterances split 80/10/10 train/valid/test (seed).

Both are closed-set and utterance-level: every class is in every split.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eval_suites.lape.base import Clip, Converter
from eval_suites.lape.splits import per_label_fractions, stratified_holdout

__all__ = ["LibriSpeechSpeakers", "LABELS"]

LABELS = ("chapter", "speaker")
"""The two labelings: LAPE's 585 chapters (default) or the 251 speakers."""


@dataclass
class LibriSpeechSpeakers(Converter):
    label: str = "chapter"
    subset: str = "train-clean-100"
    test_fraction: float = 0.2
    valid_fraction: float = 0.1
    shares: tuple[float, float, float] = (0.8, 0.1, 0.1)
    window: float = field(init=False, default=13.0)
    layout: str = field(init=False, default=(
        "  <root>/   (the LibriSpeech/ folder extracted from train-clean-100.tar.gz)\n"
        "    SPEAKERS.TXT (optional)\n"
        "    train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac\n"
        "    train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt"
    ))

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"LibriSpeech label: expected one of {LABELS}, got {self.label!r}")
        self.task_name = "lape_lbs" if self.label == "chapter" else "lape_lbs_spk"

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
        if self.label == "chapter":
            return {
                "source": f"LibriSpeech {self.subset}",
                "classes": ("LAPE's LBS: one class per <speaker>-<chapter> folder (585 in "
                            "train-clean-100), as the 585 classes of LAPE's / DeLoRes' code"),
                "split": (f"no official split: {self.test_fraction:.0%} of each chapter's utterances "
                          f"test (seed {self.seed}), {self.valid_fraction:.0%} of the rest valid "
                          f"(seed {self.seed + 1}); LAPE used 80/20 train/test without valid"),
            }
        return {
            "source": f"LibriSpeech {self.subset}",
            "classes": "variant, not LAPE's LBS: speaker identification over the speakers (251)",
            "split": (f"no official speaker-ID split: each speaker's utterances split "
                      f"{self.shares[0]:.0%}/{self.shares[1]:.0%}/{self.shares[2]:.0%} train/valid/test "
                      f"at random (seed {self.seed})"),
        }

    def list_clips(self, root: Path) -> list[Clip]:
        files = sorted((root / self.subset).glob("*/*/*.flac"))
        if self.label == "speaker":
            labels = [f"spk{f.parent.parent.name}" for f in files]
            splits = per_label_fractions(labels, list(zip(("train", "valid", "test"), self.shares)),
                                         self.seed)
        else:
            labels = [f"{f.parent.parent.name}-{f.parent.name}" for f in files]
            test = stratified_holdout(labels, self.test_fraction, self.seed)
            rest = [i for i in range(len(files)) if i not in test]
            valid = {rest[j] for j in stratified_holdout([labels[i] for i in rest],
                                                         self.valid_fraction, self.seed + 1)}
            splits = ["test" if i in test else "valid" if i in valid else "train"
                      for i in range(len(files))]
        return [Clip(s, f.stem + ".wav", f, (lab,)) for f, lab, s in zip(files, labels, splits)]
