"""Command line: ``python -m eval_suites {run,list,report,embed,prepare}``.

    python -m eval_suites run MANIFEST [--models A B] [--tasks X Y] [--out DIR]
                                       [--tasks-root DIR] [--device cpu|cuda] [--shard K/N]
    python -m eval_suites list MANIFEST [--tasks-root DIR]
    python -m eval_suites report RESULTS_DIR
    python -m eval_suites embed MODULE --model CKPT --tasks-dir DIR [--device cuda]
                                       # heareval's embedding folders (eval_suites.core.heareval_embed)
    python -m eval_suites prepare lape ... # LAPE converters (eval_suites.lape)
    python -m eval_suites --debug ...      # errors with their traceback

Exit status (every command, :mod:`eval_suites.errors`): 0 when every selected cell is ``ok``,
1 when some cell failed, 2 for a bad command line, manifest, option or source folder (``list``:
also when it prints problems), 3 for input data that cannot be read (a task folder, a cache
entry) or an output that cannot be written (disk full, read-only folder; results written
before it are intact). An error is one ``error:`` line naming the input, without a traceback
unless ``--debug``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from eval_suites import quiet_heareval_imports
from eval_suites.core.manifest import check_inputs, load_manifest
from eval_suites.core.shards import parse_shard, shard_from_slurm
from eval_suites.errors import EXIT_USAGE, run_command

__all__ = ["build_parser", "main"]


def _add_manifest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", type=Path, help="YAML manifest (see docs/eval.md)")
    p.add_argument("--tasks-root", default=None,
                   help="folder holding the task folders (overrides the manifest's "
                        "tasks_root and its tasks_root_env variable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval_suites",
        description="Evaluate HEAR models on LAPE and HEAR tasks from one manifest.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="compute embeddings and score every unfinished cell")
    _add_manifest_args(run)
    run.add_argument("--models", nargs="+", default=None, help="only these model names")
    run.add_argument("--tasks", nargs="+", default=None, help="only these task names")
    run.add_argument("--out", type=Path, default=Path("eval_results"),
                     help="results folder (default: ./eval_results); rerunning with the "
                          "same folder resumes")
    run.add_argument("--device", default=None,
                     help="torch device for the models and the linear protocol "
                          "(default: cuda if available, else cpu)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument("--shard", default=None, metavar="K/N",
                     help="run only shard K of N (1 <= K <= N): a fixed block of the cells sorted by "
                          "name; shards may write one --out folder at the same time, and `report` "
                          "merges them. Default: from SLURM_ARRAY_TASK_ID/_COUNT/_MIN in a SLURM "
                          "array job, else every cell")

    lst = sub.add_parser("list", help="show the manifest's models, tasks and protocols, and the problems `run` would "
                                      "meet (each model is loaded with its checkpoint and options)")
    _add_manifest_args(lst)

    rep = sub.add_parser("report", help="rebuild results.csv/.md/.png from a results folder")
    rep.add_argument("results_dir", type=Path)

    from eval_suites.core.heareval_embed import add_embed_parser

    add_embed_parser(sub)

    try:  # the LAPE converters add `prepare lape`; the CLI works without them
        from eval_suites.lape import add_prepare_parser
    except ImportError:
        add_prepare_parser = None
    if add_prepare_parser is not None:
        prep = sub.add_parser("prepare", help="convert datasets into HEAR task folders")
        add_prepare_parser(prep.add_subparsers(dest="what", required=True))
    return parser


def _cmd_run(args) -> int:
    from eval_suites.core.report import print_summary
    from eval_suites.core.runner import manifest_cells, run_manifest

    shard = parse_shard(args.shard) if args.shard is not None else shard_from_slurm(os.environ)  # ShardError: exit 2
    manifest = load_manifest(args.manifest, tasks_root=args.tasks_root)
    manifest = manifest.select(args.models, args.tasks)
    if args.device is not None:
        import dataclasses
        manifest.linear = dataclasses.replace(manifest.linear, device=args.device)
    cells = manifest_cells(manifest, shard)
    if shard is not None:
        print(f"shard {shard} ({shard.source}): {len(cells)} of {len(manifest_cells(manifest))} cells; "
              f"after every shard has finished, `python -m eval_suites report {args.out}` merges them",
              flush=True)
    results = run_manifest(manifest, args.out, progress=not args.no_progress, device=args.device, shard=shard)
    selected = {(m.name, t.name, p) for m, t, p in cells}
    mine = [r for r in results if (r.model, r.task, r.protocol) in selected]
    return 1 if print_summary(mine, args.out) else 0


def _cmd_list(args) -> int:
    manifest = load_manifest(args.manifest, tasks_root=args.tasks_root)
    print(f"manifest {manifest.source}")
    print(f"tasks root {manifest.tasks_root}")
    print("models:")
    for m in manifest.models:
        ckpt = f" checkpoint={m.checkpoint}" if m.checkpoint else ""
        opts = f" options={m.options}" if m.options else ""
        print(f"  {m.name}: module={m.module}{ckpt}{opts}")
    print("tasks:")
    for t in manifest.tasks:
        state = "ok" if (t.path / "task_metadata.json").is_file() else "MISSING"
        own = f"  own settings {t.settings}" if t.settings else ""
        print(f"  {t.name} [{t.suite}] {', '.join(t.protocols)}  {t.path} ({state}){own}")
    print(f"protocols: linear {manifest.linear}; heareval {manifest.heareval}; knn {manifest.knn}")
    problems = check_inputs(manifest, load_models=True)  # each model loaded as `run` loads it
    for p in problems:
        print(f"problem: {p}")
    return EXIT_USAGE if problems else 0


def _cmd_report(args) -> int:
    from eval_suites.core.report import write_report

    paths = write_report(args.results_dir)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    quiet_heareval_imports()
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"run": _cmd_run, "list": _cmd_list, "report": _cmd_report}
    handler = handlers.get(args.command) or args.func  # args.func: embed's and prepare's
    return run_command(lambda: handler(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
