"""Speech Commands v0.01 / v0.02 (Warden 2018) -> SC-V1, SC-V2(12), SC-V2(35).

Distributed as ``speech_commands_v0.01.tar.gz`` / ``speech_commands_v0.02.tar.gz``;
the extracted root holds one folder per word with 1 s, 16 kHz, 16-bit mono wav files
named ``<speaker hash>_nohash_<n>.wav``, a ``_background_noise_`` folder of long noise
recordings, and ``validation_list.txt`` / ``testing_list.txt`` (paths relative to the
root, e.g. ``right/bb05582b_nohash_3.wav``). Files in neither list are training data.

Variants (one class, two config values, not three copies):
- ``classes=12`` (SC-V1 and SC-V2(12)): the ten command words, ``_unknown_`` for every
  other word (all of them are kept) and ``_silence_``: 1 s segments cut from the
  ``_background_noise_`` recordings without overlap; the first 80 % of each recording's
  segments go to train, the next 10 % to valid, the last 10 % to test, so the three
  splits share no audio and every noise type is in every split.
- ``classes=35`` (SC-V2(35)): the 35 words of v0.02, no silence and no unknown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from eval_suites.lape.base import Clip, Converter

__all__ = ["SpeechCommands", "COMMANDS", "WORDS_V1", "WORDS_V2", "SILENCE", "UNKNOWN"]

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
"""The ten command words of the 12-class protocol."""

WORDS_V1 = COMMANDS + (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
)
"""The 30 word folders of v0.01."""

WORDS_V2 = WORDS_V1 + ("backward", "follow", "forward", "learn", "visual")
"""The 35 word folders of v0.02."""

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
NOISE_DIR = "_background_noise_"


@dataclass
class SpeechCommands(Converter):
    """SC-V1 (``dataset_version=1, classes=12``), SC-V2(12) (2, 12), SC-V2(35) (2, 35)."""

    dataset_version: int = 2
    classes: int = 12
    silence_shares: tuple[float, float, float] = (0.8, 0.1, 0.1)
    window: float = field(init=False, default=1.0)

    def __post_init__(self) -> None:
        if self.dataset_version not in (1, 2):
            raise ValueError(f"expected Speech Commands dataset_version 1 or 2, got {self.dataset_version}")
        if (self.dataset_version, self.classes) not in ((1, 12), (2, 12), (2, 35)):
            raise ValueError(
                f"expected classes=12 (v1 or v2) or classes=35 (v2 only), "
                f"got classes={self.classes} for v{self.dataset_version}"
            )
        v = self.dataset_version
        self.task_name = {1: "lape_sc_v1", 2: f"lape_sc_v2_{self.classes}"}[v]
        words = WORDS_V1 if v == 1 else WORDS_V2
        self.layout = (
            f"  <root>/   (extracted speech_commands_v0.0{v}.tar.gz)\n"
            f"    validation_list.txt\n    testing_list.txt\n"
            f"    {NOISE_DIR}/*.wav\n"
            f"    {words[0]}/<speaker>_nohash_<n>.wav ... one folder per word "
            f"({len(words)} words: {', '.join(words)})"
        )

    @property
    def words(self) -> tuple[str, ...]:
        return WORDS_V1 if self.dataset_version == 1 else WORDS_V2

    def check_layout(self, root: Path) -> None:
        for name in ("validation_list.txt", "testing_list.txt"):
            if not (root / name).is_file():
                raise self.missing(root, name, "the validation/test list file")
        if self.classes == 12 and not (root / NOISE_DIR).is_dir():
            raise self.missing(root, NOISE_DIR, "the background noise folder (source of _silence_)")
        absent = [w for w in self.words if not (root / w).is_dir()]
        if absent:
            raise self.layout_error(
                f"{len(absent)} word folder(s) missing under {root}: {', '.join(absent)}.")
        if self.dataset_version == 1 and (root / "backward").is_dir():
            raise self.layout_error(
                f"{root} has a 'backward' folder, which only v0.02 has; point SC-V1 at the "
                f"extracted speech_commands_v0.01.tar.gz")

    def notes(self) -> dict:
        base = {
            "source": f"Speech Commands v0.0{self.dataset_version}",
            "split": "official validation_list.txt / testing_list.txt; other files are train",
        }
        if self.classes == 12:
            base["classes"] = ("10 command words + _unknown_ (all other words, all kept) + _silence_ "
                               "(1 s segments of _background_noise_: first 80% of each recording "
                               "train, next 10% valid, last 10% test)")
        return base

    def _label(self, word: str) -> str:
        if self.classes == 35:
            return word
        return word if word in COMMANDS else UNKNOWN

    def list_clips(self, root: Path) -> list[Clip]:
        valid = set((root / "validation_list.txt").read_text().split())
        test = set((root / "testing_list.txt").read_text().split())
        clips = []
        for word in self.words:
            for path in sorted((root / word).glob("*.wav")):
                rel = f"{word}/{path.name}"
                split = "test" if rel in test else "valid" if rel in valid else "train"
                clips.append(Clip(split, f"{word}__{path.name}", path, (self._label(word),)))
        if self.classes == 12:
            clips += self._silence(root)
        return clips

    def _silence(self, root: Path) -> list[Clip]:
        clips = []
        for path in sorted((root / NOISE_DIR).glob("*.wav")):
            n = int(sf.info(str(path)).duration // self.window)  # whole 1 s segments
            n_train = int(round(self.silence_shares[0] * n))
            n_valid = int(round(self.silence_shares[1] * n))
            for i in range(n):
                split = "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
                clips.append(Clip(split, f"{SILENCE}__{path.stem}__{i:04d}.wav", path, (SILENCE,),
                                  start=i * self.window, duration=self.window))
        return clips
