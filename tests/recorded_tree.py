"""A small file tree with the recorded suite's packages' layout (real WAV/Ogg files, a few per
package; the drum kits are links to the FluidR3 SoundFont the set-up installs)."""
from __future__ import annotations

import os
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
    for i, (game, folder) in enumerate(tasks.SOUNDTRACKS.items()):
        for j in range(3):
            _tone(root / folder / f"track{j}.ogg", 150 + 90 * i + 10 * j, seconds=12.0, noise=0.02, seed=j)
    for i, (game, folder) in enumerate(tasks.EFFECTS.items()):
        for j in range(4):
            _tone(root / folder / f"fx{j}.wav", 900 + 120 * i + 9 * j, seconds=0.8)
    for rel in tasks.DRUM_KITS.values():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(FLUID, root / rel)
    return root
