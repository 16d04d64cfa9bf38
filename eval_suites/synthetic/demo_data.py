"""The offline demo dataset: six HEAR tasks and an unlabeled pretraining corpus, made here.

``build_demo(root, preset)`` writes, from espeak-ng, flite and fluidsynth (FluidR3_GM)
with varied speed, pitch, voice variant, velocity, gain and background noise::

    <root>/recipe.json                          # what was built, from which recipe (hashes)
    <root>/tasks/demo_keywords-v1-full/         # keyword spotting, like Speech Commands
    <root>/tasks/demo_speakers-v1-full/         # speaker identification, like LibriSpeech/VoxCeleb
    <root>/tasks/demo_languages-v1-full/        # language identification, like VoxForge
    <root>/tasks/demo_nsynth_family-v1-full/    # NSynth's 11 instrument families
    <root>/tasks/demo_nsynth_pitch-v1-full/     # MIDI pitch, like HEAR's nsynth_pitch
    <root>/tasks/demo_events-v1-full/           # sound events with onsets/offsets (DCASE 2016 t2)
    <root>/tasks/demo_real_sounds-v1-full/      # study only: recorded drums, tabla, ambience, ...
    <root>/tasks/demo_real_instruments-v1-full/ # study only: recorded instruments (freepats)
    <root>/corpus/NNNNN_{speech,music,real}.wav # unlabeled pretraining audio, 1-6 s each
    <root>/corpus/index.csv                     # path,kind,seconds,voice,language,text,programs
                                                # (+ recording, when the corpus has real files)

Presets: ``small`` (the README demo), ``tiny`` (tests) and ``study`` (method comparison:
>= 300 test and >= 150 valid clips per task, 3,200 corpus files of which every 4th is a
real recording, and the two real-recording tasks; real recordings come from the Debian
packages sonic-pi-samples and freepats, see :mod:`eval_suites.synthetic.recordings`).

The task builders are in :mod:`eval_suites.synthetic.demo_tasks`; this module holds the recipe
(texts, voice pools, program splits, sizes per preset), the corpus, and the cache.

Disjointness of the corpus from every task's **test** split (checked by
:func:`corpus_overlap`, which a test asserts is empty):

- voices: a voice is an espeak-ng *variant* (its timbre: "m3", "Andy", ...; the
  language or dialect in front does not change who speaks) or a flite voice. The
  corpus speaks only with :data:`CORPUS_VARIANTS` (the language task's train variants
  and the keyword task's train variants), none of which is heard in any test split:
  not the speaker task's voices (all of them are test classes), not the keyword or
  language test voices, not the event task's speech voices. The corpus uses no flite.
- texts: corpus sentences are the train sentences of the speaker and language tasks plus
  corpus-only sentences; no test sentence (and no event-task word alone) is spoken.
- instruments: the corpus plays only GM programs that are train programs of the NSynth
  family task and are test programs of no task (instrument, pitch, events: piano 0,
  trumpet 56), and no drums.
- recordings (study): the corpus plays only train recordings of the two real-recording
  tasks and corpus-only ones (:data:`CORPUS_ONLY_RECORDINGS`, :data:`CORPUS_ONLY_PROGRAMS`),
  never a valid or test recording; siblings such as ``tabla_ghe1``/``tabla_ghe2`` count as
  one recording (:func:`eval_suites.synthetic.recordings.source_group`).
- seeds: every clip of a task draws from ``numpy.random.default_rng`` with entropy of
  2 or 4 integers (``(seed, split, class, k)``, ``[seed, label]``); corpus file i uses
  ``[seed, CORPUS_SEED_TAG, i]`` (3 integers), so no corpus random stream equals a
  task's.

Caching: each part (task or corpus) has a hash of its parameters (sizes, texts, voices,
programs) and of the generator's code version (the source of ``synth``, ``hear_task``,
``demo_tasks``, ``demo_data`` and the engines' versions). ``recipe.json`` records each
part's hash and whether it completed. A rebuild skips parts whose hash is unchanged and
complete (a second build is a no-op), resumes a part interrupted with the same hash,
and deletes and rebuilds a part whose hash changed.

Nothing foreign is deleted or replaced: every file (clips, label files, the corpus,
``recipe.json``) is written through the builder's record, ``<root>/.hear-slicer-written.jsonl``
(:mod:`hear_slicer.written`: name and content hash, written before the file appears), and a
part's folder is deleted, or an interrupted one resumed, only when the record proves every
file in it the builder's; one other file (a recording put into ``corpus/``, a labels file put
into a task folder, a ``recipe.json`` of one's own) refuses the build, exit 2, one line naming
it, nothing touched. A part's folder is the one its name gives (``corpus``,
``tasks/demo_<name>-v1-full``), whatever ``recipe.json`` says: a recipe naming another folder
is refused the same way.

Command line::

    python -m eval_suites.synthetic.demo_data --root demo_data --preset small
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from eval_suites.errors import UsageError, run_command
from eval_suites.hear_format import task as hear_task
from eval_suites.synthetic import demo_tasks, recordings, synth
from eval_suites.synthetic.demo_tasks import (
    DEFAULT_VOICES,
    NSYNTH_FAMILIES,
    NSYNTH_PITCH_RANGES,
    split_programs,
    split_voices,
)
from eval_suites.hear_format.task import task_is_complete

if TYPE_CHECKING:  # imported where used: hear_slicer pulls in torch
    from hear_slicer.written import WrittenFiles

__all__ = [
    "SplitCounts",
    "DemoPreset",
    "PRESETS",
    "KEYWORDS",
    "KEYWORD_VOICES",
    "SPEAKER_VOICES",
    "SPEAKER_SENTENCES",
    "LANGUAGE_SENTENCES",
    "LANGUAGE_VARIANTS",
    "CORPUS_VARIANTS",
    "PITCH_FAMILIES",
    "CORPUS_SEED_TAG",
    "RECIPE_FILE",
    "build_demo",
    "demo_parts",
    "code_version",
    "corpus_overlap",
    "DemoRootError",
    "part_folder",
    "split_sizes",
    "REAL_SOUND_CLASSES",
    "FREEPATS_FAMILIES",
    "CORPUS_ONLY_RECORDINGS",
    "CORPUS_ONLY_PROGRAMS",
    "main",
]

SR = 16000
SPLITS = ("train", "valid", "test")
RECIPE_FILE = "recipe.json"
CORPUS_INDEX = "index.csv"
CORPUS_SEED_TAG = 1_000_003
"""Second entropy integer of every corpus random stream (tasks never use 3-integer seeds)."""

# --------------------------------------------------------------------------- texts and voices

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
"""The ten command words of Speech Commands' 12-class task (without silence/unknown)."""

# split_voices() gives the last 4 to test, the 4 before them to valid, the rest to train.
KEYWORD_VOICES = (
    "flite:kal16", "flite:awb", "espeak:en-us+Alex", "espeak:en-gb+Andy", "espeak:en+Annie",
    "espeak:en-029+adam", "espeak:en-gb-scotland+anika", "espeak:en-us+aunty",
    "espeak:en-gb-x-rp+belinda", "espeak:en+benjamin", "espeak:en-us+boris",
    "espeak:en-gb+caleb", "espeak:en+david", "espeak:en-us-nyc+ed", "espeak:en-gb+edward",
    "espeak:en-us+shelby",
    # valid
    "flite:slt", "espeak:en-us+grandma", "espeak:en+grandpa", "espeak:en-029+john",
    # test
    "flite:rms", "espeak:en-us+linda", "espeak:en-gb+max", "espeak:en+michel",
)

# One class per voice; interleaved so the first n (smaller presets) mix engines and sexes.
SPEAKER_VOICES = (
    "flite:awb", "espeak:en-us+m1", "flite:slt", "espeak:en-us+f1", "flite:rms",
    "espeak:en-us+m2", "flite:kal16", "espeak:en-us+f2", "espeak:en-us+m3", "espeak:en-us+f3",
    "espeak:en-us+m4", "espeak:en-us+f4", "espeak:en-us+m5", "espeak:en-us+f5",
    "espeak:en-us+m6", "espeak:en-us+m7",
)

SPEAKER_SENTENCES: dict[str, tuple[str, ...]] = {
    "train": (
        "The boat drifted slowly toward the shore.",
        "Please bring the red cup to the kitchen.",
        "My brother plays chess every Sunday.",
        "The train leaves the station at noon.",
        "She painted the fence a bright blue.",
        "We walked along the river after dinner.",
        "The old clock in the hall stopped.",
        "A cold wind blew across the field.",
        "He forgot his keys at the office.",
        "The children laughed at the funny dog.",
        "Fresh bread smells wonderful in the morning.",
        "They built a small house near the lake.",
    ),
    "valid": (
        "The market opens early on Saturdays.",
        "Her garden is full of yellow roses.",
        "The pilot checked the weather report.",
        "Snow covered the mountain road overnight.",
    ),
    "test": (
        "The library closes at eight tonight.",
        "A tall man waited by the gate.",
        "Our teacher read us a long story.",
        "The soup needs a little more salt.",
    ),
    "corpus": (
        "Birds gathered on the wire before the storm.",
        "The museum shows paintings from many centuries.",
        "Turn left after the bakery on the corner.",
        "The engineer measured the bridge twice.",
        "Rain tapped gently against the window glass.",
        "The farmer sold apples at the village fair.",
    ),
}
"""English sentences of the speaker task per split ("corpus": spoken only in the corpus)."""

LANGUAGE_SENTENCES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "train": ("Good morning, how are you today?", "I would like a cup of coffee.",
                  "The weather is very nice this week.", "Where is the nearest train station?",
                  "We are going to the cinema tonight."),
        "valid": ("My sister lives in a big city.", "Can you help me with this box?"),
        "test": ("The shop on the corner is closed.", "I have never seen such a tall tree."),
        "corpus": ("The dog sleeps under the warm table.", "He writes letters to his grandmother.",
                   "This road leads to the old harbour."),
    },
    "de": {
        "train": ("Guten Morgen, wie geht es dir heute?", "Ich möchte eine Tasse Kaffee trinken.",
                  "Das Wetter ist diese Woche sehr schön.", "Wo ist der nächste Bahnhof?",
                  "Wir gehen heute Abend ins Kino."),
        "valid": ("Meine Schwester wohnt in einer großen Stadt.",
                  "Kannst du mir mit dieser Kiste helfen?"),
        "test": ("Der Laden an der Ecke ist geschlossen.",
                 "Ich habe noch nie so einen hohen Baum gesehen."),
        "corpus": ("Der Hund schläft unter dem warmen Tisch.",
                   "Er schreibt Briefe an seine Großmutter.", "Diese Straße führt zum alten Hafen."),
    },
    "fr": {
        "train": ("Bonjour, comment allez-vous aujourd'hui ?", "Je voudrais une tasse de café.",
                  "Il fait très beau cette semaine.", "Où est la gare la plus proche ?",
                  "Nous allons au cinéma ce soir."),
        "valid": ("Ma sœur habite dans une grande ville.", "Peux-tu m'aider avec cette boîte ?"),
        "test": ("Le magasin du coin est fermé.", "Je n'ai jamais vu un arbre aussi grand."),
        "corpus": ("Le chien dort sous la table chaude.", "Il écrit des lettres à sa grand-mère.",
                   "Cette route mène au vieux port."),
    },
    "es": {
        "train": ("Buenos días, ¿cómo estás hoy?", "Quisiera una taza de café.",
                  "Hace muy buen tiempo esta semana.",
                  "¿Dónde está la estación de tren más cercana?", "Esta noche vamos al cine."),
        "valid": ("Mi hermana vive en una ciudad grande.", "¿Puedes ayudarme con esta caja?"),
        "test": ("La tienda de la esquina está cerrada.", "Nunca he visto un árbol tan alto."),
        "corpus": ("El perro duerme debajo de la mesa.", "Él escribe cartas a su abuela.",
                   "Este camino lleva al puerto viejo."),
    },
    "it": {
        "train": ("Buongiorno, come stai oggi?", "Vorrei una tazza di caffè.",
                  "Questa settimana il tempo è molto bello.", "Dov'è la stazione più vicina?",
                  "Stasera andiamo al cinema."),
        "valid": ("Mia sorella abita in una grande città.", "Puoi aiutarmi con questa scatola?"),
        "test": ("Il negozio all'angolo è chiuso.", "Non ho mai visto un albero così alto."),
        "corpus": ("Il cane dorme sotto il tavolo caldo.", "Lui scrive lettere a sua nonna.",
                   "Questa strada porta al vecchio porto."),
    },
    "ru": {
        "train": ("Доброе утро, как у тебя дела?", "Я хотел бы чашку кофе.",
                  "На этой неделе очень хорошая погода.", "Где ближайший вокзал?",
                  "Сегодня вечером мы идём в кино."),
        "valid": ("Моя сестра живёт в большом городе.", "Ты можешь помочь мне с этой коробкой?"),
        "test": ("Магазин на углу закрыт.", "Я никогда не видел такого высокого дерева."),
        "corpus": ("Собака спит под тёплым столом.", "Он пишет письма своей бабушке.",
                   "Эта дорога ведёт к старому порту."),
    },
}
"""Short sentences per espeak-ng language and split ("corpus": spoken only in the corpus);
the same meanings in every language, so content cannot give the language away."""

LANGUAGE_VARIANTS: dict[str, tuple[str, ...]] = {
    "train": ("Alicia", "Andrea", "Diogo", "Henrique", "Hugo", "Marco", "Mario", "steph"),
    "valid": ("antonio", "victor"),
    "test": ("miguel", "sandro"),
}
"""espeak-ng voice variants speaking each split of the language task (disjoint)."""

CORPUS_VARIANTS: tuple[str, ...] = LANGUAGE_VARIANTS["train"] + tuple(
    v.partition("+")[2] for v in split_voices(KEYWORD_VOICES)["train"] if v.startswith("espeak:"))
"""espeak-ng variants the corpus speaks with: train variants of the language and keyword tasks."""

CORPUS_EN_DIALECTS = ("en", "en-us", "en-gb", "en-029", "en-gb-scotland", "en-gb-x-rp")

PITCH_FAMILIES = ("keyboard", "guitar", "string", "brass", "organ", "synth_lead", "vocal")
"""NSynth families whose programs all sound over MIDI 48-72 (the pitch task's instruments)."""

# --------------------------------------------------------------------------- real recordings
# Sources of the `study` preset's two real-recording tasks (eval_suites.synthetic.recordings). In
# each class list :func:`_split_sources` gives the last max(1, n // 4) recording groups
# to test, the max(1, n // 6) before them to valid, the rest to train.


def _sp(*stems: str) -> list[str]:
    return [f"sonic-pi:{x}" for x in stems]


def _fd(*stems: str) -> list[str]:
    return [f"freepats:Drum_000/{x}" for x in stems]


REAL_SOUND_CLASSES: dict[str, tuple[str, ...]] = {
    "kick": tuple(_sp("bd_808", "bd_boom", "bd_fat", "bd_gas", "bd_haus", "bd_klub", "bd_mehackit",
                      "bd_pure", "bd_sone", "drum_bass_hard", "drum_bass_soft", "bd_tek",
                      "elec_hollow_kick") + _fd("035_Kick_1") + _sp(
                      "bd_zome", "drum_heavy_kick", "bd_ada", "elec_soft_kick", "bd_zum")
                  + _fd("036_Kick_2")),
    "snare": tuple(_sp("sn_dolf", "sn_dub", "drum_snare_hard", "drum_snare_soft", "elec_filt_snare",
                       "elec_hi_snare", "elec_lo_snare") + _fd("038_Snare_1")
                   + _sp("sn_generic", "elec_mid_snare", "sn_zome", "elec_snare") + _fd("040_Snare_2")),
    "cymbal": tuple(_sp("drum_cymbal_closed", "drum_cymbal_hard", "drum_cymbal_soft",
                        "drum_cymbal_open") + _fd("042_Hi-Hat_Closed", "046_Hi-Hat_Open",
                                                  "049_Cymbal_Crash_1", "051_Cymbal_Ride_1",
                                                  "055_Cymbal_Splash", "059_Cymbal_Ride_2")
                    + _sp("drum_splash_hard", "drum_splash_soft") + _fd("057_Cymbal_Crash_2")
                    + _sp("elec_cymbal") + _fd("052_Cymbal_Chinese") + _sp("drum_cymbal_pedal")
                    + _fd("044_Hi-Hat_Pedal")),
    "tom": tuple(_sp("drum_tom_hi_hard", "drum_tom_hi_soft", "drum_tom_lo_hard", "drum_tom_lo_soft")
                 + _fd("041_Tom_Low_2", "043_Tom_Low_1", "045_Tom_Mid_2", "048_Tom_High_2")
                 + _fd("047_Tom_Mid_1") + _sp("elec_fuzz_tom", "drum_tom_mid_hard",
                                              "drum_tom_mid_soft") + _fd("050_Tom_High_1")),
    "tabla": tuple(_sp("tabla_dhec", *(f"tabla_ghe{i}" for i in range(1, 9)), "tabla_ke1",
                       "tabla_ke2", "tabla_ke3", "tabla_na", "tabla_re", "tabla_te1", "tabla_te2",
                       "tabla_te_m", "tabla_tun1", "tabla_tun2", "tabla_tun3", "tabla_na_o",
                       "tabla_tas1", "tabla_tas2", "tabla_tas3", "tabla_na_s", "tabla_te_ne")),
    "hand_percussion": tuple(_fd("054_Tombourine", "056_Cow_Bell", "058_Vibra-Slap", "060_Bongo_High",
                                 "061_Bongo_Low", "063_Conga_High_2_Open", "064_Conga_Low",
                                 "065_Timbale_High", "067_Agogo_High", "069_Cabasa", "070_Maracas",
                                 "073_Guiro_1_Short", "074_Guiro_2_Long", "076_Wood_Block_1_High",
                                 "078_Cuica_1_Mute", "080_Triangle_1_Mute")
                             + _sp("drum_cowbell") + _fd("082_Shaker", "062_Conga_High_1_Mute",
                                                         "068_Agogo_Low", "081_Triangle_2_Open",
                                                         "066_Timbale_Low", "075_Claves",
                                                         "077_Wood_Block_2_Low", "079_Cuica_2_Open")),
    # siblings that may be one recording (glass hum/rub, voxy bass/hit) stay in one split
    "ambience": tuple(_sp("ambi_choir", "ambi_dark_woosh", "ambi_glass_hum", "ambi_glass_rub",
                          "ambi_haunted_hum", "ambi_soft_buzz", "ambi_swoosh", "ambi_drone",
                          "ambi_lunar_land", "ambi_sauna", "ambi_piano")),
    "bass": tuple(_sp("bass_voxy_c", "bass_voxy_hit_c", "bass_dnb_f", "bass_drop_c", "bass_thick_c",
                      "bass_trance_c", "glitch_bass_g", "bass_woodsy_c", "bass_hit_c", "bass_hard_c")),
    "drum_loop": tuple(_sp("loop_amen", "loop_amen_full", "loop_breakbeat", "loop_compus",
                           "loop_garzul", "loop_industrial", "loop_mehackit1", "loop_mehackit2",
                           "loop_safari", "loop_perc1", "loop_perc2", "loop_mika",
                           "loop_electric", "loop_weirdo")),
}
"""Sound categories of the ``real_sounds`` task -> sonic-pi-samples and freepats drum
recordings (in split order: see :func:`_split_sources`). Not used anywhere: sonic-pi's
``loop_tabla`` (it may hold the tabla of the tabla class) and freepats' 025 Snare_Roll
(it may be the drum kit's snare)."""

FREEPATS_FAMILIES: dict[str, tuple[int, ...]] = {
    "keyboard": (1, 2, 4, 5, 6, 7, 0),
    "mallet": (8, 114, 14, 9, 13),
    "organ": (16, 21, 23, 19),
    "guitar": (24, 26, 27, 29, 30, 28, 25),
    "bass": (32, 34, 36, 37, 38, 35, 33),
    "string": (40, 44, 45, 46, 48, 42),
    "brass": (56, 57, 58, 61, 59, 60),
    "reed": (64, 65, 67, 69, 70, 68, 66, 71),
    "flute": (72, 75, 76, 79, 74, 73),
}
"""NSynth-like families of the ``real_instruments`` task -> freepats GM programs
(``Tone_000/NNN_*.pat``, recorded instruments), in split order."""

CORPUS_ONLY_RECORDINGS: tuple[str, ...] = tuple(
    _sp("elec_beep", "elec_bell", "elec_blip", "elec_blip2", "elec_blup", "elec_bong", "elec_chime",
        "elec_flip", "elec_ping", "elec_plip", "elec_pop", "elec_tick", "elec_triangle",
        "elec_twang", "elec_twip", "elec_wood", "glitch_perc1", "glitch_perc2", "glitch_perc3",
        "glitch_perc4", "glitch_perc5", "glitch_robot1", "glitch_robot2", "guit_e_fifths",
        "guit_e_slide", "guit_em9", "guit_harmonics", "loop_3d_printer", "loop_drone_g_97",
        "mehackit_phone1", "mehackit_phone2", "mehackit_phone3", "mehackit_phone4",
        "mehackit_robot1", "mehackit_robot2", "mehackit_robot3", "mehackit_robot4",
        "mehackit_robot5", "mehackit_robot6", "mehackit_robot7", "misc_burp", "misc_cineboom",
        "misc_crow", "perc_bell", "perc_bell2", "perc_door", "perc_impact1", "perc_impact2",
        "perc_snap", "perc_snap2", "perc_swash", "perc_swoosh", "perc_till", "vinyl_backspin",
        "vinyl_hiss", "vinyl_rewind", "vinyl_scratch", "drum_roll")
    + _fd("026_Snap", "027_High_Q", "031_Sticks", "032_Square_Click", "033_Metronome_Click",
          "034_Metronome_Bell", "037_Stick_Rim", "071_Whistle_1_High_Short",
          "072_Whistle_2_Low_Long", "084_Belltree"))
"""Recordings heard only in the corpus (in no task)."""

CORPUS_ONLY_PROGRAMS: tuple[int, ...] = (15, 47, 53, 80, 84, 88, 94, 95, 98, 101, 102, 104, 120,
                                         122, 125)
"""freepats instrument patches heard only in the corpus (115 Wood_Block is left out: it
may be the same recording as the drum kit's wood blocks)."""


def _freepats_tone(program: int) -> str:
    """``freepats:Tone_000/NNN_<name>`` of a GM program (the installed file's stem)."""
    hits = sorted(recordings.FREEPATS_DIR.glob(f"Tone_000/{program:03d}_*.pat"))
    if not hits:
        raise recordings.RecordingsMissing(
            f"no freepats patch for GM program {program} in {recordings.FREEPATS_DIR}; "
            f"install the Debian package with `apt-get install freepats`")
    return f"freepats:Tone_000/{hits[0].stem}"


def _split_sources(sources: Sequence[str]) -> dict[str, list[str]]:
    """Disjoint recordings per split: group siblings (recordings.source_group, in order of
    first appearance); the last max(1, n // 4) groups are test, the max(1, n // 6) before
    them valid, the rest train (needs at least 3 groups)."""
    groups: dict[str, list[str]] = {}
    for src in sources:
        groups.setdefault(recordings.source_group(src), []).append(src)
    keys = list(groups)
    if len(keys) < 3:
        raise ValueError(f"expected at least 3 recording groups to split, got {keys}")
    n_test, n_valid = max(1, len(keys) // 4), max(1, len(keys) // 6)
    cut = {"train": keys[: len(keys) - n_test - n_valid],
           "valid": keys[len(keys) - n_test - n_valid: len(keys) - n_test],
           "test": keys[len(keys) - n_test:]}
    return {s: [x for k in cut[s] for x in groups[k]] for s in SPLITS}


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class SplitCounts:
    """Clips per class (tasks) or per split (events) in train, valid and test."""

    train: int
    valid: int
    test: int

    def as_dict(self) -> dict[str, int]:
        return {"train": self.train, "valid": self.valid, "test": self.test}


@dataclass(frozen=True)
class DemoPreset:
    """Sizes of one demo build. Counts are per class and split, so labels are balanced."""

    name: str
    keywords: SplitCounts          # clips per word (len(KEYWORDS) classes)
    speakers: SplitCounts          # clips per speaker
    n_speakers: int                # first n of SPEAKER_VOICES
    languages: SplitCounts         # clips per language (len(LANGUAGE_SENTENCES) classes)
    instruments: SplitCounts       # clips per NSynth family (11 classes)
    pitch: SplitCounts             # clips per MIDI pitch
    pitch_range: tuple[int, int]   # inclusive MIDI pitches of the pitch task (within 48-72)
    events: SplitCounts            # event-task clips per split
    event_seconds: float           # length of an event-task recording
    events_per_clip: tuple[int, int]
    corpus_files: int              # unlabeled corpus: number of wav files (half speech)
    seed: int = 0
    real_sounds: SplitCounts | None = None       # clips per class of REAL_SOUND_CLASSES (None: no task)
    real_instruments: SplitCounts | None = None  # clips per family of FREEPATS_FAMILIES (None: no task)
    corpus_real_every: int = 0     # every k-th corpus file is a real recording (0: none)

    def __post_init__(self) -> None:
        lo, hi = self.pitch_range
        if not 48 <= lo < hi <= 72:
            raise ValueError(f"expected pitch_range within 48-72 (where every pitch-task "
                             f"program was checked to sound), got {self.pitch_range}")
        if not 2 <= self.n_speakers <= len(SPEAKER_VOICES):
            raise ValueError(f"expected n_speakers in [2, {len(SPEAKER_VOICES)}], got {self.n_speakers}")
        if self.corpus_files < 2:
            raise ValueError(f"expected corpus_files >= 2, got {self.corpus_files}")
        if self.corpus_real_every == 1 or self.corpus_real_every < 0:
            raise ValueError(f"expected corpus_real_every = 0 (no real recordings) or >= 2, "
                             f"got {self.corpus_real_every}")


PRESETS: dict[str, DemoPreset] = {
    "small": DemoPreset(
        name="small",
        keywords=SplitCounts(24, 8, 8), speakers=SplitCounts(24, 8, 8), n_speakers=16,
        languages=SplitCounts(32, 10, 10), instruments=SplitCounts(24, 8, 8),
        pitch=SplitCounts(20, 6, 6), pitch_range=(48, 71),
        events=SplitCounts(24, 8, 8), event_seconds=10.0, events_per_clip=(3, 6),
        corpus_files=600,
    ),
    "tiny": DemoPreset(
        name="tiny",
        keywords=SplitCounts(2, 1, 1), speakers=SplitCounts(2, 1, 1), n_speakers=10,
        languages=SplitCounts(2, 1, 1), instruments=SplitCounts(2, 1, 1),
        pitch=SplitCounts(1, 1, 1), pitch_range=(60, 71),
        events=SplitCounts(3, 2, 2), event_seconds=4.0, events_per_clip=(2, 3),
        corpus_files=12,
    ),
    "study": DemoPreset(
        name="study",
        keywords=SplitCounts(64, 16, 32), speakers=SplitCounts(40, 10, 20), n_speakers=16,
        languages=SplitCounts(100, 25, 50), instruments=SplitCounts(56, 14, 28),
        pitch=SplitCounts(24, 7, 13), pitch_range=(48, 71),
        events=SplitCounts(300, 150, 300), event_seconds=10.0, events_per_clip=(3, 6),
        corpus_files=3200,
        real_sounds=SplitCounts(60, 17, 34), real_instruments=SplitCounts(60, 17, 34),
        corpus_real_every=4,
    ),
}
"""``small``: the README demo (whole build in about a minute or two on 2 cores);
``tiny``: for tests (seconds); ``study``: for comparing methods (>= 300 test and >= 150
valid clips per task, 3,200 corpus files of which a quarter are real recordings, two
more tasks of real recordings)."""


class DemoRootError(UsageError):
    """The demo root holds a file the builder did not write where it would delete or write, or a recipe.json
    that puts a part elsewhere than its folder: exit 2, nothing touched."""


# --------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class _Part:
    """One cached unit of the demo: a task folder or the corpus."""

    name: str
    path: str                      # relative to the demo root
    params: dict[str, Any]         # everything the output depends on besides the code
    n_items: int                   # clips (or files) it writes, for the progress bar
    build: Callable[[Path, int | None, Callable[[int], Any], "WrittenFiles"], Path]  # (root, workers, progress, record)


def _split_programs_by_family(families: Sequence[str]) -> dict[str, dict[str, list[int]]]:
    return {f: split_programs(NSYNTH_FAMILIES[f]) for f in families}


def _pitch_programs() -> dict[str, list[int]]:
    by_fam = _split_programs_by_family(PITCH_FAMILIES)
    return {s: [p for f in PITCH_FAMILIES for p in by_fam[f][s]] for s in SPLITS}


def _corpus_programs() -> list[int]:
    """Train programs of the family task that no task plays in its test split."""
    return sorted(set().union(*_train_programs().values()) - _test_programs())


def _train_programs() -> dict[str, set[int]]:
    return {f: set(s["train"]) for f, s in _split_programs_by_family(NSYNTH_FAMILIES).items()}


def _test_programs() -> set[int]:
    fam = {p for s in _split_programs_by_family(NSYNTH_FAMILIES).values() for p in s["test"]}
    return fam | set(_pitch_programs()["test"]) | {0, 56}  # events: piano 0, trumpet 56


def _corpus_texts() -> dict[str, list[str]]:
    """Sentences the corpus may speak, per language: train + corpus-only sentences."""
    out = {lang: list(t["train"]) + list(t["corpus"]) for lang, t in LANGUAGE_SENTENCES.items()}
    out["en"] += list(SPEAKER_SENTENCES["train"]) + list(SPEAKER_SENTENCES["corpus"])
    return out


def _real_sound_sources() -> dict[str, dict[str, list[str]]]:
    """``{class: {split: [source, ...]}}`` of the real_sounds task."""
    return {label: _split_sources(srcs) for label, srcs in REAL_SOUND_CLASSES.items()}


def _real_instrument_sources() -> dict[str, dict[str, list[str]]]:
    """``{family: {split: [freepats patch, ...]}}`` of the real_instruments task."""
    return {fam: _split_sources([_freepats_tone(p) for p in progs])
            for fam, progs in FREEPATS_FAMILIES.items()}


def _corpus_recordings() -> list[list]:
    """``[source, pitch range or None]`` the corpus plays: train recordings of the two
    real tasks and the corpus-only ones (never a valid or test recording)."""
    out = [[src, None] for by_split in _real_sound_sources().values() for src in by_split["train"]]
    out += [[src, None] for src in CORPUS_ONLY_RECORDINGS]
    for fam, by_split in _real_instrument_sources().items():
        out += [[src, list(NSYNTH_PITCH_RANGES[fam])] for src in by_split["train"]]
    out += [[_freepats_tone(p), [48, 72]] for p in CORPUS_ONLY_PROGRAMS]
    return out


def part_folder(name: str) -> str:
    """The folder of a part, relative to the root: ``corpus``, or ``tasks/demo_<name>-v1-full``."""
    return "corpus" if name == "corpus" else f"tasks/demo_{name}-v1-full"


def demo_parts(preset: DemoPreset) -> list[_Part]:
    """The parts of a demo build, in build order, with their parameters."""
    seed = preset.seed
    speakers = list(SPEAKER_VOICES[: preset.n_speakers])
    spk_sentences = {s: list(SPEAKER_SENTENCES[s]) for s in SPLITS}
    lang_sentences = {lang: {s: list(t[s]) for s in SPLITS} for lang, t in LANGUAGE_SENTENCES.items()}
    variants = {s: list(LANGUAGE_VARIANTS[s]) for s in SPLITS}
    families = list(NSYNTH_FAMILIES)
    pitches = list(range(preset.pitch_range[0], preset.pitch_range[1] + 1))
    pitch_programs = _pitch_programs()
    n_per = lambda c: c.train + c.valid + c.test  # noqa: E731

    def task(name: str, params: dict, n_items: int, fn: Callable[..., Path]) -> _Part:
        def build(root: Path, workers: int | None, progress: Callable[[int], Any], written: WrittenFiles) -> Path:
            return fn(root / "tasks", name=f"demo_{name}", progress=progress, written=written, **(
                {"workers": workers} if name != "events" else {}), **params)

        return _Part(name, part_folder(name), params, n_items, build)

    corpus_params = dict(n_files=preset.corpus_files, seed=seed, texts=_corpus_texts(),
                         variants=list(CORPUS_VARIANTS), en_dialects=list(CORPUS_EN_DIALECTS),
                         programs=_corpus_programs(),
                         pitch_ranges={f: list(r) for f, r in NSYNTH_PITCH_RANGES.items()})
    if preset.corpus_real_every:
        corpus_params.update(real_every=preset.corpus_real_every, real_sources=_corpus_recordings())
    real_parts = []
    if preset.real_sounds is not None:
        real_parts.append(task("real_sounds", dict(
            sources=_real_sound_sources(), seed=seed,
            clips_per_class_per_split=preset.real_sounds.as_dict(), sample_duration=2.0,
            semitones=(-2.0, 2.0), snr_db=(10.0, 30.0)),
            len(REAL_SOUND_CLASSES) * n_per(preset.real_sounds), demo_tasks.build_recording_task))
    if preset.real_instruments is not None:
        real_parts.append(task("real_instruments", dict(
            sources=_real_instrument_sources(), seed=seed,
            clips_per_class_per_split=preset.real_instruments.as_dict(), sample_duration=1.0,
            pitch_ranges={f: tuple(NSYNTH_PITCH_RANGES[f]) for f in FREEPATS_FAMILIES},
            snr_db=(20.0, 40.0)),
            len(FREEPATS_FAMILIES) * n_per(preset.real_instruments), demo_tasks.build_recording_task))
    return [
        task("keywords", dict(words=list(KEYWORDS), voices=list(KEYWORD_VOICES), seed=seed,
                              clips_per_word_per_split=preset.keywords.as_dict(),
                              sample_duration=1.0),
             len(KEYWORDS) * n_per(preset.keywords), demo_tasks.build_keyword_task),
        task("speakers", dict(voices=speakers, sentences=spk_sentences, seed=seed,
                              clips_per_speaker_per_split=preset.speakers.as_dict(),
                              sample_duration=3.0),
             len(speakers) * n_per(preset.speakers), demo_tasks.build_speaker_task),
        task("languages", dict(sentences=lang_sentences, variants=variants, seed=seed,
                               clips_per_language_per_split=preset.languages.as_dict(),
                               sample_duration=3.0),
             len(lang_sentences) * n_per(preset.languages), demo_tasks.build_language_task),
        task("nsynth_family", dict(families=families, seed=seed,
                                   clips_per_class_per_split=preset.instruments.as_dict(),
                                   family_programs={f: list(NSYNTH_FAMILIES[f]) for f in families},
                                   pitch_ranges={f: tuple(NSYNTH_PITCH_RANGES[f]) for f in families},
                                   disjoint_programs=True, sample_duration=1.0),
             len(families) * n_per(preset.instruments), demo_tasks.build_instrument_task),
        task("nsynth_pitch", dict(programs=pitch_programs, pitches=pitches, seed=seed,
                                  clips_per_pitch_per_split=preset.pitch.as_dict(),
                                  sample_duration=1.0),
             len(pitches) * n_per(preset.pitch), demo_tasks.build_pitch_task),
        task("events", dict(n_clips_per_split=preset.events.as_dict(), seed=seed,
                            clip_seconds=preset.event_seconds,
                            events_per_clip=tuple(preset.events_per_clip)),
             n_per(preset.events), demo_tasks.build_event_task),
        *real_parts,
        _Part("corpus", part_folder("corpus"), corpus_params, preset.corpus_files,
              lambda root, workers, progress, written: _build_corpus(root / "corpus", workers=workers,
                                                                     progress=progress, written=written,
                                                                     **corpus_params)),
    ]


def split_sizes(preset: str | DemoPreset) -> dict[str, dict[str, int]]:
    """Clips per split of every task of a preset, and the corpus' file counts:
    ``{"keywords": {"train": n, "valid": n, "test": n}, ..., "corpus": {"files": n,
    "real": n}}`` (what :func:`build_demo` writes; tests check the two agree)."""
    preset = _resolve_preset(preset)
    n_classes = {"keywords": len(KEYWORDS), "speakers": preset.n_speakers,
                 "languages": len(LANGUAGE_SENTENCES), "nsynth_family": len(NSYNTH_FAMILIES),
                 "nsynth_pitch": preset.pitch_range[1] - preset.pitch_range[0] + 1, "events": 1,
                 "real_sounds": len(REAL_SOUND_CLASSES), "real_instruments": len(FREEPATS_FAMILIES)}
    counts = {"keywords": preset.keywords, "speakers": preset.speakers,
              "languages": preset.languages, "nsynth_family": preset.instruments,
              "nsynth_pitch": preset.pitch, "events": preset.events,
              "real_sounds": preset.real_sounds, "real_instruments": preset.real_instruments}
    out = {name: {s: n_classes[name] * getattr(c, s) for s in SPLITS}
           for name, c in counts.items() if c is not None}
    k = preset.corpus_real_every
    out["corpus"] = {"files": preset.corpus_files, "real": preset.corpus_files // k if k else 0}
    return out


# --------------------------------------------------------------------------- corpus


def _corpus_item(i: int, seed: int, texts: dict[str, list[str]],
                 variants: list[str], en_dialects: list[str], programs: list[int],
                 pitch_ranges: dict[str, list[int]], real_every: int = 0,
                 real_sources: Sequence[Sequence] = ()) -> dict[str, Any]:
    """What corpus file ``i`` holds (kind, length, voice/text, notes or recording) and its
    RNG. With ``real_every`` = k, files k-1, 2k-1, ... are real recordings."""
    rng = np.random.default_rng([seed, CORPUS_SEED_TAG, i])
    kind = "speech" if i % 2 == 0 else "music"
    if real_every and i % real_every == real_every - 1:
        kind = "real"
    seconds = float(np.round(rng.uniform(1.0, 6.0), 2))
    item: dict[str, Any] = {"index": i, "kind": kind, "seconds": seconds, "rng": rng,
                            "name": f"{i:05d}_{kind}.wav", "recording": ""}
    if kind == "real":
        source, prange = real_sources[int(rng.integers(len(real_sources)))]
        item.update(language="", voice="", text="", programs=[], recording=source,
                    pitch_range=None if prange is None else tuple(prange))
        return item
    if kind == "speech":
        lang = sorted(texts)[int(rng.integers(len(texts)))]
        base = en_dialects[int(rng.integers(len(en_dialects)))] if lang == "en" else lang
        n_sent = 1 if seconds < 3.5 else 2
        pool = texts[lang]
        picks = rng.choice(len(pool), size=min(n_sent, len(pool)), replace=False)
        item.update(language=lang, voice=f"espeak:{base}+{variants[int(rng.integers(len(variants)))]}",
                    text=" ".join(pool[int(j)] for j in picks), programs=[])
        return item
    family_of = {p: f for f, ps in NSYNTH_FAMILIES.items() for p in ps}
    n_parts = 1 if rng.uniform() < 0.7 else 2
    progs = [int(p) for p in rng.choice(programs, size=n_parts, replace=False)]
    notes = []
    for ch, prog in enumerate(progs):
        lo, hi = pitch_ranges[family_of[prog]]
        pitch, t = int(rng.integers(lo, hi + 1)), float(rng.uniform(0.0, 0.2))
        note_len = float(rng.uniform(0.15, 0.8)) * (2.0 if ch else 1.0)  # slower second part
        while t < seconds - 0.1:
            dur = float(np.round(note_len * rng.uniform(0.7, 1.3), 3))
            notes.append(synth.Note(prog, pitch, int(rng.integers(40, 128)), round(t, 3), dur, ch))
            pitch = int(np.clip(pitch + rng.integers(-5, 6), lo, hi))  # a random-walk melody
            t += dur
    item.update(language="", voice="", text="", programs=progs, notes=notes)
    return item


def _real_corpus_audio(it: dict[str, Any]) -> np.ndarray:
    """A corpus file from a real recording: an instrument patch plays a sequence of
    notes; another recording repeats (random crops, pitch shifts of -3..3 semitones,
    gaps) until the file is full. Noise 15-40 dB, random gain."""
    rng, n = it["rng"], int(round(it["seconds"] * SR))
    src = it["recording"]
    if src.startswith("freepats:Tone_000/"):
        waves = recordings.load_source(src, SR)
        x = demo_tasks._patch_notes(waves, n, rng, it["pitch_range"],
                                    max(1, int(round(it["seconds"] / rng.uniform(0.3, 0.8)))))
    else:
        x, t = np.zeros(n, np.float32), 0
        while t < n - SR // 20:
            s = demo_tasks._recording_sound(src, n - t, rng, None, (-3.0, 3.0))
            x[t: t + len(s)] += synth.normalize_peak(s, float(rng.uniform(0.5, 1.0)))
            t += int(len(s) * rng.uniform(0.6, 1.0) + rng.uniform(0.0, 0.4) * SR) + 1
    x = demo_tasks._add_noise(x, rng, (15.0, 40.0))
    return synth.normalize_peak(x, float(rng.uniform(0.3, 0.95)))


def _build_corpus(out_dir: Path, n_files: int, seed: int, texts: dict[str, list[str]],
                  variants: list[str], en_dialects: list[str], programs: list[int],
                  pitch_ranges: dict[str, list[int]], workers: int | None = None,
                  progress: Callable[[int], Any] | None = None, real_every: int = 0,
                  real_sources: Sequence[Sequence] = (), written: WrittenFiles | None = None) -> Path:
    """Write the unlabeled corpus (resumable: the files already written are kept); index.csv last. Every
    file goes through ``written`` (the builder's record; default: the root's, ``out_dir``'s parent); a
    file in ``out_dir`` that the record does not prove the builder's is refused (ForeignFileError),
    never taken for part of the corpus."""
    from hear_slicer.written import WrittenFiles, files_in

    written = written or WrittenFiles(out_dir.parent, "the demo-data builder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if real_every and not real_sources:
        raise ValueError("real_every > 0 needs real_sources")
    items = [_corpus_item(i, seed, texts, variants, en_dialects, programs, pitch_ranges,
                          real_every, real_sources) for i in range(n_files)]
    written.check(files_in(out_dir), f"write the corpus into {out_dir}")  # resumed only when all of it is ours
    todo = [it for it in items if not (out_dir / it["name"]).exists()]
    if progress is not None:
        progress(len(items) - len(todo))

    def render(batch: list[dict]) -> list[np.ndarray]:
        if batch[0]["kind"] == "real":
            return [_real_corpus_audio(batch[0])]
        if batch[0]["kind"] == "speech":
            it = batch[0]
            n = int(round(it["seconds"] * SR))
            return [demo_tasks._speech_clip(it["voice"], it["text"], n, it["rng"], (10.0, 40.0),
                                            peak=(0.3, 0.95))]
        whole = synth.fluidsynth_render_many([it["notes"] for it in batch], 6.0, SR)
        out = []
        for it, x in zip(batch, whole):
            x = x[: int(round(it["seconds"] * SR))]
            x = demo_tasks._add_noise(x, it["rng"], (15.0, 40.0))
            out.append(synth.normalize_peak(x, float(it["rng"].uniform(0.3, 0.95))))
        return out

    speech = [[it] for it in todo if it["kind"] == "speech"]
    music = [it for it in todo if it["kind"] == "music"]
    batches = speech + [music[j: j + 16] for j in range(0, len(music), 16)]
    batches += [[it] for it in todo if it["kind"] == "real"]
    for batch, audio in zip(batches, demo_tasks._map(render, batches, workers)):
        for it, x in zip(batch, audio):
            wav = io.BytesIO()
            synth.write_wav(wav, x, SR)
            written.write(out_dir / it["name"], wav.getvalue())
            if progress is not None:
                progress(1)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    extra = ["recording"] if real_every else []  # the small/tiny index keeps its columns
    w.writerow(["path", "kind", "seconds", "voice", "language", "text", "programs", *extra])
    for it in items:
        w.writerow([it["name"], it["kind"], f"{it['seconds']:.2f}", it["voice"], it["language"],
                    it["text"], " ".join(map(str, it["programs"])),
                    *([it["recording"]] if extra else [])])
    written.write(out_dir / CORPUS_INDEX, buf.getvalue().encode("utf-8"))
    return out_dir


# --------------------------------------------------------------------------- disjointness


def _voice_identity(voice: str) -> str:
    """Who speaks: 'flite:<voice>' or 'espeak-variant:<variant>' (language ignored)."""
    engine, _, name = voice.partition(":")
    if engine == "flite":
        return voice
    return f"espeak-variant:{name.partition('+')[2] or '(default)'}"


def _test_split_sources(preset: DemoPreset) -> dict[str, set]:
    """Voices, texts and GM programs heard in any task's test split."""
    voices = {_voice_identity(v) for v in split_voices(KEYWORD_VOICES)["test"]}
    voices |= {_voice_identity(v) for v in SPEAKER_VOICES[: preset.n_speakers]}
    voices |= {f"espeak-variant:{v}" for v in LANGUAGE_VARIANTS["test"]}
    voices |= {_voice_identity(v) for v in DEFAULT_VOICES if v.startswith("espeak:")}  # events
    texts = set(SPEAKER_SENTENCES["test"]) | {t for lang in LANGUAGE_SENTENCES.values()
                                              for t in lang["test"]}
    texts |= set(demo_tasks._EVENT_WORDS)
    recs: set[str] = set()
    if preset.real_sounds is not None:
        recs |= {src for s in _real_sound_sources().values() for src in s["test"]}
    if preset.real_instruments is not None:
        recs |= {src for s in _real_instrument_sources().values() for src in s["test"]}
    return {"voices": voices, "texts": texts, "programs": _test_programs(),
            "recordings": {recordings.source_group(r) for r in recs}}


def corpus_overlap(root: str | Path, preset: str | DemoPreset = "small") -> dict[str, set]:
    """What the built corpus under ``root`` shares with any task's test split.

    Reads ``<root>/corpus/index.csv`` and returns ``{"voices": ..., "texts": ...,
    "programs": ..., "recordings": ...}``, each the set of test-split sources the corpus
    also uses (all empty for a correct build). A corpus text overlaps when any of its
    sentences is a test sentence or an event-task word; a recording when its group
    (:func:`eval_suites.synthetic.recordings.source_group`: siblings such as ``tabla_ghe1`` and
    ``tabla_ghe2`` are one recording) is a test recording of a real-recording task.
    """
    preset = _resolve_preset(preset)
    test = _test_split_sources(preset)
    with open(Path(root) / "corpus" / CORPUS_INDEX, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    used_voices = {_voice_identity(r["voice"]) for r in rows if r["voice"]}
    sentences = {s for lang in LANGUAGE_SENTENCES.values() for split in lang.values() for s in split}
    sentences |= {s for split in SPEAKER_SENTENCES.values() for s in split}
    used_texts: set[str] = set()
    for r in rows:
        used_texts |= {s for s in sentences if s in r["text"]}
        used_texts |= {w for w in test["texts"] if r["text"].strip(" .").lower() == w}
    used_programs = {int(p) for r in rows for p in r["programs"].split()}
    used_recordings = {recordings.source_group(r["recording"]) for r in rows if r.get("recording")}
    return {"voices": used_voices & test["voices"], "texts": used_texts & test["texts"],
            "programs": used_programs & test["programs"],
            "recordings": used_recordings & test["recordings"]}


# --------------------------------------------------------------------------- recipe and cache


def _engine_versions() -> dict[str, str]:
    out = {}
    for exe, arg in (("espeak-ng", "--version"), ("flite", "--version"), ("fluidsynth", "--version")):
        path = shutil.which(exe)
        if path is None:
            raise synth.EngineError(f"the '{exe}' program is not installed; install it with "
                                    f"`apt-get install {exe}` (the demo data needs espeak-ng, "
                                    f"flite, fluidsynth and fluid-soundfont-gm)")
        proc = subprocess.run([path, arg], capture_output=True, text=True, check=False)
        out[exe] = (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr) else ""
    sf2 = synth.DEFAULT_SOUNDFONT
    out["soundfont"] = f"{sf2.name} {sf2.stat().st_size} bytes" if sf2.is_file() else "missing"
    for name, folder, pattern in (("sonic-pi-samples", recordings.SONIC_PI_DIR, "*.flac"),
                                  ("freepats", recordings.FREEPATS_DIR, "*_000/*.pat")):
        files = sorted(folder.glob(pattern)) if folder.is_dir() else []
        out[name] = f"{len(files)} files {sum(f.stat().st_size for f in files)} bytes"
    return out


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    """sha256 of the generator: the source of synth, hear_task, demo_tasks and this module,
    and the engines' version strings (their output is part of the recipe)."""
    h = hashlib.sha256()
    for mod in (synth, hear_task, demo_tasks, recordings, sys.modules[__name__]):
        h.update(Path(mod.__file__).read_bytes())
    h.update(json.dumps(_engine_versions(), sort_keys=True).encode())
    return h.hexdigest()


def _part_hash(part: _Part) -> str:
    payload = json.dumps({"part": part.name, "path": part.path, "params": part.params,
                          "code": code_version()}, sort_keys=True, default=list)
    return hashlib.sha256(payload.encode()).hexdigest()


def _resolve_preset(preset: str | DemoPreset) -> DemoPreset:
    if isinstance(preset, DemoPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown demo preset {preset!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[preset]


def _read_recipe(root: Path) -> dict[str, Any]:
    try:
        recipe = json.loads((root / RECIPE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"parts": {}}
    return recipe if isinstance(recipe.get("parts"), dict) else {"parts": {}}


def _write_recipe(root: Path, recipe: dict[str, Any], written: WrittenFiles) -> None:
    """Write ``root/recipe.json`` atomically, leaving it untouched when nothing changed."""
    text = json.dumps(recipe, indent=1, sort_keys=True, default=list)
    path = root / RECIPE_FILE
    if path.is_file() and path.read_text() == text:
        return
    written.write(path, text.encode("utf-8"))


def _is_complete(part: _Part, path: Path) -> bool:
    return (path / CORPUS_INDEX).is_file() if part.name == "corpus" else task_is_complete(path)


def _check_recipe_paths(root: Path, recipe: dict[str, Any]) -> None:
    """DemoRootError when ``recipe.json`` puts a part anywhere but the folder its name gives."""
    for name, entry in recipe["parts"].items():
        path = entry.get("path") if isinstance(entry, dict) else None
        if not re.fullmatch(r"\w+", name) or path != part_folder(name):
            raise DemoRootError(f"{root / RECIPE_FILE} puts demo part {name!r} at {path!r}, a folder this builder "
                                f"never writes (it would be {part_folder(name)!r}); nothing was touched. Remove "
                                "or fix that recipe.json, or choose another --root")


def build_demo(root: str | Path, preset: str | DemoPreset = "small", workers: int | None = None,
               progress: bool = True) -> dict[str, Path]:
    """Build (or bring up to date) the demo data under ``root``; returns part name -> folder.

    Keys: "keywords", "speakers", "languages", "nsynth_family", "nsynth_pitch", "events"
    (plus "real_sounds", "real_instruments" for the study preset; HEAR task folders under
    ``root/tasks``) and "corpus" (``root/corpus``). Parts whose
    recipe hash matches ``root/recipe.json`` and that are complete are left untouched;
    the others are rebuilt (or resumed, if interrupted with the same recipe). Parts a
    previous recipe had and this one has not are deleted. ``workers``: engine processes
    run at once (default: the number of CPUs). Only files the builder's record proves it
    wrote are ever deleted or replaced: any other file in a folder it would delete, or a
    recipe.json putting a part elsewhere, is a :class:`DemoRootError` (exit 2) naming it,
    raised before anything is touched.
    """
    from hear_slicer.written import RECORD_NAME, ForeignFileError

    root = Path(root)
    try:
        return _build_demo(root, preset, workers, progress)
    except ForeignFileError as e:
        legacy = (root / RECIPE_FILE).is_file() and not (root / RECORD_NAME).is_file()
        hint = " (this root has no such record: built before the builder kept one, or not by it)" if legacy else ""
        raise DemoRootError(f"{e}{hint}") from e


def _build_demo(root: Path, preset: str | DemoPreset, workers: int | None, progress: bool) -> dict[str, Path]:
    from hear_slicer.progress import Progress
    from hear_slicer.written import WrittenFiles

    preset = _resolve_preset(preset)
    workers = workers or os.cpu_count() or 1
    parts = demo_parts(preset)
    written = WrittenFiles(root, "the demo-data builder")
    old = _read_recipe(root)
    _check_recipe_paths(root, old)
    root.mkdir(parents=True, exist_ok=True)
    recipe = {"format": 1, "preset": dataclasses.asdict(preset), "code_version": code_version(),
              "parts": dict(old["parts"])}
    recipe["recipe_hash"] = hashlib.sha256(
        json.dumps([_part_hash(p) for p in parts]).encode()).hexdigest()
    gone = [n for n in recipe["parts"] if n not in {p.name for p in parts}]
    stale = {p.name for p in parts if not _part_is_current(p, recipe, root)}
    if (gone or stale) and (root / RECIPE_FILE).exists():  # it will be rewritten: checked before anything else
        written.check([root / RECIPE_FILE], f"rewrite {root / RECIPE_FILE}")
    # the parts dropped from the recipe and those built anew: deleted only when every file in them is ours
    doomed = [recipe["parts"][n]["path"] for n in gone]
    doomed += [p.path for p in parts if p.name in stale and not _part_resumes(p, recipe)]
    written.remove_folders([root / rel for rel in doomed], f"delete the demo parts that are rebuilt in {root}")
    for name in gone:
        del recipe["parts"][name]

    out: dict[str, Path] = {}
    for part in parts:
        h, path = _part_hash(part), root / part.path
        out[part.name] = path
        if part.name not in stale:
            if progress:
                print(f"demo {part.name}: up to date ({path})", file=sys.stderr)
            continue
        recipe["parts"][part.name] = {"path": part.path, "hash": h, "complete": False,
                                      "params": part.params}
        _write_recipe(root, recipe, written)
        bar = Progress(part.n_items, f"demo {part.name}", unit="clip", enabled=progress)
        built = part.build(root, workers, bar.update, written)
        bar.close(f"{part.n_items} clips in {path}")
        if Path(built).resolve() != path.resolve():
            raise RuntimeError(f"demo part {part.name} was written to {built}, expected {path}")
        recipe["parts"][part.name]["complete"] = True
        _write_recipe(root, recipe, written)
    _write_recipe(root, recipe, written)  # e.g. another preset whose parts all match: record it
    return out


def _part_is_current(part: _Part, recipe: dict[str, Any], root: Path) -> bool:
    """Built with this recipe, complete, in place: nothing to do."""
    entry = recipe["parts"].get(part.name)
    return bool(entry and entry.get("hash") == _part_hash(part) and entry.get("complete")
                and _is_complete(part, root / part.path))


def _part_resumes(part: _Part, recipe: dict[str, Any]) -> bool:
    """Interrupted with this recipe: the build goes on where it stopped (nothing deleted)."""
    entry = recipe["parts"].get(part.name)
    return bool(entry and entry.get("hash") == _part_hash(part) and entry.get("path") == part.path)


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eval_suites.synthetic.demo_data``: build the demo data; prints the folders."""
    parser = argparse.ArgumentParser(
        prog="python -m eval_suites.synthetic.demo_data",
        description="Build the offline demo data: six HEAR tasks (keywords, speakers, "
                    "languages, NSynth families, NSynth pitch, sound events) and an "
                    "unlabeled pretraining corpus, synthesised with espeak-ng, flite and "
                    "fluidsynth (the study preset adds real recordings from sonic-pi-samples "
                    "and freepats, and two tasks of them). Cached: rerunning with the same recipe does nothing; a "
                    "changed recipe rebuilds only the parts that changed.")
    parser.add_argument("--root", type=Path, default=Path("demo_data"),
                        help="output folder (default: ./demo_data); tasks go to ROOT/tasks, "
                             "the corpus to ROOT/corpus")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small",
                        help="sizes: 'small' for the README demo (about 1-3 minutes on 2 "
                             "cores), 'tiny' for tests (seconds), 'study' for comparing "
                             "methods (>= 300 test clips per task, 3,200 corpus files, two "
                             "more tasks of real recordings; needs the Debian packages "
                             "sonic-pi-samples and freepats); default: small")
    parser.add_argument("--workers", type=int, default=None,
                        help="engine processes run at once (default: number of CPUs)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")

    def build() -> int:
        """Exit 1: a synthesis engine is missing or failed; an unwritable output is exit 3, one
        error line (:func:`eval_suites.errors.run_command`)."""
        try:
            paths = build_demo(args.root, args.preset, workers=args.workers, progress=not args.no_progress)
        except synth.EngineError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        for name, path in paths.items():
            print(f"{name:14s} {path}")
        return 0
    return run_command(build, debug=args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
