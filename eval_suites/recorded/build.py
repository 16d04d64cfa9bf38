"""Write the recorded suite's task folders from the installed packages (resumable, never deleting).

    python -m eval_suites.recorded                       # all tasks into recorded_data/tasks
    python -m eval_suites.recorded --install             # ... installing missing packages first (root)
    python -m eval_suites.recorded --root DIR --tasks speakers drums

A task folder that is complete and was written by the same recipe (its ``task_metadata.json``
notes: packages and their versions, recipe version) is kept as it is; one written by another
recipe or another package version is refused with its name, never overwritten (move it away).
A partial folder (an interrupted build) is resumed clip by clip (``TaskWriter``).
``<root>/SOURCES.md`` lists every task built under the root (by this run or an earlier one) with its
packages, versions, licences and clip counts.

Nothing foreign is replaced or deleted: every file goes through the builder's record
``<root>/.hear-slicer-written.jsonl`` (:mod:`hear_slicer.written`: names and content hashes). A
partial folder is written into only when the record proves every file in it the builder's, and
``SOURCES.md`` is replaced only when the record proves it; anything else in the way (a user's
file in a task folder, at a clip's name or not, a ``SOURCES.md`` of one's own) is refused with
one line naming it, exit 2, before anything is written.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from eval_suites.errors import UsageError, run_command
from eval_suites.hear_format.task import METADATA_FILE, TaskMetadata, TaskWriter, load_task
from eval_suites.recorded.sources import (PACKAGES, RecordedSourceError, download_megabytes, install,
                                          install_command, missing_packages)
from eval_suites.recorded.tasks import SPLITS, TASKS, Item, TaskSpec, metadata, plan_task, read_clip
from eval_suites.synthetic import synth
from hear_slicer.progress import Progress
from hear_slicer.written import ForeignFileError, WrittenFiles

__all__ = ["DEFAULT_ROOT", "build_suite", "build_task", "main"]

DEFAULT_ROOT = Path("recorded_data")
SILENT_PEAK = 1e-4
SAMPLE_RATE = 16000


class RecipeMismatch(UsageError):
    """A complete task folder written by another recipe or package version: exit 2, nothing touched."""


def package_versions(names: list[str], fs_root: Path) -> dict[str, str]:
    """Installed versions (dpkg) when building from the real file system; 'files under ROOT' otherwise."""
    if fs_root.resolve() != Path("/"):
        return {n: f"files under {fs_root}" for n in names}
    out = {}
    for n in names:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", n], capture_output=True, text=True)
        out[n] = done.stdout.strip() if done.returncode == 0 else "?"
    return out


def _render_drums(items: list[Item], seconds: float) -> dict[str, np.ndarray]:
    """Drum notes rendered per kit in one fluidsynth run each (reverb and chorus off)."""
    out = {}
    by_kit: dict[Path, list[Item]] = {}
    for it in items:
        by_kit.setdefault(it.path, []).append(it)
    for kit, its in by_kit.items():
        # an empty first clip: the first note of a render is never one of the task's
        clips = [[]] + [[synth.Note(0, it.note[0], it.note[1], 0.0, 0.5, channel=0)] for it in its]
        audios = synth.fluidsynth_render_many(clips, seconds, SAMPLE_RATE, soundfont=kit, gain=0.8, gap=3.0)[1:]
        for it, audio in zip(its, audios):
            out[it.name] = audio
    return out


def built_counts(name: str, md: TaskMetadata, tasks_dir: Path) -> dict | None:
    """The clip counts of task `name`'s complete folder under `tasks_dir` (None: not built, or partial);
    RecipeMismatch if it was written by another recipe or package version than `md` says
    (:func:`metadata` of the task with the versions of :func:`package_versions`)."""
    task_dir = tasks_dir / md.folder_name
    if not (task_dir / METADATA_FILE).is_file():
        return None
    have = json.loads((task_dir / METADATA_FILE).read_text()).get("notes")
    if have != json.loads(json.dumps(md.notes)):
        raise RecipeMismatch(f"{task_dir} holds task {name} written by another recipe or package version "
                             f"({have}); move it away or choose another --root (nothing was changed)")
    task = load_task(task_dir)
    return {s: sum(task.label_counts(s).values()) for s in SPLITS}


def _listed(tasks_dir: Path, versions: dict[str, str], known: dict[str, dict]) -> dict[str, dict]:
    """Every task of the suite with a complete folder of this recipe under `tasks_dir`, for SOURCES.md
    (a ``--tasks`` build lists the tasks built before it too; one of another recipe is not listed);
    `known`: the counts of the tasks this build wrote or kept, not read again."""
    out = {}
    for name, spec in TASKS.items():
        try:
            counts = known[name] if name in known else built_counts(name, metadata(spec, versions), tasks_dir)
        except RecipeMismatch:
            continue
        if counts is not None:
            out[name] = counts
    return out


def build_task(spec: TaskSpec, tasks_dir: Path, written: WrittenFiles, versions: dict[str, str],
               fs_root: Path = Path("/"), progress: bool = True) -> dict:
    """Write one task folder (or keep a complete one of the same recipe), every file through `written`
    (the root's record); returns its clip counts."""
    md = metadata(spec, versions)
    task_dir = tasks_dir / md.folder_name
    built = built_counts(spec.name, md, tasks_dir)
    if built is not None:
        return built
    plan = plan_task(spec, fs_root)
    empty = [s for s in SPLITS if not plan[s]]
    if empty:
        raise RecordedSourceError(f"task {spec.name}: no clips for split(s) {empty} under {fs_root} "
                                  f"(packages {', '.join(spec.packages)} installed?)")
    writer = TaskWriter(task_dir, md, sample_rate=SAMPLE_RATE, written=written)
    todo = [(s, it) for s in SPLITS for it in plan[s] if not writer.has_clip(s, it.name)]
    rendered = _render_drums([it for _, it in todo if it.note], spec.seconds) if any(it.note for _, it in todo) else {}
    skipped = 0
    bar = Progress(len(todo), f"recorded {spec.name}", unit="clip", enabled=progress)
    for split, it in todo:
        audio = rendered[it.name] if it.note else read_clip(it, spec.seconds, SAMPLE_RATE)
        if float(np.max(np.abs(audio))) < SILENT_PEAK:
            skipped += 1  # a key the kit does not map, or a silent file
        else:
            writer.add_clip(split, it.name, audio, SAMPLE_RATE, [it.label])
        bar.update()
    writer.finalize()
    counts = {s: len(writer.clip_names(s)) for s in SPLITS}
    bar.close(f"{counts} clips in {task_dir}" + (f" ({skipped} silent, left out)" if skipped else ""))
    return counts


def sources_markdown(counts: dict[str, dict], versions: dict[str, str]) -> str:
    rows = ["# The recorded development suite's sources", "",
            "Written by `python -m eval_suites.recorded`. Every clip is a recording of real sound from these "
            "Debian packages (licences: the `License:` fields of /usr/share/doc/<package>/copyright).", "",
            "| task | packages | train | valid | test |", "|---|---|---:|---:|---:|"]
    for name, c in counts.items():
        rows.append(f"| {name} | {', '.join(TASKS[name].packages)} | {c['train']} | {c['valid']} | {c['test']} |")
    rows += ["", "| package | version | licence | holds |", "|---|---|---|---|"]
    for p in sorted({p for n in counts for p in TASKS[n].packages}):
        rows.append(f"| {p} | {versions.get(p, '?')} | {PACKAGES[p].licence} | {PACKAGES[p].holds} |")
    return "\n".join(rows) + "\n"


def build_suite(root: Path = DEFAULT_ROOT, tasks: list[str] | None = None, fs_root: Path = Path("/"),
                do_install: bool = False, progress: bool = True) -> dict[str, dict]:
    """Every task (or `tasks`) into ``<root>/tasks``; returns task -> split -> clips. A file in the way that
    the builder's record does not prove its own: UsageError naming it (exit 2)."""
    try:
        return _build_suite(root, tasks, fs_root, do_install, progress)
    except ForeignFileError as e:
        raise UsageError(str(e)) from e


def _build_suite(root: Path, tasks: list[str] | None, fs_root: Path, do_install: bool, progress: bool
                 ) -> dict[str, dict]:
    names = list(TASKS) if not tasks else tasks
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise UsageError(f"--tasks: {unknown} are not tasks of the recorded suite; choose from {list(TASKS)}")
    written = WrittenFiles(root, "the recorded-suite builder")
    sources = root / "SOURCES.md"
    if sources.exists() or sources.is_symlink():  # replaced at the end: checked before anything is done
        written.check([sources], f"replace {sources}")
    needed = sorted({p for t in names for p in TASKS[t].packages})
    missing = missing_packages(needed, fs_root)
    if missing:
        if not do_install or fs_root.resolve() != Path("/"):
            raise RecordedSourceError(
                f"the recorded suite needs {len(missing)} package(s) not installed under {fs_root}: {' '.join(missing)} "
                f"(about {download_megabytes(missing)} MB to download). Install them with: sudo "
                f"{install_command(missing)}  (or run again with --install)")
        install(missing)
    versions = package_versions(sorted({p for t in TASKS.values() for p in t.packages}), fs_root)
    counts = {name: build_task(TASKS[name], root / "tasks", written, versions, fs_root, progress) for name in names}
    written.write(sources, sources_markdown(_listed(root / "tasks", versions, counts), versions).encode())
    return counts


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m eval_suites.recorded", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                    help="output folder; task folders go to ROOT/tasks (default recorded_data)")
    ap.add_argument("--tasks", nargs="+", default=None, metavar="TASK", help=f"only these tasks ({', '.join(TASKS)})")
    ap.add_argument("--install", action="store_true",
                    help="apt-get install the missing packages first (root; says what and how large)")
    ap.add_argument("--fs-root", type=Path, default=Path("/"),
                    help="where the packages' files are (default /; tests use a folder of small files)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (line-based output only)")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        if not args.fs_root.is_dir():
            raise UsageError(f"--fs-root {args.fs_root}: not a folder")
        if args.root.exists() and not args.root.is_dir():
            raise UsageError(f"--root {args.root}: exists and is not a folder")
        counts = build_suite(args.root, args.tasks, args.fs_root, args.install, not args.no_progress)
        total = sum(sum(c.values()) for c in counts.values())
        print(f"recorded suite: {len(counts)} tasks, {total} clips in {args.root / 'tasks'} "
              f"(sources: {args.root / 'SOURCES.md'})")
        return 0

    return run_command(go, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
