"""Choose the shipped default model among candidate checkpoints, on validation data.

    python -m studies.choose_default default=hear_slicer/assets/default.pt slicer=runs/lc/slicer/slicer.pt ...

Each candidate is scored by the linear protocol at probe seeds 0, 1, 2 on the validation
splits of each suite: by default the demo tasks (``small`` preset, ``demo.yaml``) and the
study's tasks (``study`` preset, ``study.yaml``). A suite's score is its mean validation score
(of the epoch the protocol selects, over tasks and probe seeds); the choice is the candidate
with the best mean of the suites' scores, each suite weighing the same. Test scores are printed
beside it, for the report only, never for the choice. The chosen checkpoint at random init
(``load_model(random_init=True)`` with its normalisation) is scored too, as the reference the
README compares the default with; it is never a candidate.

Writes ``<out>/choice.md`` and ``<out>/choice.csv``; the cells of suite S are in ``<out>/<S>/``.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from eval_suites import quiet_heareval_imports
from eval_suites.core.manifest import ModelSpec
from eval_suites.errors import run_command
from eval_suites.synthetic.demo_data import PRESETS, build_demo

from .mini_lape import evaluate, manifest_for, scores, task_names

__all__ = ["main", "choose"]

REFERENCE = "random_init"
DEFAULT_SUITES = ("demo:small:demo_data", "study:study:demo_data_study")


def _candidate(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise argparse.ArgumentTypeError(f"expected NAME=CHECKPOINT (name: letters, digits, _ . -), got {text!r}")
    if name == REFERENCE:
        raise argparse.ArgumentTypeError(f"candidate name {name!r} is the reference's; choose another")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"checkpoint of {name!r} not found: {path}")
    return name, Path(path).resolve()


def _suite(text: str) -> tuple[str, str, Path]:
    parts = text.split(":", 2)
    if len(parts) != 3 or not re.fullmatch(r"[A-Za-z0-9_]+", parts[0]) or parts[1] not in PRESETS or not parts[2]:
        raise argparse.ArgumentTypeError(f"expected NAME:PRESET:ROOT (name: letters, digits, _; preset one of "
                                         f"{sorted(PRESETS)}), got {text!r}")
    return parts[0], parts[1], Path(parts[2])


def main(argv: list[str] | None = None) -> int:
    quiet_heareval_imports()
    ap = argparse.ArgumentParser(prog="python -m studies.choose_default", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidates", nargs="+", type=_candidate, metavar="NAME=CHECKPOINT")
    ap.add_argument("--suite", dest="suites", nargs="+", type=_suite, default=None, metavar="NAME:PRESET:ROOT",
                    help="validation suites: demo data of PRESET in ROOT (built if missing), tasks of "
                         "eval_suites/manifests/<PRESET>.yaml (else demo.yaml); default "
                         + " ".join(DEFAULT_SUITES))
    ap.add_argument("--tasks", nargs="+", default=None, help="only these tasks of every suite (names)")
    ap.add_argument("--out", type=Path, default=Path("results/default_choice"), help="results folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="linear-probe seeds (default 0 1 2)")
    ap.add_argument("--no-reference", action="store_true", help="skip the chosen model at random init")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = ap.parse_args(argv)
    args.suites = args.suites or [_suite(s) for s in DEFAULT_SUITES]
    names = [n for n, _ in args.candidates]
    if len(set(names)) != len(names):
        ap.error(f"candidate names must differ, got {names}")
    if len({s[0] for s in args.suites}) != len(args.suites):
        ap.error(f"--suite names must differ, got {[s[0] for s in args.suites]}")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        ap.error("--seeds must be distinct integers >= 0")
    # exit 2 for a bad manifest, 3 for unreadable data or outputs: one error line (eval_suites.errors)
    return run_command(lambda: choose(args), debug=args.debug)


def _score_suite(models: list[ModelSpec], suite: tuple[str, str, Path], args) -> pd.DataFrame:
    """The linear cells of `models` on one suite (scored if missing or stale), as scores()' long table."""
    name, preset, root = suite
    build_demo(root, preset=preset, progress=not args.no_progress)
    manifest = manifest_for(preset)
    out = args.out / name
    print(f"[{name}] {len(models)} model(s) on {manifest.name}'s tasks in {root}/tasks", flush=True)
    evaluate(models, root / "tasks", out, args.seeds, args.tasks, not args.no_progress, out / "embeddings", manifest)
    tasks = task_names(manifest, root / "tasks", args.tasks)
    return scores(out, [m.name for m in models], tasks, args.seeds).assign(suite=name)


def choose(args: argparse.Namespace) -> int:
    names = [n for n, _ in args.candidates]
    models = [ModelSpec(name=n, module="hear_slicer", checkpoint=p, options={}) for n, p in args.candidates]
    long = pd.concat([_score_suite(models, s, args) for s in args.suites], ignore_index=True)
    if not _all_ok(long):
        return 1
    suites = [s[0] for s in args.suites]
    chosen = _means(long, suites)[1].loc[names, "valid"].idxmax()
    rows = list(names)
    if not args.no_reference:
        ref = ModelSpec(name=REFERENCE, module="hear_slicer", checkpoint=dict(args.candidates)[chosen],
                        options={"random_init": True})
        ref_long = pd.concat([_score_suite([ref], s, args) for s in args.suites], ignore_index=True)
        if not _all_ok(ref_long):
            return 1
        long = pd.concat([long, ref_long], ignore_index=True)
        rows.append(REFERENCE)
    text = report(long, rows, chosen, suites, *_means(long, suites), args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "choice.md").write_text(text)
    long.to_csv(args.out / "choice.csv", index=False)
    print(text)
    print(f"chosen: {chosen}")
    return 0


def _all_ok(long: pd.DataFrame) -> bool:
    """Whether every cell of `long` scored; the failed ones are printed to stderr."""
    failed = long[long.status != "ok"]
    if len(failed):
        print(failed.to_string(), file=sys.stderr)
    return failed.empty


def _means(long: pd.DataFrame, suites: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per model and suite, per model over the suites: each suite weighing the same) mean
    validation and test scores."""
    per_suite = long.groupby(["model", "suite"])[["valid", "value"]].mean().unstack("suite")
    return per_suite, pd.DataFrame({k: per_suite[k][suites].mean(axis=1) for k in ("valid", "value")})


def report(long: pd.DataFrame, rows: list[str], chosen: str, suites: list[str], per_suite: pd.DataFrame,
           overall: pd.DataFrame, seeds: list[int]) -> str:
    """The choice table (mean validation and test per suite) and one per-task table per suite."""
    def label(n: str) -> str:
        return n + (" (chosen)" if n == chosen else " (reference: the chosen model at random init)"
                    if n == REFERENCE else "")

    head = ("| model | mean validation | mean test | "
            + " | ".join(f"{s} validation / test" for s in suites) + " |")
    lines = [f"Linear probe, probe seeds {seeds}; chosen by the mean validation score over the suites "
             f"({', '.join(suites)}; each suite the mean over its tasks and probe seeds, each suite weighing "
             f"the same). Test scores are shown for the report only.", "", head,
             "|---|---|---|" + "---|" * len(suites)]
    for n in rows:
        lines.append(f"| {label(n)} | {overall.loc[n, 'valid']:.3f} | {overall.loc[n, 'value']:.3f} | "
                     + " | ".join(f"{per_suite.loc[n, ('valid', s)]:.3f} / {per_suite.loc[n, ('value', s)]:.3f}"
                                  for s in suites) + " |")
    for s in suites:
        sub = long[long.suite == s]
        tasks = list(dict.fromkeys(sub.task))
        per_task = sub.groupby(["model", "task"])[["valid", "value"]].mean().unstack("task")
        lines += ["", f"Suite {s}, per task (validation / test):", "",
                  "| model | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
        for n in rows:
            lines.append(f"| {label(n)} | " + " | ".join(
                f"{per_task.loc[n, ('valid', t)]:.3f} / {per_task.loc[n, ('value', t)]:.3f}" for t in tasks) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
