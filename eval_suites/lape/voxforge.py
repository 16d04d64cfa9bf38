"""VoxForge language identification, 6 languages -> VF.

VoxForge distributes one ``.tgz`` archive per recording session under
``repository.voxforge1.org/downloads/<folder>/Trunk/Audio/Main/16kHz_16bit/``, where
``<folder>`` is the language's folder on the server, which is not a ``<Language>``
pattern: English is under ``SpeechCorpus``, Russian under ``Russian`` (see the server's
``downloads/`` index for the others; TFDS's voxforge builder reads its own list of archive
URLs, ``voxforge_urls.txt``). An archive
``<user>-<date>-<id>.tgz`` extracts to ``<user>-<date>-<id>/wav/*.wav`` (16 kHz 16-bit
mono; a few sessions ship ``flac/*.flac`` instead) and ``etc/`` (PROMPTS, README).

Expected root: one folder per language code (de, en, es, fr, it, ru) holding the
extracted session folders. Split: 20 % of each language's utterances are test
(stratified, fixed seed); 10 % of the rest are valid; the others train.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eval_suites.lape.base import Clip, Converter
from eval_suites.lape.splits import stratified_holdout

__all__ = ["VoxForgeLanguages", "LANGUAGES"]

LANGUAGES = ("de", "en", "es", "fr", "it", "ru")


@dataclass
class VoxForgeLanguages(Converter):
    test_fraction: float = 0.2
    valid_fraction: float = 0.1
    task_name: str = field(init=False, default="lape_vf")
    window: float = field(init=False, default=6.0)
    layout: str = field(init=False, default=(
        "  <root>/\n"
        "    de/ en/ es/ fr/ it/ ru/   (one folder per language)\n"
        "      <user>-<date>-<id>/wav/*.wav     (each session archive <user>-<date>-<id>.tgz\n"
        "      <user>-<date>-<id>/flac/*.flac    extracted in its language folder:\n"
        "                                        for f in *.tgz; do tar -xzf \"$f\"; done)"
    ))

    def _audio(self, lang_dir: Path) -> list[Path]:
        files = list(lang_dir.glob("*/wav/*.wav")) + list(lang_dir.glob("*/flac/*.flac"))
        return sorted(f for f in files if not f.name.startswith("._"))

    def check_layout(self, root: Path) -> None:
        for lang in LANGUAGES:
            if not (root / lang).is_dir():
                raise self.missing(root, lang, f"the language folder for {lang!r}")
        for lang in LANGUAGES:
            if not self._audio(root / lang):
                packed = sorted((root / lang).glob("*.tgz"))
                hint = (f" It holds {len(packed)} .tgz archive(s): extract them first "
                        f"(cd {root / lang} && for f in *.tgz; do tar -xzf \"$f\"; done)."
                        if packed else "")
                raise self.layout_error(f"no session audio (<session>/wav/*.wav or "
                                        f"<session>/flac/*.flac) under {root / lang}.{hint}")

    def notes(self) -> dict:
        return {
            "source": "VoxForge (extracted 16kHz_16bit session archives)",
            "split": (f"no official split: {self.test_fraction:.0%} of each language's utterances test "
                      f"(stratified, seed {self.seed}); {self.valid_fraction:.0%} of the rest valid "
                      f"(stratified, seed {self.seed + 1}); utterance-level, so a speaker can appear "
                      f"in several splits"),
        }

    def list_clips(self, root: Path) -> list[Clip]:
        items = [(f, lang) for lang in LANGUAGES for f in self._audio(root / lang)]
        labels = [lang for _, lang in items]
        test = stratified_holdout(labels, self.test_fraction, self.seed)
        rest = [i for i in range(len(items)) if i not in test]
        valid = {rest[j] for j in stratified_holdout([labels[i] for i in rest], self.valid_fraction,
                                                     self.seed + 1)}
        clips = []
        for i, (f, lang) in enumerate(items):
            split = "test" if i in test else "valid" if i in valid else "train"
            clips.append(Clip(split, f"{lang}__{f.parent.parent.name}__{f.stem}.wav", f, (lang,)))
        return clips
