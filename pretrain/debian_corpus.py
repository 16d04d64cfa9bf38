"""A pretraining corpus of recorded audio from Debian's game and sample-library data packages.

    python -m pretrain.debian_corpus OUT --install       # the `real` preset: install, list, measure
    python -m pretrain.debian_corpus OUT --install --prepare STORE  # ... and convert it once into a store
    python -m pretrain.debian_corpus OUT --packages lmms-common wesnoth-1.16-music   # installed ones only

Recorded music, sound effects and voices ship inside Debian's data packages of free games and
sample libraries. This module finds the chosen packages' audio through `dpkg -L`, measures
every file (soundfile), and writes into OUT (below). Nothing is installed without `--install`:
when a package is missing it says which, and how much apt-get would download, and stops
(exit 2); with `--install` it runs apt-get (root; otherwise it names the command to run).
OUT's files are written through a record of what this command wrote there
(`hear_slicer.written`): a `files.txt` or manifest of someone else's is never replaced (exit 2).

- `files.txt`: one absolute path per line, a `data.path` manifest (`python -m pretrain`,
  `python -m pretrain.prepare`);
- `manifest.csv` / `manifest.md`: per package its version, files, hours, licence (the
  `License:` fields of /usr/share/doc/<package>/copyright) and what it holds;
- with `--prepare STORE`: the prepared 16 kHz store of `files.txt` (`pretrain.prepare`).

The `real` preset (`PACKAGES`) was chosen by surveying candidates with `apt-get download` +
`dpkg -c` on 2026-12-04 (docs/pretrain.md, "A real-audio corpus"): 3,522 files, 12.99 hours
of recorded audio, 1.3 GB of downloads. Left out: supertuxkart-data (628 MB of download for
1.3 hours), openarena-data, 0ad-data, neverball-data, teeworlds-data and openttd-opensfx
(their sounds are inside archives, not files). The study's test tasks read
`freepats` and `sonic-pi-samples`, so `STUDY_TASK_SOURCES` keeps them out of any corpus the
studies train on (`check_disjoint`).
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hear_slicer.written import WrittenFiles

from .errors import UsageError, run_command
from .runlog import printable

__all__ = ["PACKAGES", "STUDY_TASK_SOURCES", "AUDIO_EXTENSIONS", "CorpusError", "PackageAudio",
           "check_packages", "check_disjoint", "package_files", "package_licence", "build_corpus", "main"]

PACKAGES: dict[str, str] = {
    "wesnoth-1.16-music": "orchestral game music (Battle for Wesnoth), 41 tracks",
    "warzone2100-music": "electronic and orchestral game music (Warzone 2100), 30 Opus tracks",
    "hedgewars-data": "game music, sound effects and many recorded character voices (Hedgewars)",
    "megaglest-data": "game music, unit voices and effects (MegaGlest)",
    "freedroidrpg-data": "game music and sound effects (FreedroidRPG)",
    "supertux-data": "game music and sound effects (SuperTux)",
    "lincity-ng-data": "city ambience and effects (LinCity-NG)",
    "lmms-common": "instrument, drum and effect samples (LMMS sample library)",
    "wesnoth-1.16-data": "sound effects and voices (Battle for Wesnoth)",
    "extremetuxracer-data": "game music and effects (Extreme Tux Racer)",
    "frozen-bubble-data": "game music and effects (Frozen Bubble)",
}
"""The `real` preset: package -> what it holds (surveyed 2026-12-04; module docstring)."""

STUDY_TASK_SOURCES = ("freepats", "sonic-pi-samples")
"""Packages the study's test tasks are built from: a corpus the studies train on must not hold them."""

AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "oga", "opus")


class CorpusError(UsageError):
    """A package name, an installation or a listing that cannot make a corpus; the message says why (exit 2)."""


@dataclass
class PackageAudio:
    package: str
    version: str
    files: list[Path]
    seconds: float
    unreadable: list[str]
    licence: str
    holds: str


def check_packages(packages: list[str]) -> list[str]:
    """`packages`, each a valid Debian name, each once; raises CorpusError naming the offender."""
    if not packages:
        raise CorpusError("--packages: give at least one package")
    for p in packages:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", p):
            raise CorpusError(f"--packages: {p!r} is not a Debian package name (lower-case letters, digits, + - .)")
    if len(set(packages)) != len(packages):
        raise CorpusError(f"--packages: {sorted(p for p in packages if packages.count(p) > 1)} given twice")
    return packages


def check_disjoint(packages: list[str]) -> None:
    """Refuse a corpus for the studies that holds a source of the study's test tasks."""
    shared = sorted(set(packages) & set(STUDY_TASK_SOURCES))
    if shared:
        raise CorpusError(f"packages {shared} are sources of the study's test tasks "
                          f"({', '.join(STUDY_TASK_SOURCES)}); a study corpus must stay disjoint from them")


def _run(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="surrogateescape")
    except FileNotFoundError:
        raise CorpusError(f"{cmd[0]} not found: this needs a Debian/Ubuntu system (dpkg, apt-get)") from None
    if done.returncode != 0:
        raise CorpusError(f"{' '.join(cmd)} failed (exit {done.returncode}): {done.stderr.strip()[-400:]}")
    return done.stdout


def installed_version(package: str) -> str | None:
    """The installed version of `package`, None when it is not installed."""
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", package], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.startswith("install ok installed"):
        return None
    return done.stdout.split("\t", 1)[1]


def install_plan(packages: list[str]) -> tuple[int, int] | None:
    """What `apt-get install` would download for `packages` (dependencies included): (package files,
    bytes), from `apt-get --print-uris` (no root, nothing fetched); None when apt-get cannot tell
    (no package lists yet, an unknown package, no apt-get)."""
    try:
        done = subprocess.run(["apt-get", "install", "--print-uris", "-qq", "--no-install-recommends", *packages],
                              capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    except OSError:
        return None
    if done.returncode != 0:
        return None
    sizes = [int(f[2]) for f in (line.split() for line in done.stdout.splitlines())
             if len(f) >= 3 and f[0].startswith("'") and f[2].isdigit()]
    return len(sizes), sum(sizes)


def install(packages: list[str], allowed: bool = False) -> None:
    """Install the missing `packages` with apt-get, only when `allowed` (`--install`) and as root.

    Otherwise a CorpusError (exit 2) says which packages are missing and how much apt-get would
    download, and that nothing was installed."""
    missing = [p for p in packages if installed_version(p) is None]
    if not missing:
        return
    command = f"apt-get install -y --no-install-recommends {' '.join(missing)}"
    plan = install_plan(missing)
    size = (f"apt-get would download {plan[1] / 1e6:,.0f} MB in {plan[0]} package file(s), dependencies included"
            if plan else "apt-get cannot tell the download size now (no package lists: apt-get update; the `real` "
            "preset is about 1.3 GB)")
    what = f"{len(missing)} package(s) not installed: {' '.join(missing)}; {size}"
    if not allowed:
        raise CorpusError(f"{what}. Nothing was installed: pass --install to install them with apt-get (as root), "
                          f"or install them yourself: sudo {command}")
    if os.geteuid() != 0:
        raise CorpusError(f"{what}. --install needs root: run sudo {command}")
    print(f"[corpus] installing {what}", file=sys.stderr, flush=True)
    _run(["apt-get", "update", "-qq"])
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(command.split(), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise CorpusError(f"{command} failed (exit {done.returncode}): {done.stderr.strip()[-400:]}")


def package_files(package: str, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """The package's audio files (by extension) from `dpkg -L`: regular files, each once (links
    resolved), sorted."""
    exts = {"." + e.lower() for e in extensions}
    seen, files = set(), []
    for line in _run(["dpkg", "-L", package]).splitlines():
        path = Path(line.strip())
        if path.suffix.lower() not in exts or not path.is_file():
            continue
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            files.append(path)
    return sorted(files)


AUDIO_FILES = re.compile(r"(?i)sound|music|audio|voice|sample|sfx|\.(ogg|oga|wav|flac|opus)\b")


def package_licence(package: str, doc_root: Path = Path("/usr/share/doc")) -> str:
    """The licences of the package's audio, from its DEP-5 copyright file: the `License:` of each
    `Files:` paragraph that covers everything (`*`) or names sounds, music, voices or samples,
    most frequent first; all `License:` fields when none does; in a file that is not DEP-5, the
    licences it points to in /usr/share/common-licenses."""
    path = doc_root / package / "copyright"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"unknown ({path} not readable)"
    chosen, every = [], []
    for paragraph in re.split(r"\n\s*\n", text):
        licence = re.search(r"^License:[ \t]*(\S[^\n]*)$", paragraph, flags=re.M)
        if not licence:
            continue
        every.append(licence.group(1).strip())
        files = re.search(r"^Files:(.*(?:\n[ \t]+.*)*)", paragraph, flags=re.M)
        if files and (files.group(1).split() == ["*"] or AUDIO_FILES.search(files.group(1))):
            chosen.append(licence.group(1).strip())
    # not machine-readable (DEP-5): the licences it points to in /usr/share/common-licenses
    names = chosen or every or [n.rstrip(".,") for n in re.findall(r"/usr/share/common-licenses/([A-Za-z0-9.+-]+)", text)]
    if not names:
        return f"see {path}"
    counts = {n: names.count(n) for n in dict.fromkeys(names)}
    return "; ".join(sorted(counts, key=lambda n: -counts[n]))


def measure(package: str, holds: str = "") -> PackageAudio:
    """List and measure one installed package's audio."""
    import soundfile as sf

    version = installed_version(package)
    if version is None:
        raise CorpusError(f"{package} is not installed (pass --install to install it, or apt-get install {package})")
    files, seconds, unreadable = [], 0.0, []
    for path in package_files(package):
        try:
            info = sf.info(os.fsencode(path))
        except Exception as e:  # libsndfile's errors are RuntimeErrors of several kinds: listed, not fatal
            unreadable.append(f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            continue
        if info.frames <= 0 or info.samplerate <= 0:
            unreadable.append(f"{path}: empty")
            continue
        files.append(path)
        seconds += info.frames / info.samplerate
    return PackageAudio(package, version, files, seconds, unreadable, package_licence(package), holds)


OUTPUTS = ("files.txt", "manifest.csv", "manifest.md")
"""What `build_corpus` writes into OUT."""


def build_corpus(out: Path, packages: dict[str, str], install_missing: bool = False) -> list[PackageAudio]:
    """List and measure `packages` (missing ones installed only with `install_missing`); write files.txt and
    the manifests into `out`.

    File names are kept as the file system has them: a name that is not UTF-8 is written to
    files.txt as its bytes (read back by `pretrain.data`, which reads with `surrogateescape`).
    An existing files.txt or manifest is replaced only when this command wrote it (its
    record, `hear_slicer.written`); anything else is a ForeignFileError (exit 2), checked
    before installing or writing anything."""
    names = check_packages(list(packages))
    written = WrittenFiles(out, "pretrain.debian_corpus")
    written.check([out / n for n in OUTPUTS if (out / n).exists()], f"write the corpus list into {out}")
    install(names, allowed=install_missing)
    found = [measure(p, packages[p]) for p in names]
    empty = [a.package for a in found if not a.files]
    if empty:
        raise CorpusError(f"no readable audio files ({', '.join(AUDIO_EXTENSIONS)}) in {', '.join(empty)}")
    lines = [str(f) for a in found for f in a.files]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["package", "version", "files", "hours", "unreadable", "licence", "holds"])
    for a in found:
        w.writerow([a.package, a.version, len(a.files), f"{a.seconds / 3600:.3f}", len(a.unreadable), a.licence,
                    a.holds])
    for name, text in zip(OUTPUTS, ("\n".join(lines) + "\n", buf.getvalue(), manifest_markdown(found))):
        written.write(out / name, text.encode("utf-8", "surrogateescape"))
    return found


def manifest_markdown(found: list[PackageAudio]) -> str:
    rows = ["| package | version | files | hours | licence | holds |", "|---|---|---:|---:|---|---|"]
    for a in found:
        rows.append(f"| {a.package} | {a.version} | {len(a.files)} | {a.seconds / 3600:.2f} | {a.licence} | "
                    f"{a.holds} |")
    n, h = sum(len(a.files) for a in found), sum(a.seconds for a in found) / 3600
    rows.append(f"| **total** | | **{n}** | **{h:.2f}** | | |")
    bad = [u for a in found for u in a.unreadable]
    tail = ["", f"{len(bad)} file(s) libsndfile cannot read were left out:"] + [f"- {u}" for u in bad] if bad else []
    return "\n".join(["Recorded audio from Debian packages (`python -m pretrain.debian_corpus`).", ""] + rows + tail) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pretrain.debian_corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for files.txt and manifest.{csv,md}")
    ap.add_argument("--packages", nargs="+", default=None,
                    help="Debian packages to take audio from (default: the `real` preset, PACKAGES)")
    ap.add_argument("--install", action="store_true",
                    help="install missing packages with apt-get (root; the `real` preset is about 1.3 GB); without "
                         "it, missing packages are named with their download size and nothing is installed")
    ap.add_argument("--prepare", type=Path, default=None, metavar="STORE",
                    help="also convert files.txt into a prepared store (python -m pretrain.prepare)")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1) - 1),
                    help="processes for --prepare (default: CPU cores - 1)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--debug", action="store_true", help="print the traceback of an error")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error(f"--workers must be at least 1, got {args.workers}")
    packages = PACKAGES if args.packages is None else {p: PACKAGES.get(p, "") for p in args.packages}

    def body() -> None:
        found = build_corpus(args.out, packages, install_missing=args.install)
        print(printable(manifest_markdown(found)))
        print(f"wrote {args.out / 'files.txt'}, {args.out / 'manifest.csv'}, {args.out / 'manifest.md'}")
        if args.prepare:
            from .prepare import prepare

            info = prepare(args.out / "files.txt", args.prepare, workers=args.workers, extensions=AUDIO_EXTENSIONS,
                           progress=not args.no_progress)
            print(f"store {args.prepare}: {info['clips']} clips, {info['hours']:.2f} h")

    return run_command(body, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
