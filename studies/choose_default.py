"""Choose the shipped default model among candidate checkpoints, on validation data.

    python -m studies.choose_default slicer=runs/default_a/a.pt slicer_time_only=runs/default_b/b.pt

Each candidate is scored by the linear protocol on the demo tasks (``small`` preset,
``eval_suites/manifests/demo.yaml``) at probe seeds 0, 1, 2. The choice is the candidate
with the best mean **validation** score (of the epoch the protocol selects, over tasks and
probe seeds); test scores are printed beside it, for the report only, never for the choice.
Writes ``<out>/choice.md`` and ``<out>/choice.csv``.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from eval_suites import quiet_heareval_imports
from eval_suites.core.manifest import ModelSpec
from eval_suites.errors import run_command
from eval_suites.synthetic.demo_data import build_demo

from .mini_lape import DEMO_MANIFEST, evaluate, scores, task_names

__all__ = ["main"]


def _candidate(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise argparse.ArgumentTypeError(f"expected NAME=CHECKPOINT (name: letters, digits, _ . -), got {text!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"checkpoint of {name!r} not found: {path}")
    return name, Path(path).resolve()


def main(argv: list[str] | None = None) -> int:
    quiet_heareval_imports()
    ap = argparse.ArgumentParser(prog="python -m studies.choose_default", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidates", nargs="+", type=_candidate, metavar="NAME=CHECKPOINT")
    ap.add_argument("--root", type=Path, default=Path("demo_data"), help="demo data (small preset; built if missing)")
    ap.add_argument("--out", type=Path, default=Path("results/default_choice"), help="results folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="linear-probe seeds (default 0 1 2)")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = ap.parse_args(argv)
    names = [n for n, _ in args.candidates]
    if len(set(names)) != len(names):
        ap.error(f"candidate names must differ, got {names}")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        ap.error("--seeds must be distinct integers >= 0")
    # exit 2 for a bad manifest, 3 for unreadable data or outputs: one error line (eval_suites.errors)
    return run_command(lambda: _choose(args, names), debug=args.debug)


def _choose(args: argparse.Namespace, names: list[str]) -> int:
    build_demo(args.root, preset="small", progress=not args.no_progress)
    models = [ModelSpec(name=n, module="hear_slicer", checkpoint=p, options={}) for n, p in args.candidates]
    evaluate(models, args.root / "tasks", args.out, args.seeds, None, not args.no_progress,
             args.out / "embeddings", DEMO_MANIFEST)
    tasks = task_names(DEMO_MANIFEST, args.root / "tasks", None)
    long = scores(args.out, names, tasks, args.seeds)
    if (long.status != "ok").any():
        print(long[long.status != "ok"].to_string(), file=sys.stderr)
        return 1
    per_task = long.groupby(["model", "task"])[["valid", "value"]].mean().unstack("task")
    overall = long.groupby("model")[["valid", "value"]].mean()
    chosen = overall["valid"].idxmax()
    lines = ["| candidate | mean validation | mean test | " + " | ".join(f"{t} (valid / test)" for t in tasks) + " |",
             "|---|---|---|" + "---|" * len(tasks)]
    for n in names:
        cells = [f"{per_task.loc[n, ('valid', t)]:.3f} / {per_task.loc[n, ('value', t)]:.3f}" for t in tasks]
        mark = " (chosen)" if n == chosen else ""
        lines.append(f"| {n}{mark} | {overall.loc[n, 'valid']:.3f} | {overall.loc[n, 'value']:.3f} | "
                     + " | ".join(cells) + " |")
    text = (f"Linear probe on the demo tasks, probe seeds {args.seeds}; chosen by the mean validation score "
            f"(test shown for the report only).\n\n" + "\n".join(lines) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "choice.md").write_text(text)
    long.to_csv(args.out / "choice.csv", index=False)
    print(text)
    print(f"chosen: {chosen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
