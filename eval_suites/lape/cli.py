"""``python -m eval_suites prepare lape``: convert LAPE's datasets into HEAR task folders.

Two forms::

    prepare lape --task sc_v1 --source /data/speech_commands_v0.01 --out tasks/
    prepare lape --manifest eval_suites/manifests/lape.yaml --sources-root /data [--out tasks/]

The second prepares every LAPE task the manifest lists (recognised by its folder name,
e.g. ``lape_sc_v1-v1-full``), reading each dataset from ``<sources-root>/<folder>`` with
the folder names of :data:`eval_suites.lape.tasks.SOURCE_DIRS`, and writes into the
manifest's tasks root (``--out`` or ``--tasks-root`` overrides it). Every source layout
is checked before any audio is converted.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from eval_suites.errors import UsageError
from eval_suites.lape.tasks import SOURCE_DIRS, TASKS, VARIANTS, converter

__all__ = ["add_prepare_parser", "prepare", "prepare_manifest"]


def add_prepare_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``lape`` command to ``subparsers`` (the sub-commands of ``prepare``).

    The parsed namespace's ``func(args) -> int`` runs it.
    """
    p = subparsers.add_parser(
        "lape", help="convert LAPE's 11 datasets (as distributed) into HEAR task folders",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", choices=[*TASKS, *VARIANTS],
                       help="one LAPE task (lbs_spk: speaker-ID variant of lbs)")
    which.add_argument("--manifest", type=Path, help="prepare every LAPE task of this manifest")
    p.add_argument("--source", type=Path, help="dataset root (with --task)")
    p.add_argument("--sources-root", type=Path,
                   help=f"folder holding the datasets (with --manifest): "
                        f"{', '.join(sorted(set(SOURCE_DIRS.values())))}")
    p.add_argument("--out", "--tasks-root", dest="out", type=Path,
                   help="tasks folder to write into (with --manifest: default its tasks root)")
    p.add_argument("--workers", type=int, default=4, help="parallel reader/writer threads")
    p.set_defaults(func=_run)
    return p


def prepare(task: str, source: str | Path, out: str | Path, workers: int = 4,
            progress: bool = True) -> Path:
    """Convert one LAPE task; returns the task folder."""
    return converter(task).convert(source, out, workers=workers, progress=progress)


def prepare_manifest(manifest: str | Path, sources_root: str | Path, out: str | Path | None = None,
                     workers: int = 4, progress: bool = True) -> list[Path]:
    """Convert every LAPE task listed in ``manifest``; returns their folders.

    All source layouts are checked first, so a missing dataset fails in seconds, not
    after hours of converting the others.
    """
    from eval_suites.core.manifest import ManifestError, load_manifest

    m = load_manifest(manifest, tasks_root=out)
    by_folder = {converter(k).metadata().folder_name: k for k in [*TASKS, *VARIANTS]}
    jobs = []
    for t in m.tasks:
        key = by_folder.get(t.path.name)
        if key is None:
            raise ManifestError(f"manifest {manifest}", [f"task {t.name!r} ({t.path.name}) is not a LAPE task "
                                                         f"folder; expected one of {sorted(by_folder)}"])
        jobs.append((key, Path(sources_root) / SOURCE_DIRS[key], t.path.parent))
    for key, source, _ in jobs:
        conv = converter(key)
        if not source.is_dir():
            raise conv.layout_error(f"dataset folder {source} not found; put the dataset there "
                                    f"(--sources-root/{SOURCE_DIRS[key]}).")
        conv.check_layout(source)
    return [prepare(key, source, dest, workers, progress) for key, source, dest in jobs]


def _run(args: argparse.Namespace) -> int:
    """Run ``prepare lape``: 0 on success; a bad command line, manifest or source layout is a
    :class:`~eval_suites.errors.UsageError` (``LayoutError``, ``ManifestError``: exit 2), left to
    the command line's error path (:func:`eval_suites.errors.run_command`)."""
    if args.task:
        if args.source is None or args.out is None:
            raise UsageError("prepare lape --task needs --source DIR and --out TASKS_DIR")
        print(prepare(args.task, args.source, args.out, args.workers))
    else:
        if args.sources_root is None:
            raise UsageError("prepare lape --manifest needs --sources-root DIR")
        for path in prepare_manifest(args.manifest, args.sources_root, args.out, args.workers):
            print(path)
    return 0
