"""IEMOCAP (Busso et al. 2008) emotion recognition, 4 classes -> IC.

Distributed (on request, by USC SAIL) as ``IEMOCAP_full_release``:
``Session<k>/sentences/wav/<dialog>/<utterance>.wav`` (16 kHz mono wav, one file per
turn) and the consensus labels in ``Session<k>/dialog/EmoEvaluation/<dialog>.txt``, one
line per turn ``[<start> - <end>]<TAB><utterance><TAB><emotion><TAB>[V, A, D]`` with
emotion codes neu, ang, sad, hap, exc, fru, sur, fea, dis, oth, xxx.

Classes: neutral, angry, sad, happy, with "excited" (exc) merged into happy (the
common 4-class protocol, 5,531 utterances); other codes are dropped.
Split: Session 5 is test (speakers unseen in training); Sessions 1-4 are train, with
10 % of their utterances (stratified by emotion, fixed seed) held out as valid.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from eval_suites.lape.base import Clip, Converter
from eval_suites.lape.splits import stratified_holdout

__all__ = ["IemocapEmotions", "EMOTIONS"]

EMOTIONS = {"neu": "neutral", "ang": "angry", "sad": "sad", "hap": "happy", "exc": "happy"}
"""IEMOCAP code -> class; exc is merged into happy."""

_LINE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[")


@dataclass
class IemocapEmotions(Converter):
    test_session: int = 5
    valid_fraction: float = 0.1
    task_name: str = field(init=False, default="lape_ic")
    window: float = field(init=False, default=4.0)
    layout: str = field(init=False, default=(
        "  <root>/   (IEMOCAP_full_release)\n"
        "    Session1/ ... Session5/\n"
        "      sentences/wav/<dialog>/<utterance>.wav\n"
        "      dialog/EmoEvaluation/<dialog>.txt"
    ))

    def check_layout(self, root: Path) -> None:
        for k in range(1, 6):
            for rel, what in ((f"Session{k}/sentences/wav", "the utterance audio folder"),
                              (f"Session{k}/dialog/EmoEvaluation", "the emotion label folder")):
                if not (root / rel).is_dir():
                    raise self.missing(root, rel, what)

    def notes(self) -> dict:
        return {
            "source": "IEMOCAP_full_release",
            "classes": "neu->neutral, ang->angry, sad->sad, hap+exc->happy; other codes dropped",
            "split": (f"test = Session{self.test_session}; train = the other sessions minus "
                      f"{self.valid_fraction:.0%} of their utterances (stratified by emotion, seed "
                      f"{self.seed}) carved as valid"),
        }

    def list_clips(self, root: Path) -> list[Clip]:
        rows = []  # (session, utterance path, label)
        for k in range(1, 6):
            for txt in sorted((root / f"Session{k}/dialog/EmoEvaluation").glob("*.txt")):
                if txt.name.startswith("._"):  # macOS resource forks in some copies
                    continue
                for line in txt.read_text(errors="replace").splitlines():
                    m = _LINE.match(line)
                    if not m or m.group(4) not in EMOTIONS:
                        continue
                    utt = m.group(3)
                    wav = root / f"Session{k}/sentences/wav/{txt.stem}/{utt}.wav"
                    if not wav.is_file():
                        raise self.layout_error(f"{txt} labels utterance {utt}, but {wav} is missing.")
                    rows.append((k, wav, EMOTIONS[m.group(4)]))
        train = [r for r in rows if r[0] != self.test_session]
        held = stratified_holdout([r[2] for r in train], self.valid_fraction, self.seed)
        clips = [Clip("valid" if i in held else "train", w.name, w, (lab,))
                 for i, (_, w, lab) in enumerate(train)]
        clips += [Clip("test", w.name, w, (lab,)) for k, w, lab in rows if k == self.test_session]
        return clips
