"""The Debian packages the recorded development suite is built from, and how to get them.

Every package here holds recordings of real sound (people speaking, recorded instruments and
drum kits, recorded music and effects). None is a source of any pretraining corpus of this
project (``pretrain.debian_corpus.PACKAGES``, the study corpus's ``freepats`` and
``sonic-pi-samples``, the FluidR3 soundfont; ``tests/test_recorded_suite.py`` checks it), and
none is a package the team keeps for an independent evaluation (not named in this project).

Nothing is installed unless asked: :func:`missing_packages` names what a build needs, and
``python -m eval_suites.recorded --install`` runs ``apt-get install`` (root) after saying what
and how large; without it the command stops and prints the ``apt-get`` line.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from eval_suites.errors import UsageError

__all__ = ["Package", "PACKAGES", "RecordedSourceError", "missing_packages", "install_command",
           "download_megabytes", "install", "corpus_overlap"]


class RecordedSourceError(UsageError):
    """A package the suite needs is missing (and was not to be installed), or cannot be installed: exit 2."""


@dataclass(frozen=True)
class Package:
    name: str
    holds: str
    licence: str       # the License: fields of /usr/share/doc/<name>/copyright (read 2026-12-07)
    marker: str        # a path (relative to the file-system root) that exists once it is installed
    megabytes: int     # download size (apt-cache show, 2026-12-07)
    also: tuple[str, ...] = ()  # other paths the suite reads from it

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.marker, *self.also)


PACKAGES: dict[str, Package] = {p.name: p for p in [
    Package("asterisk-core-sounds-en-wav", "telephone prompts, US English, voice 'Allison'",
            "CC-BY-3.0, CC-BY-SA-3.0, GPL-2+", "usr/share/asterisk/sounds/en_US_f_Allison", 18),
    Package("asterisk-core-sounds-es-wav", "telephone prompts, Mexican Spanish, voice 'Allison'",
            "CC-BY-3.0, CC-BY-SA-3.0, GPL-2+", "usr/share/asterisk/sounds/es_MX_f_Allison", 24),
    Package("asterisk-core-sounds-fr-wav", "telephone prompts, Canadian French, voice 'June'",
            "CC-BY-3.0, CC-BY-SA-3.0, GPL-2+", "usr/share/asterisk/sounds/fr_CA_f_June", 19),
    Package("asterisk-core-sounds-it-wav", "telephone prompts, Italian, voice 'Carlo'",
            "CC-BY-3.0, CC-BY-SA-3.0, GPL-2+", "usr/share/asterisk/sounds/it_IT_m_Carlo", 18),
    Package("asterisk-core-sounds-ru-wav", "telephone prompts, Russian, voice 'IvrvoiceRU'",
            "CC-BY-3.0, CC-BY-SA-3.0, GPL-2+", "usr/share/asterisk/sounds/ru_RU_f_IvrvoiceRU", 19),
    Package("asterisk-prompt-it-menardi-wav", "telephone prompts, Italian, voice 'Menardi'",
            "CC-SA-BY-3.0, LGPL-2.1", "usr/share/asterisk/sounds/it_IT_f_Menardi", 18),
    Package("klettres-data", "letters and syllables spoken by native speakers of 20 languages (KLettres)",
            "CC0-1.0, GFDL-NIV-1.2+, GPL-2+, LGPL-2", "usr/share/klettres", 40),
    Package("tuxpaint-stamps-default", "spoken names of Tux Paint's stamps in 9+ languages; animal, "
            "household and instrument recordings", "GPL-2", "usr/share/tuxpaint/stamps", 161),
    Package("tuxpaint-data", "Tux Paint's tool sounds", "GPL-2, GPL-2+, LGPL-2.1, custom, gpl-2+, public-domain", "usr/share/tuxpaint/sounds", 8),
    Package("colobot-common-sounds", "Colobot's music and sound effects", "BSD-2-clause, BSD-2-clause or ISC, BSD-3-clause, GPL-2+, GPL-3+, ISC, LGPL-2.1+",
            "usr/share/games/colobot/music", 58,
            also=("usr/share/games/colobot/sounds",)),
    Package("drascula-music", "Drascula's soundtrack", "Drascula-License",
            "usr/share/scummvm/drascula/audio", 35),
    Package("hyperrogue-music", "HyperRogue's soundtrack", "BSD-2-Clause, CC-BY-3.0, CC-BY-SA-3.0, CC-BY-SA-4.0, CC0-1.0, GPL-2+, ISC, MIT, zlib",
            "usr/share/hyperrogue/music", 61),
    Package("planetblupi-music-ogg", "Planet Blupi's soundtrack", "Expat, GPL-3+", "usr/share/planetblupi/music", 58),
    Package("singularity-music", "Endgame: Singularity's soundtrack", "no License: field; see its copyright file",
            "usr/share/games/singularity/music", 50),
    Package("avldrums.lv2-soundfont", "two multi-sampled recorded drum kits (AVL Black Pearl, Red Zeppelin) as "
            "SoundFonts", "CC-BY-SA-3.0, Expat, GPL-2+, ISC, LGPL-2+, NTP~disclaimer", "usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2", 25,
            also=("usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2",)),
    Package("heroes-sound-effects", "Heroes' sound effects", "GPL-2+", "usr/share/games/heroes/sfx", 1),
    Package("pingus-data", "Pingus' sound effects", "no License: field; see its copyright file", "usr/share/games/pingus/data/sounds", 12),
    Package("ufoai-sound", "UFO: Alien Invasion's sound effects in folders (footsteps, doors, weapons, impacts, "
            "soldiers, ambience, ...), one zip archive", "CC-BY-3.0, CC-BY-SA-3.0, GPL-2, GPL-2+, public-domain",
            "usr/share/games/ufoai/base/0snd.pk3", 19),
    Package("warmux-data", "WarMUX's sound effects (weapons, voices, misc)", "no License: field; see its copyright file",
            "usr/share/games/warmux/sound", 99),
    Package("scorched3d-data", "Scorched 3D's sound effects (explosions, shots, ...)", "CC-BY-SA-3, Expat, GPL-2+, public-domain",
            "usr/share/games/scorched3d/data/globalmods", 32),
    Package("btanks-data", "Battle Tanks' sound effects", "Battle-Tanks-License, GPL-2+, LGPL-2.1+, LGPL-any, "
            "Scriptics-Corporation-License, other, public-domain", "usr/share/games/btanks/data/sounds", 26),
    Package("minetest-data", "Minetest Game's sound effects (footsteps on 11 materials, digging, doors, ...)",
            "Apache-2.0, BSD-2-clause, BSL-1.0, CC-BY-3.0, CC-BY-SA-3.0, CC-BY-SA-4.0, CC0-1.0, Expat, GPL-2+, ISC, "
            "LGPL-2.1+, MIT, OpenSSL-License, cryptsoft-License, public-domain, zlib",
            "usr/share/games/minetest/games/minetest_game/mods", 4),
]}
"""Package -> what it holds, its licence, a path that shows it is installed, its download size."""


def missing_packages(names: list[str], root: Path = Path("/")) -> list[str]:
    """The packages among `names` whose marker path is absent under `root`."""
    return [n for n in names if not (root / PACKAGES[n].marker).exists()]


def download_megabytes(names: list[str]) -> int:
    return sum(PACKAGES[n].megabytes for n in names)


def install_command(names: list[str]) -> str:
    return "apt-get install -y " + " ".join(names)


def install(names: list[str]) -> None:
    """apt-get install `names` (root only), after saying what and how large."""
    import os

    if os.geteuid() != 0:
        raise RecordedSourceError(f"installing {len(names)} package(s) needs root; run: sudo {install_command(names)}")
    print(f"[recorded] installing {len(names)} package(s), about {download_megabytes(names)} MB to download: "
          f"{' '.join(names)}", flush=True)
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *names]):
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            raise RecordedSourceError(f"{' '.join(cmd)} failed (exit {done.returncode}): {done.stderr.strip()[-400:]}")


def corpus_overlap(files: list[str], fs_root: Path = Path("/")) -> list[str]:
    """The entries of a pretraining corpus listing (`files`) that are audio the suite reads: under
    any of its packages' paths, after symbolic links are followed. Empty for a disjoint corpus."""
    roots = [(fs_root / p).resolve() for pkg in PACKAGES.values() for p in pkg.paths]
    return [f for f in files if any(Path(f).resolve() == r or Path(f).resolve().is_relative_to(r) for r in roots)]
