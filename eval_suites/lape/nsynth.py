"""NSynth (Engel et al. 2017) instrument family, 11 classes -> NS.

Distributed as ``nsynth-{train,valid,test}.jsonwav.tar.gz``, each extracting to
``nsynth-<split>/examples.json`` and ``nsynth-<split>/audio/<note_str>.wav`` (4 s,
16 kHz, 16-bit mono). ``examples.json`` maps each note_str to its features, among them
``instrument_family_str`` (bass, brass, flute, guitar, keyboard, mallet, organ, reed,
string, synth_lead, vocal), which is the label. Split: the official train/valid/test.

The official valid and test splits appear to hold no ``synth_lead`` note (10 of the 11
families; not checked here against the full download). Whatever is absent, the task's vocabulary still has all 11 classes with fixed indices, and
``task_metadata.json`` -> ``notes.missing_classes`` records the absence.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from eval_suites.lape.base import Clip, Converter

__all__ = ["NSynthFamilies", "FAMILIES"]

FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed",
            "string", "synth_lead", "vocal")
_SPLITS = {"train": "nsynth-train", "valid": "nsynth-valid", "test": "nsynth-test"}


@dataclass
class NSynthFamilies(Converter):
    task_name: str = field(init=False, default="lape_ns")
    window: float = field(init=False, default=4.0)
    layout: str = field(init=False, default=(
        "  <root>/\n"
        "    nsynth-train/examples.json   nsynth-train/audio/<note_str>.wav\n"
        "    nsynth-valid/examples.json   nsynth-valid/audio/<note_str>.wav\n"
        "    nsynth-test/examples.json    nsynth-test/audio/<note_str>.wav"
    ))

    def check_layout(self, root: Path) -> None:
        for folder in _SPLITS.values():
            for rel, what in ((f"{folder}/examples.json", "the metadata file"),
                              (f"{folder}/audio", "the audio folder")):
                if not (root / rel).exists():
                    raise self.missing(root, rel, what)

    def label_set(self) -> tuple[str, ...]:
        return FAMILIES

    def notes(self) -> dict:
        return {"source": "NSynth jsonwav", "split": "official nsynth-train/valid/test",
                "label": "instrument_family_str"}

    def list_clips(self, root: Path) -> list[Clip]:
        clips = []
        for split, folder in _SPLITS.items():
            examples = json.loads(self.read_text(root / folder / "examples.json"))
            for note in sorted(examples):
                family = examples[note].get("instrument_family_str")
                if family not in FAMILIES:
                    raise self.layout_error(
                        f"{root / folder / 'examples.json'} entry {note!r} has "
                        f"instrument_family_str {family!r}; expected one of {FAMILIES}")
                wav = root / folder / "audio" / f"{note}.wav"
                if not wav.is_file():
                    raise self.missing(root, f"{folder}/audio/{note}.wav", "an audio file listed in examples.json")
                clips.append(Clip(split, f"{note}.wav", wav, (family,)))
        return clips
