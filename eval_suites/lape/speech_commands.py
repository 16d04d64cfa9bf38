"""Speech Commands v0.01 / v0.02 (Warden 2018) -> SC-V1, SC-V2(12), SC-V2(35).

Distributed as ``speech_commands_v0.01.tar.gz`` / ``speech_commands_v0.02.tar.gz``;
the extracted root holds one folder per word with 1 s, 16 kHz, 16-bit mono wav files
named ``<speaker hash>_nohash_<n>.wav``, a ``_background_noise_`` folder of long noise
recordings, and ``validation_list.txt`` / ``testing_list.txt`` (paths relative to the
root, e.g. ``right/bb05582b_nohash_3.wav``). Files in neither list are training data.

The 12-class test set is a separate archive, ``speech_commands_test_set_v0.01.tar.gz`` /
``speech_commands_test_set_v0.02.tar.gz`` (3,081 / 4,890 clips of 1 s), which extracts to
12 folders: the ten command words, ``_unknown_`` and ``_silence_``. TFDS, SUPERB, HEAR and
the Hugging Face loader that LAPE's downstream code calls all test on it; so do we.

Variants (one class, two config values, not three copies):
- ``classes=12`` (SC-V1 and SC-V2(12)): train and valid from the main archive's lists
  (files of ``testing_list.txt`` are left out: the test is the test archive), labels the
  ten command words, ``_unknown_`` for every other word (all of them kept) and
  ``_silence_``: 1 s segments cut from the ``_background_noise_`` recordings without
  overlap, the first 90 % of each recording's segments train, the last 10 % valid (so
  train and valid share no audio and every noise type is in both). Test: every clip of the
  test archive, labelled by its folder.
- ``classes=35`` (SC-V2(35)): the 35 words of v0.02 with the official lists (the test
  archive has only the 12-class labels), no silence and no unknown.
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
TEST_FOLDERS = COMMANDS + (UNKNOWN, SILENCE)
"""The 12 folders of the official test archive."""


def test_set_dir(version: int) -> str:
    """Folder of the extracted official test archive under the dataset root."""
    return f"speech_commands_test_set_v0.0{version}"


@dataclass
class SpeechCommands(Converter):
    """SC-V1 (``dataset_version=1, classes=12``), SC-V2(12) (2, 12), SC-V2(35) (2, 35)."""

    dataset_version: int = 2
    classes: int = 12
    silence_shares: tuple[float, float] = (0.9, 0.1)
    window: float = field(init=False, default=1.0)

    def __post_init__(self) -> None:
        if self.dataset_version not in (1, 2):
            raise ValueError(f"expected Speech Commands dataset_version 1 or 2, got {self.dataset_version}")
        if (self.dataset_version, self.classes) not in ((1, 12), (2, 12), (2, 35)):
            raise ValueError(
                f"expected classes=12 (v1 or v2) or classes=35 (v2 only), "
                f"got classes={self.classes} for v{self.dataset_version}"
            )
        if (len(self.silence_shares) != 2 or abs(sum(self.silence_shares) - 1.0) > 1e-9
                or min(self.silence_shares) <= 0):
            raise ValueError(f"expected silence_shares (train, valid), both > 0 and summing "
                             f"to 1, got {self.silence_shares}")
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
        if self.classes == 12:
            self.layout += (
                f"\n    {test_set_dir(v)}/   (speech_commands_test_set_v0.0{v}.tar.gz extracted "
                f"here)\n      {'/ '.join(TEST_FOLDERS)}/   (*.wav)"
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
        if self.classes == 12:
            test_root = root / test_set_dir(self.dataset_version)
            if not test_root.is_dir():
                raise self.missing(root, test_set_dir(self.dataset_version),
                                   f"the official 12-class test set (extract speech_commands_test_set_"
                                   f"v0.0{self.dataset_version}.tar.gz into this folder)")
            absent = [f for f in TEST_FOLDERS if not (test_root / f).is_dir()]
            if absent:
                raise self.layout_error(
                    f"{len(absent)} folder(s) of the test archive missing under {test_root}: "
                    f"{', '.join(absent)}.")

    def notes(self) -> dict:
        v = self.dataset_version
        base = {
            "source": f"Speech Commands v0.0{v}",
            "split": "official validation_list.txt / testing_list.txt; other files are train",
        }
        if self.classes == 12:
            train, valid = self.silence_shares
            base["split"] = (f"test: the official test archive speech_commands_test_set_v0.0{v} "
                             f"(12 folders); valid: validation_list.txt; train: files in neither "
                             f"list (testing_list.txt files are not used)")
            base["classes"] = (f"10 command words + _unknown_ (all other words, all kept) + _silence_ "
                               f"(train/valid: 1 s segments of _background_noise_, first {train:.0%} "
                               f"of each recording train, last {valid:.0%} valid; test: the archive's "
                               f"_silence_ folder)")
        return base

    def _label(self, word: str) -> str:
        if self.classes == 35:
            return word
        return word if word in COMMANDS else UNKNOWN

    def list_clips(self, root: Path) -> list[Clip]:
        valid = set(self.read_text(root / "validation_list.txt").split())
        test = set(self.read_text(root / "testing_list.txt").split())
        clips = []
        for word in self.words:
            for path in sorted((root / word).glob("*.wav")):
                rel = f"{word}/{path.name}"
                split = "test" if rel in test else "valid" if rel in valid else "train"
                if split == "test" and self.classes == 12:
                    continue  # the 12-class test is the official test archive
                clips.append(Clip(split, f"{word}__{path.name}", path, (self._label(word),)))
        if self.classes == 12:
            clips += self._silence(root) + self._test_archive(root)
        return clips

    def _test_archive(self, root: Path) -> list[Clip]:
        test_root = root / test_set_dir(self.dataset_version)
        return [Clip("test", f"test__{folder}__{path.name}", path, (folder,))
                for folder in TEST_FOLDERS for path in sorted((test_root / folder).glob("*.wav"))]

    def _silence(self, root: Path) -> list[Clip]:
        clips = []
        for path in sorted((root / NOISE_DIR).glob("*.wav")):
            n = int(sf.info(str(path)).duration // self.window)  # whole 1 s segments
            n_train = int(round(self.silence_shares[0] * n))
            for i in range(n):
                split = "train" if i < n_train else "valid"
                clips.append(Clip(split, f"{SILENCE}__{path.stem}__{i:04d}.wav", path, (SILENCE,),
                                  start=i * self.window, duration=self.window))
        return clips
