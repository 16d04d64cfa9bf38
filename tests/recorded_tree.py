"""A small file tree with the recorded suite's packages' layout (real WAV/Ogg files, a few per
package; the drum kits are links to the FluidR3 SoundFont the set-up installs)."""
from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

from eval_suites.recorded import tasks

FLUID = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def _tone(path: Path, freq: float, seconds: float = 1.2, sr: int = 16000, noise: float = 0.0, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(len(t))
    x[: sr // 10] = 0  # a silent lead-in: the converter starts the clip where the sound starts
    sf.write(str(path), x.astype(np.float32), sr, format="OGG" if path.suffix == ".ogg" else "WAV")


SOUND_FILES = {  # the game packages' effects, at their folders (or inside their archive)
    tasks.UFOAI_SOUNDS: ["footsteps/grass1.ogg", "footsteps/grass2.ogg", "footsteps/dirt1.ogg", "footsteps/wood1.ogg",
                         "weapons/explosion-grenade.ogg", "weapons/bullet-rifle.ogg", "weapons/laser-small.ogg",
                         "doors/door1-open.ogg", "ambience/fire03.ogg", "misc/popup.ogg"],
    tasks.MINETEST_SOUNDS: ["default/sounds/default_grass_footstep.1.ogg", "default/sounds/default_grass_footstep.2.ogg",
                            "default/sounds/default_dig_cracky.1.ogg", "tnt/sounds/tnt_explode.ogg"],
    tasks.SCORCHED3D_SOUNDS: ["none/data/wav/explosions/small.wav", "apoc/data/wav/explosions/tank.wav",
                              "none/data/wav/shoot/laser.wav", "none/data/wav/shoot/laser1.wav"],
    tasks.BTANKS_SOUNDS: ["explosion.ogg", "cannon1.ogg", "ambient/forest.ogg", "cow.ogg"],
    tasks.WARMUX_SOUNDS: ["default/weapons/explosion1.ogg", "default/weapons/teleport_start.ogg"],
}


def write_tree(root: Path) -> Path:
    """Write the tree under `root`; returns it."""
    for i, folder in enumerate(tasks.VOICES):
        for j, prompt in enumerate(["digits/1", "digits/2", "digits/3", "vm-intro", "vm-goodbye", "beep",
                                    "letters/a", "letters/b", "hello", "welcome"]):
            _tone(root / tasks.ASTERISK / folder / f"{prompt}.wav", 200 + 40 * i + 5 * j, sr=8000)
    stamps = root / tasks.TUXPAINT_STAMPS
    for i, lang in enumerate(tasks.STAMP_LANGUAGES):
        for j, obj in enumerate(["animals/birds/duck", "animals/mammals/cow", "food/apple", "town/house",
                                 "vehicles/car", "space/moon"]):
            _tone(stamps / f"{obj}_desc_{lang}.ogg", 300 + 30 * i + 3 * j)
    for i, rel in enumerate(["animals/birds/duck", "animals/birds/owl", "animals/birds/crow", "animals/mammals/cow",
                             "animals/mammals/dog", "animals/mammals/cat", "household/kettle", "household/toilet",
                             "household/tools/saw", "hobbies/music/string/violin", "hobbies/music/wind/bassoon",
                             "hobbies/music/string/cello", "animals/insects/bee", "animals/insects/fly",
                             "animals/insects/wasp", "food/apple"]):
        _tone(stamps / f"{rel}.ogg", 500 + 50 * i, seconds=4.5)
    kl = root / tasks.KLETTRES
    for i, lang in enumerate(["es", "it", "pt_BR", "fr"]):
        for j, letter in enumerate("abcdef"):
            _tone(kl / lang / "alpha" / f"{letter}.ogg", 250 + 60 * i + 4 * j)
        for j, syl in enumerate(["ba", "be", "bi", "bo"] if lang != "fr" else ["ad-0", "ad-1"]):
            _tone(kl / lang / "syllab" / f"{syl}.ogg", 700 + 100 * j + 7 * i)
    for lang, syls in (("ml", ["baa", "be", "bhi", "cho", "du", "bam", "cchooo"]), ("en", ["me", "no"])):
        for j, syl in enumerate(syls):  # vowels: Malayalam's long vowels count, English is left out
            _tone(kl / lang / "syllab" / f"{syl}.ogg", 760 + 90 * j)
    for i, (game, folder) in enumerate(tasks.SOUNDTRACKS.items()):
        for j in range(3):
            _tone(root / folder / f"track{j}.ogg", 150 + 90 * i + 10 * j, seconds=12.0, noise=0.02, seed=j)
    for i, (game, srcs) in enumerate(tasks.EFFECTS.items()):
        if srcs[0] in SOUND_FILES:
            continue
        for j, name in enumerate(["bonus", "coins", "stop", "claxon"]):
            _tone(root / srcs[0].path / f"{name}.wav", 900 + 120 * i + 9 * j, seconds=0.8)
    for i, (src, names) in enumerate(SOUND_FILES.items()):
        for j, name in enumerate(names):
            _tone((root / "_members" if src.inside else root / src.path) / name, 400 + 70 * i + 11 * j,
                  seconds=5.0 if "ambien" in name else 0.8)
        if src.inside:  # a game's .pk3: the files inside one zip archive
            (root / src.path).parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(root / src.path, "w") as z:
                for name in names:
                    z.write(root / "_members" / name, src.inside + name)
            shutil.rmtree(root / "_members")
    # one sound under two names (WarMUX ships a few): game_effects keeps it once
    (root / tasks.WARMUX_SOUNDS.path / "default/misc").mkdir(parents=True)
    shutil.copyfile(root / tasks.WARMUX_SOUNDS.path / "default/weapons/teleport_start.ogg",
                    root / tasks.WARMUX_SOUNDS.path / "default/misc/newcomer.ogg")
    for rel in tasks.DRUM_KITS.values():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(FLUID, root / rel)
    return root
