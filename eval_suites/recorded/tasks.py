"""The recorded development suite's tasks: what each reads, how it labels and splits, and the writer.

Each task is a function ``items(root) -> list[Item]`` over the installed packages' files under
``root`` (the file-system root; tests pass a folder they fill with small audio files at the
same paths), and a :class:`TaskSpec` saying how long its clips are and how they are split:

==================  ==========================================  =====================================
task                labels (source)                             split (nothing leaks across splits)
==================  ==========================================  =====================================
speakers            5 voices of Asterisk's prompts              by prompt: a prompt's recordings by
                    (asterisk-core-sounds-*, -prompt-it-menardi) every voice share one split
languages           9 languages of Tux Paint's spoken stamp     by stamp: an object's names in every
                    names (tuxpaint-stamps-default)             language share one split
letter_languages    20 languages of KLettres' spoken letters    by letter or syllable, per language
                    and syllables
vowels              the vowel (a, e, i, o, u) of KLettres'      by consonant: a syllable's onset
                    consonant-vowel syllables in 7 languages    (``b`` of ``ba``..``bu``, every
                                                                language) is in one split
music               5 game soundtracks (Colobot, Drascula,      by track
                    HyperRogue, Planet Blupi, Singularity)
drums               9 drum-kit pieces, two recorded kits        by kit: train on Black Pearl, validate
                    (avldrums.lv2-soundfont)                    and test on Red Zeppelin
sounds              14 kinds of recorded sound: animals,        by recording (numbered takes of one
                    household objects, instruments (Tux Paint   sound, ``grass1``..``grass4``, share
                    stamps); footsteps, doors, weapons,         a split)
                    impacts, breaking, human cries, ambience
                    (UFO: AI, Minetest folders and names)
game_effects        which of 9 games an effect is from          by file (numbered takes share a split;
                    (Colobot, Heroes, Pingus, Tux Paint,        byte-identical files kept once)
                    UFO: AI, WarMUX, Scorched 3D, Battle
                    Tanks, Minetest)
==================  ==========================================  =====================================

Splits by hash are deterministic (SHA-1 of the group's name), so a rebuild, on any machine,
gives the same clips in the same splits.
"""
from __future__ import annotations

import hashlib
import io
import math
import zipfile
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from eval_suites.hear_format.task import TaskMetadata
from eval_suites.synthetic import synth

__all__ = ["Item", "TaskSpec", "TASKS", "SPLITS", "split_by_group", "active_start", "read_clip", "plan_task"]

SPLITS = ("train", "valid", "test")
FRACTIONS = (0.5, 0.2, 0.3)
"""Share of the groups (prompts, stamps, tracks, files) in train, valid and test."""


@dataclass(frozen=True)
class Item:
    """One clip to write: ``seconds`` of ``path`` (or of its zip ``member``: a game's ``.pk3``)
    from ``start`` (None: where the sound starts), or a drum note rendered from a SoundFont
    (``note``: (MIDI key, velocity))."""
    path: Path
    label: str
    group: str                       # clips of one group always share a split
    start: float | None = None
    split: str | None = None         # set by tasks that split by speaker or kit
    note: tuple[int, int] | None = None
    member: str | None = None        # a file inside the zip archive `path`

    @property
    def name(self) -> str:
        """The clip's file name: a hash of where it comes from (unique, stable, no odd characters)."""
        key = f"{self.path}|{self.start}|{self.note}" + (f"|{self.member}" if self.member else "")
        return hashlib.sha1(key.encode()).hexdigest()[:16] + ".wav"

    def open(self) -> str | io.BytesIO:
        """What soundfile reads: the file's path, or the archive member's bytes."""
        if self.member is None:
            return str(self.path)
        with zipfile.ZipFile(self.path) as z:
            return io.BytesIO(z.read(self.member))


@dataclass(frozen=True)
class TaskSpec:
    name: str
    packages: tuple[str, ...]
    seconds: float
    items: Callable[[Path], list[Item]]
    max_per_label: int = 300         # clips per label over all splits (groups taken in hash order)
    stratified: bool = True          # split each label's groups apart (False: one split of all groups)
    describes: str = ""
    notes: dict = field(default_factory=dict)
    version: str = "v1"              # the task folder's version: a new recipe gets a new one (a new folder)
    fractions: tuple[float, float, float] = FRACTIONS  # share of the groups in train, valid, test


def _hash01(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / 16 ** 12


def split_by_group(groups: list[str], fractions: tuple[float, float, float] = FRACTIONS) -> dict[str, str]:
    """group -> split: groups in the order of their hash, the first `fractions[0]` to train, the next
    `fractions[1]` to valid, the rest to test; with 3 or more groups every split gets at least one."""
    order = sorted(set(groups), key=lambda g: (_hash01(g), g))
    n = len(order)
    n_train = round(n * fractions[0])
    n_valid = round(n * fractions[1])
    if n >= 3:
        n_train = min(max(1, n_train), n - 2)
        n_valid = min(max(1, n_valid), n - n_train - 1)
    out = {}
    for i, g in enumerate(order):
        out[g] = "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
    return out


def _cap(items: list[Item], limit: int) -> list[Item]:
    """At most `limit` clips per label, whole groups taken in the order of their hash."""
    by_label: dict[str, dict[str, list[Item]]] = defaultdict(lambda: defaultdict(list))
    for it in items:
        by_label[it.label][it.group].append(it)
    out = []
    for label in sorted(by_label):
        taken = 0
        for group in sorted(by_label[label], key=lambda g: (_hash01(label + "|" + g), g)):
            if taken >= limit:
                break
            out += by_label[label][group]
            taken += len(by_label[label][group])
    return out


def plan_task(spec: TaskSpec, root: Path) -> dict[str, list[Item]]:
    """The task's clips per split: its items, capped per label, split by group (unless an item
    carries its split)."""
    items = _cap(spec.items(root), spec.max_per_label)
    todo = [it for it in items if it.split is None]
    if spec.stratified:
        split_of = {}
        by_label: dict[str, list[str]] = defaultdict(list)
        for it in todo:
            by_label[it.label].append(it.group)
        for label, groups in by_label.items():
            split_of.update({(label, g): s for g, s in split_by_group(groups, spec.fractions).items()})
        where = {id(it): split_of[it.label, it.group] for it in todo}
    else:
        split_of = split_by_group([it.group for it in todo], spec.fractions)
        where = {id(it): split_of[it.group] for it in todo}
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for it in items:
        out[it.split or where[id(it)]].append(it)
    return out


# --------------------------------------------------------------------------- audio
def active_start(x: np.ndarray, sr: int, threshold_db: float = -35.0, lead: float = 0.05) -> float:
    """Seconds where the sound starts: the first 10 ms frame within `threshold_db` of the loudest
    frame, less `lead` seconds (0 for silence)."""
    hop = max(1, sr // 100)
    n = len(x) // hop
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    if rms.max() <= 0:
        return 0.0
    first = int(np.argmax(rms >= rms.max() * 10 ** (threshold_db / 20)))
    return max(0.0, first * hop / sr - lead)


def read_clip(item: Item, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """The item's audio: mono, `sample_rate`, `seconds` long (zero-padded)."""
    if item.start is None:  # short files: read whole, start where the sound starts
        x, sr = sf.read(item.open(), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        a = int(round(active_start(x, sr) * sr))
        x = x[a: a + int(math.ceil(seconds * sr))]
    else:  # an excerpt of a long file: read only it
        source = item.open()
        sr = sf.info(source).samplerate
        source = source if isinstance(source, str) else io.BytesIO(source.getvalue())
        x, sr = sf.read(source, start=int(round(item.start * sr)), frames=int(math.ceil(seconds * sr)),
                        dtype="float32", always_2d=True)
        x = x.mean(axis=1)
    y = synth.resample(x, sr, sample_rate)
    n = int(round(seconds * sample_rate))
    return (y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))).astype(np.float32)


def _files(folder: Path, exts: tuple[str, ...] = ("wav", "ogg")) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower().lstrip(".") in exts)


# --------------------------------------------------------------------------- the tasks
ASTERISK = "usr/share/asterisk/sounds"
VOICES = {  # folder -> speaker (Allison recorded both the US English and the Mexican Spanish prompts)
    "en_US_f_Allison": "allison", "es_MX_f_Allison": "allison", "fr_CA_f_June": "june",
    "it_IT_m_Carlo": "carlo", "ru_RU_f_IvrvoiceRU": "ivrvoice_ru", "it_IT_f_Menardi": "menardi",
}


def speakers(root: Path) -> list[Item]:
    out = []
    for folder, speaker in VOICES.items():
        base = root / ASTERISK / folder
        for p in _files(base, ("wav",)):
            prompt = p.relative_to(base).with_suffix("").as_posix()
            out.append(Item(p, speaker, group=prompt))
    return out


TUXPAINT_STAMPS = "usr/share/tuxpaint/stamps"
STAMP_LANGUAGES = ("be", "bg", "ca", "da", "el", "es", "fr", "ro", "ru")
"""The languages with 300 or more spoken stamp names in tuxpaint-stamps-default 2022.06.04."""


def languages(root: Path) -> list[Item]:
    out = []
    pattern = re.compile(r"^(?P<stamp>.+)_desc_(?P<lang>[a-z]{2})\.ogg$")
    base = root / TUXPAINT_STAMPS
    for p in _files(base, ("ogg",)):
        m = pattern.match(p.name)
        if m and m["lang"] in STAMP_LANGUAGES:
            stamp = (p.parent.relative_to(base) / m["stamp"]).as_posix()
            out.append(Item(p, m["lang"], group=stamp))
    return out


KLETTRES = "usr/share/klettres"


def letter_languages(root: Path) -> list[Item]:
    out = []
    base = root / KLETTRES
    for p in _files(base, ("ogg",)):
        rel = p.relative_to(base).parts
        if len(rel) == 3 and rel[1] in ("alpha", "syllab"):
            out.append(Item(p, f"lang_{rel[0]}", group=f"{rel[0]}/{rel[1]}/{p.stem}"))
    return out


VOWEL_LANGUAGES = ("es", "it", "ml", "pt_BR", "ru", "tn", "uk")
"""KLettres languages (one native speaker each) for ``vowels``: those whose syllable files spell
the five vowels as their cardinal sounds (a, e, i, o, u) and hold 30 or more consonant-vowel
syllables. Left out: English and French (``me``, ``be`` are not /e/) and languages with fewer such
syllables (German, Lithuanian)."""
_CV_SYLLABLE = re.compile(r"([b-df-hj-np-tv-z]{1,3})([aeiou])\2?")
"""One to three consonant letters, then one vowel, once or doubled (Malayalam's long ``baa``)."""


def vowels(root: Path) -> list[Item]:
    """The vowel of each consonant-vowel syllable (``ba.ogg``, ``bhaa.ogg`` -> ``a``) spoken in a
    language of ``VOWEL_LANGUAGES``, split by its consonants: every syllable starting with ``b``
    (``ba`` .. ``bu``, in every language) shares a split, so a test vowel is heard after consonants
    no training clip has. Every speaker is in every split, with every vowel, so telling the
    speaker gives no label. Not split by speaker: the one speaker with the most syllables
    (Malayalam, 275 of 645) records so unlike the rest that a probe trained on either side is
    near chance on the other (what the first version, test = Malayalam, measured: log-mel
    statistics 0.45, random init 0.33, the trained models 0.15-0.26; docs/recorded.md). The task
    asks what is said, not who says it (what ``syllables``, the task it replaces, asked with 82
    labels and 2-3 training clips each: every model scored sat at chance)."""
    base = root / KLETTRES
    out = []
    for p in _files(base, ("ogg",)):
        rel = p.relative_to(base).parts
        m = _CV_SYLLABLE.fullmatch(p.stem)
        if len(rel) == 3 and rel[1] == "syllab" and rel[0] in VOWEL_LANGUAGES and m:
            out.append(Item(p, f"vowel_{m[2]}", group=f"onset_{m[1]}"))
    return out


SOUNDTRACKS = {
    "colobot": "usr/share/games/colobot/music",
    "drascula": "usr/share/scummvm/drascula/audio",
    "hyperrogue": "usr/share/hyperrogue/music",
    "planetblupi": "usr/share/planetblupi/music",
    "singularity": "usr/share/games/singularity/music",
}
MUSIC_SECONDS = 4.0


def music(root: Path, per_label: int = 200, max_per_track: int = 12) -> list[Item]:
    """Per soundtrack, 4-second excerpts evenly spaced over 10-90 % of each track, as many per
    track as make about `per_label` (at most `max_per_track`)."""
    out = []
    for game, folder in SOUNDTRACKS.items():
        tracks = _files(root / folder, ("ogg",))
        if not tracks:
            continue
        k = max(1, min(max_per_track, math.ceil(per_label / len(tracks))))
        for p in tracks:
            length = sf.info(str(p)).duration
            if length < MUSIC_SECONDS:
                continue
            span = max(0.0, 0.8 * length - MUSIC_SECONDS)
            starts = [0.1 * length + span * (i + 0.5) / k for i in range(k)] if span > 0 else [0.0]
            out += [Item(p, game, group=f"{game}/{p.name}", start=round(s, 3)) for s in starts]
    return out


DRUM_KITS = {"black_pearl": "usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2",
             "red_zeppelin": "usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2"}
DRUM_PIECES = {  # General MIDI drum keys -> piece
    36: "kick", 37: "sidestick", 38: "snare", 40: "snare",
    42: "hihat_closed", 44: "hihat_pedal", 46: "hihat_open",
    41: "tom", 43: "tom", 45: "tom", 47: "tom", 48: "tom", 50: "tom",
    49: "crash", 57: "crash", 52: "crash", 55: "crash", 51: "ride", 59: "ride", 53: "ride",
}
DRUM_VELOCITIES = tuple(range(15, 128, 8))


def drums(root: Path) -> list[Item]:
    """Every GM drum key of `DRUM_PIECES` at each of `DRUM_VELOCITIES` (the kits hold several
    recorded strokes per piece, one per velocity layer). Train: Black Pearl; valid and test: Red
    Zeppelin, alternate velocities (valid and test may share a velocity layer; neither is
    trained on)."""
    out = []
    for kit, rel in DRUM_KITS.items():
        path = root / rel
        if not path.is_file():
            continue
        for key, piece in DRUM_PIECES.items():
            for j, v in enumerate(DRUM_VELOCITIES):
                split = "train" if kit == "black_pearl" else ("valid" if j % 2 else "test")
                out.append(Item(path, piece, group=f"{kit}/{key}/{v}", split=split, note=(key, v)))
    return out


@dataclass(frozen=True)
class Source:
    """Where a package keeps its sound files: a folder, or a zip archive (a game's ``.pk3``) and
    the folder inside it. ``takes``: the package numbers takes of one sound (``grass1.ogg``,
    ``grass2.ogg``; ``dig.1.ogg``, ``dig.2.ogg``), and takes of one sound share a split."""
    path: str
    inside: str = ""
    takes: bool = True


def _sound_files(root: Path, src: Source) -> list[tuple[Path, str | None, str]]:
    """(path, archive member or None, name relative to the source) of each WAV/Ogg file."""
    where = root / src.path
    if src.inside:
        if not where.is_file():
            return []
        with zipfile.ZipFile(where) as z:
            names = sorted(n for n in z.namelist() if n.startswith(src.inside) and not n.endswith("/")
                           and n.rsplit(".", 1)[-1].lower() in ("wav", "ogg"))
        return [(where, n, n[len(src.inside):]) for n in names]
    return [(p, None, p.relative_to(where).as_posix()) for p in _files(where)]


def _sound_group(rel: str, takes: bool) -> str:
    """The split group of a sound file: its name, less the take number where the package numbers
    takes (``footsteps/grass3.ogg`` -> ``footsteps/grass``, ``default_dig_cracky.2.ogg`` ->
    ``default_dig_cracky``, ``civfemdeath01a.ogg`` -> ``civfemdeath``)."""
    folder, _, name = rel.rpartition("/")
    stem = name.split(".")[0] if takes else name.rsplit(".", 1)[0]
    if takes:
        stem = re.sub(r"[-_]?\d+a?$", "", stem) or stem
    return f"{folder}/{stem}" if folder else stem


def _duration(path: Path, member: str | None) -> float:
    return sf.info(Item(path, "", "", member=member).open()).duration


def _excerpts(path: Path, member: str | None, label: str, group: str, seconds: float, max_per_file: int) -> list[Item]:
    """Up to `max_per_file` excerpts of `seconds`, evenly spaced over the file (one, from where
    the sound starts, when it is shorter than two)."""
    length = _duration(path, member)
    k = max(1, min(max_per_file, int(length // seconds)))
    starts = [None] if k == 1 else [round(i * (length - seconds) / (k - 1), 3) for i in range(k)]
    return [Item(path, label, group=group, start=s, member=member) for s in starts]


TUXPAINT_SOUND_CLASSES = {  # tuxpaint stamp folders -> class
    "animals/birds": "bird", "animals/mammals": "mammal", "animals/marsupials": "mammal",
    "animals/insects": "insect", "animals/amphibians": "amphibian_reptile", "animals/lizards": "amphibian_reptile",
    "household": "household", "hobbies/music": "instrument",
}
UFOAI_SOUNDS = Source("usr/share/games/ufoai/base/0snd.pk3", inside="sound/")
MINETEST_SOUNDS = Source("usr/share/games/minetest/games/minetest_game/mods")
SCORCHED3D_SOUNDS = Source("usr/share/games/scorched3d/data/globalmods")
BTANKS_SOUNDS = Source("usr/share/games/btanks/data/sounds")
WARMUX_SOUNDS = Source("usr/share/games/warmux/sound")
SOUND_RULES: tuple[tuple[Source, str, str], ...] = (
    # (source, pattern of the name inside it, class): the first rule that matches names the class
    (UFOAI_SOUNDS, r"footsteps/", "footsteps"),
    (UFOAI_SOUNDS, r"doors/", "door"),
    (UFOAI_SOUNDS, r"weapons/explosion", "explosion"),
    (UFOAI_SOUNDS, r"weapons/(bullet|laser|plasma|ptl|rocket|ugv-)", "shot"),
    (UFOAI_SOUNDS, r"impact/", "impact"),
    (UFOAI_SOUNDS, r"(soldiers|civilians)/", "human_cry"),
    (UFOAI_SOUNDS, r"misc/break", "breaking"),
    (UFOAI_SOUNDS, r"ambience/", "ambience"),
    (MINETEST_SOUNDS, r"default/sounds/default_\w+_footstep", "footsteps"),
    (MINETEST_SOUNDS, r"doors/sounds/", "door"),
    (MINETEST_SOUNDS, r"default/sounds/default_(break_glass|tool_breaks)", "breaking"),
    (MINETEST_SOUNDS, r"tnt/sounds/tnt_explode", "explosion"),
    (SCORCHED3D_SOUNDS, r"\w+/data/wav/explosions/", "explosion"),
    (SCORCHED3D_SOUNDS, r"\w+/data/wav/shoot/", "shot"),
    (SCORCHED3D_SOUNDS, r"\w+/data/wav/movement/tankmove", "engine"),
    (UFOAI_SOUNDS, r"ugv/", "engine"),
    (BTANKS_SOUNDS, r"ambient/", "ambience"),
    (BTANKS_SOUNDS, r"[\w-]*explosion", "explosion"),
    (BTANKS_SOUNDS, r"(cannon|shot|machinegunner-bullet)", "shot"),
    (BTANKS_SOUNDS, r"(engine-|tank-move|helicopter|train|submarine|vehicle-sound)", "engine"),
    (BTANKS_SOUNDS, r"man-steps", "footsteps"),
    (WARMUX_SOUNDS, r"default/weapons/(explosion|dynamite_exp|riot_bomb_exp)", "explosion"),
    (WARMUX_SOUNDS, r"default/weapons/(gun|m16|shotgun)\.", "shot"),
)
"""Recorded effects of game packages, classed by the package's own folders and file names."""
SOUND_SECONDS = 2.0


def sounds(root: Path, max_per_file: int = 4, min_groups: int = 3) -> list[Item]:
    """Tux Paint's recorded stamp sounds (not the spoken names) by stamp folder, and the effects of
    `SOUND_RULES` by folder and name: up to `max_per_file` 2-second excerpts of each file. A class
    of fewer than `min_groups` recordings is left out (it could not be in every split)."""
    out = []
    base = root / TUXPAINT_STAMPS
    for p in _files(base, ("ogg", "wav")):
        if "_desc" in p.name:
            continue
        rel = p.relative_to(base).as_posix()
        cls = next((c for prefix, c in TUXPAINT_SOUND_CLASSES.items() if rel.startswith(prefix + "/")), None)
        if cls is not None:
            out += _excerpts(p, None, cls, f"tuxpaint/{rel}", SOUND_SECONDS, max_per_file)
    for src in dict.fromkeys(s for s, _, _ in SOUND_RULES):
        for path, member, rel in _sound_files(root, src):
            cls = next((c for s, pattern, c in SOUND_RULES if s == src and re.match(pattern, rel)), None)
            if cls is not None:
                group = f"{src.path}/{_sound_group(rel, src.takes)}"
                out += _excerpts(path, member, cls, group, SOUND_SECONDS, max_per_file)
    groups: dict[str, set[str]] = defaultdict(set)
    for it in out:
        groups[it.label].add(it.group)
    return [it for it in out if len(groups[it.label]) >= min_groups]


EFFECTS: dict[str, tuple[Source, ...]] = {
    "colobot": (Source("usr/share/games/colobot/sounds", takes=False),),   # sound000.wav ... are different sounds
    "heroes": (Source("usr/share/games/heroes/sfx"),),
    "pingus": (Source("usr/share/games/pingus/data/sounds"),),
    "tuxpaint": (Source("usr/share/tuxpaint/sounds"),),
    "ufoai": (UFOAI_SOUNDS,),
    "warmux": (WARMUX_SOUNDS,),
    "scorched3d": (SCORCHED3D_SOUNDS,),
    "btanks": (BTANKS_SOUNDS,),
    "minetest": (MINETEST_SOUNDS,),
}
"""Game -> where its sound effects are (music and spoken-word folders are elsewhere)."""


def game_effects(root: Path) -> list[Item]:
    """One clip per sound file, from where the sound starts; numbered takes of one sound share a
    split; a file whose bytes equal an earlier one's (one sound under two names) is left out."""
    out, seen = [], set()
    for game, srcs in EFFECTS.items():
        for src in srcs:
            for path, member, rel in _sound_files(root, src):
                it = Item(path, game, group=f"{game}/{_sound_group(rel, src.takes)}", member=member)
                source = it.open()
                digest = hashlib.sha1(source.getvalue() if member else Path(source).read_bytes()).hexdigest()
                if digest not in seen:
                    seen.add(digest)
                    out.append(it)
    return out


_ASTERISK = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-es-wav", "asterisk-core-sounds-fr-wav",
             "asterisk-core-sounds-it-wav", "asterisk-core-sounds-ru-wav", "asterisk-prompt-it-menardi-wav")
TASKS: dict[str, TaskSpec] = {s.name: s for s in [
    TaskSpec("speakers", _ASTERISK, 3.0, speakers, stratified=False,
             describes="who speaks: 5 voices of telephone prompts (8 kHz recordings), prompts split apart"),
    TaskSpec("languages", ("tuxpaint-stamps-default",), 2.0, languages, max_per_label=240, stratified=False,
             describes="which of 9 languages: spoken names of objects, objects split apart"),
    TaskSpec("letter_languages", ("klettres-data",), 1.5, letter_languages, max_per_label=80,
             describes="which of 20 languages: letters and syllables spoken by native speakers, items split apart"),
    TaskSpec("vowels", ("klettres-data",), 1.5, vowels, max_per_label=1000, stratified=False,
             fractions=(0.4, 0.3, 0.3),  # a larger validation split: choices are made on it
             describes="which vowel (a, e, i, o, u) a spoken consonant-vowel syllable ends in: 7 native "
                       "speakers, split by the consonants before it"),
    TaskSpec("music", ("colobot-common-sounds", "drascula-music", "hyperrogue-music", "planetblupi-music-ogg",
                       "singularity-music"), MUSIC_SECONDS, music, max_per_label=220,
             describes="which of 5 game soundtracks: 4 s excerpts, tracks split apart"),
    TaskSpec("drums", ("avldrums.lv2-soundfont",), 1.0, drums, max_per_label=1000,
             describes="which drum-kit piece: two recorded kits, trained on one, tested on the other"),
    TaskSpec("sounds", ("tuxpaint-stamps-default", "ufoai-sound", "minetest-data", "scorched3d-data", "btanks-data",
                        "warmux-data"), SOUND_SECONDS, sounds, version="v2",
             describes="which of 14 kinds of recorded sound (animals, household objects, instruments, footsteps, "
                       "doors, shots, explosions, engines, impacts, breaking, human cries, ambience), recordings "
                       "split apart"),
    TaskSpec("game_effects", ("colobot-common-sounds", "heroes-sound-effects", "pingus-data", "tuxpaint-data",
                              "ufoai-sound", "warmux-data", "scorched3d-data", "btanks-data", "minetest-data"), 2.0,
             game_effects, version="v2",
             describes="which of 9 games a sound effect is from, files (and takes of one sound) split apart"),
]}
"""The suite's tasks, in the manifest's order."""


def metadata(spec: TaskSpec, versions: dict[str, str]) -> TaskMetadata:
    """The task's HEAR metadata; ``notes`` record the packages' versions and the split rule."""
    return TaskMetadata.scene(f"recorded_{spec.name}", version=spec.version, sample_duration=spec.seconds,
                              notes={"source": "python -m eval_suites.recorded", "describes": spec.describes,
                                     "packages": {p: versions.get(p, "?") for p in spec.packages},
                                     "recipe_version": int(spec.version.lstrip("v"))})
