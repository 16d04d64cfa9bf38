"""The 11 LAPE tasks by name: task key -> converter (with its protocol settings)."""
from __future__ import annotations

from collections.abc import Callable

from eval_suites.lape.base import Converter
from eval_suites.lape.bird_audio import BirdAudioDetection
from eval_suites.lape.iemocap import IemocapEmotions
from eval_suites.lape.librispeech import LibriSpeechSpeakers
from eval_suites.lape.nsynth import NSynthFamilies
from eval_suites.lape.speech_commands import SpeechCommands
from eval_suites.lape.tut_scenes import TutUrbanScenes
from eval_suites.lape.urbansound import UrbanSound8K
from eval_suites.lape.voxceleb import VoxCelebSpeakers
from eval_suites.lape.voxforge import VoxForgeLanguages

__all__ = ["TASKS", "VARIANTS", "SOURCE_DIRS", "converter"]

TASKS: dict[str, Callable[[], Converter]] = {
    "sc_v1": lambda: SpeechCommands(dataset_version=1, classes=12),
    "sc_v2_12": lambda: SpeechCommands(dataset_version=2, classes=12),
    "sc_v2_35": lambda: SpeechCommands(dataset_version=2, classes=35),
    "lbs": LibriSpeechSpeakers,
    "vc": VoxCelebSpeakers,
    "ic": IemocapEmotions,
    "vf": VoxForgeLanguages,
    "ns": NSynthFamilies,
    "bsd": BirdAudioDetection,
    "tut": TutUrbanScenes,
    "us8k": UrbanSound8K,
}
"""LAPE task keys in the order of the paper's table (SC-V1 ... US8K)."""


SOURCE_DIRS: dict[str, str] = {
    "sc_v1": "speech_commands_v0.01",
    "sc_v2_12": "speech_commands_v0.02",
    "sc_v2_35": "speech_commands_v0.02",
    "lbs": "LibriSpeech",
    "vc": "VoxCeleb1",
    "ic": "IEMOCAP_full_release",
    "vf": "VoxForge",
    "ns": "nsynth",
    "bsd": "bird_audio_detection",
    "tut": "TUT-urban-acoustic-scenes-2018-development",
    "us8k": "UrbanSound8K",
    "lbs_spk": "LibriSpeech",
}
"""Folder of each dataset under ``--sources-root`` when all tasks are prepared at once."""


VARIANTS: dict[str, Callable[[], Converter]] = {
    "lbs_spk": lambda: LibriSpeechSpeakers(label="speaker"),
}
"""Tasks beside LAPE's 11 (not in the shipped manifest): ``lbs_spk`` is speaker
identification over LibriSpeech's 251 speakers, where LAPE's LBS has 585 chapter classes."""


def converter(task: str) -> Converter:
    """The converter of task ``task`` (a key of :data:`TASKS` or :data:`VARIANTS`)."""
    known = {**TASKS, **VARIANTS}
    if task not in known:
        raise ValueError(f"unknown LAPE task {task!r}; expected one of {', '.join(known)}")
    return known[task]()
