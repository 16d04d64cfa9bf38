"""Mutation testing of the modules that decide results, one module at a time (mutmut 3).

    python scripts/mutation.py [--modules pretrain/augment.py ...] [--max-children 1] [--list]

For each module of MODULES, a scratch copy of the packages and of that module's fast
targeted tests is made in mutation-work/<module>/ (git-ignored; removed and rebuilt each
time), with a setup.cfg whose [mutmut] section mutates only that module and runs only
those tests; `mutmut run` plants each mutant and runs the tests that reach the mutated
function. A mutmut timeout is run again without mutmut's CPU-time limit (`recheck`), so
that it counts as killed only when the tests fail or hang. The verdicts are written to
mutation-work/<module>.results.txt and a summary
line per module (killed / total, %) is printed and appended to
mutation-work/summary.tsv. `--survivors --modules M` prints the diffs of M's surviving
mutants (also written to mutation-work/<module>.survivors.txt). Reviewed survivors are in
docs/testing.md. Not part of `make test`: the whole run takes about an hour on 2 cores.
"""
from __future__ import annotations

import argparse
import ast
import collections
import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "mutation-work"
PACKAGES = ("hear_slicer", "pretrain", "eval_suites")

ERRORS = "tests/test_loss_input_errors.py"
BASELINES = "tests/test_pretrain_baselines_reference.py"
# module -> the fast tests that pin it (no slow end-to-end runs).
MODULES: dict[str, list[str]] = {
    "pretrain/losses/instance.py": ["tests/test_pretrain_losses.py", ERRORS],
    "pretrain/losses/cluster.py": ["tests/test_pretrain_losses.py", ERRORS],
    "pretrain/losses/barlow.py": ["tests/test_pretrain_baselines_losses.py", ERRORS],
    "pretrain/losses/byol.py": ["tests/test_pretrain_baselines_losses.py", ERRORS],
    "pretrain/losses/cola.py": ["tests/test_pretrain_baselines_losses.py", ERRORS],
    "pretrain/objectives/slicer.py": ["tests/test_pretrain_slicer_objective.py", "tests/test_pretrain_distributed.py"],
    "pretrain/objectives/byol_a.py": [BASELINES, "tests/test_pretrain_baselines_objectives.py"],
    "pretrain/objectives/cola.py": [BASELINES, "tests/test_pretrain_baselines_objectives.py"],
    "pretrain/objectives/delores_s.py": [BASELINES, "tests/test_pretrain_baselines_objectives.py"],
    "pretrain/objectives/delores_m.py": [BASELINES, "tests/test_pretrain_baselines_objectives.py",
                                         "tests/test_pretrain_distributed.py"],
    "pretrain/augment.py": ["tests/test_pretrain_augment.py", "tests/test_pretrain_augment_draws.py",
                            "tests/test_pretrain_rrc.py"],
    "pretrain/distributed.py": ["tests/test_pretrain_distributed.py", "tests/test_pretrain_split_bn.py"],
    # (the default checkpoint's provenance test is about the shipped file, not the API)
    "hear_slicer/api.py": ["tests/test_hear_api.py",
                           "--deselect=tests/test_hear_api.py::test_default_checkpoint_is_the_demo_config_trained"],
    "eval_suites/core/protocols/linear.py": ["tests/test_linear_selection.py"],
}
RECHECK_S = 600  # wall-clock limit of a timeout's recheck
STATUS = re.compile(r"^\s*(\S+):\s*(killed|survived|no tests|timeout|suspicious|skipped|segfault|"
                    r"not checked|check was interrupted by user|caught by type check|"
                    r"bad exit code|bad test result|killed \(rechecked\)|survived \(rechecked\)|"
                    r"timeout \(rechecked\))\s*$")


def undecorate(source: str) -> str:
    """The same module with every function decorator applied by assignment after the def.

    mutmut 3 leaves decorated functions unmutated (`@torch.no_grad()`, `@float32_loss`,
    `@property`, ...), which would hide most of `after_step`, the distributed helpers and the
    losses. `@dec def f` becomes `def f` followed by `f = dec(f)`, which Python defines to be
    the same object, so the tests see the same module while mutmut sees plain functions.
    """
    lines = source.splitlines(keepends=True)
    funcs = [n for n in ast.walk(ast.parse(source))
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.decorator_list]
    for fn in sorted(funcs, key=lambda n: n.lineno, reverse=True):  # bottom up: line numbers stay valid
        indent = lines[fn.lineno - 1][:fn.col_offset]
        after = "".join(f"{indent}{fn.name} = {ast.get_source_segment(source, d)}({fn.name})\n"
                        for d in reversed(fn.decorator_list))
        lines.insert(fn.end_lineno, after)
        first = min(d.lineno for d in fn.decorator_list) - 1  # the "@" line(s)
        del lines[first:fn.lineno - 1]
    return "".join(lines)


def work_dir(module: str) -> Path:
    """mutation-work/<module>: the module's scratch tree; its verdicts are in <that>.results.txt."""
    return WORK / module.replace("/", "__").removesuffix(".py")


def prepare(module: str, tests: list[str]) -> Path:
    """A scratch tree: the packages, the module's tests, and a setup.cfg for this module."""
    work = work_dir(module)
    if work.exists():
        shutil.rmtree(work)
    (work / "tests").mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, work / pkg, ignore=ignore)
    for t in tests:
        if not t.startswith("-"):  # pytest options pass through
            shutil.copy(REPO / t, work / t)
    for helper in (REPO / "tests").glob("*.py"):  # modules the tests import (not tests themselves)
        if not helper.name.startswith(("test_", "conftest")):
            shutil.copy(helper, work / "tests" / helper.name)
    # tqdm guards its bars with a multiprocessing lock shared by every forked mutant run: one
    # run stopped while holding it (a timeout) left every later run waiting on it forever, each
    # then counted as a timeout, i.e. a false kill. A per-process lock keeps the runs apart.
    (work / "tests" / "conftest.py").write_text(
        (REPO / "tests" / "conftest.py").read_text()
        + "\n\nimport threading  # noqa: E402\n\nimport tqdm  # noqa: E402\n\n"
        "tqdm.tqdm.set_lock(threading.RLock())  # scripts/mutation.py: not shared across forks\n")
    target = work / module
    target.write_text(undecorate(target.read_text()))
    lines = "\n    ".join
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths =\n    {lines(PACKAGES)}\n"
        f"only_mutate =\n    {module}\n"
        f"pytest_add_cli_args_test_selection =\n    {lines(tests)}\n"
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -m\n    not slow\n"
        "use_git_change_detection = false\n"
        # A mutant's run that takes 4x its tests' clean time (+ 1 s) is stopped and counted as
        # a timeout (mutmut's default is 15x); timeouts are reported apart from failures.
        "timeout_multiplier = 4\n"
        "\n[tool:pytest]\nmarkers =\n    slow: end-to-end tests\n"
    )
    return work


def run_module(module: str, tests: list[str], max_children: int, names: list[str]) -> collections.Counter:
    work = prepare(module, tests)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(work)}
    mutmut = [sys.executable, "-m", "mutmut"]
    print(f"== {module}: tests {' '.join(tests)}", flush=True)
    with open(WORK / f"{work.name}.log", "w") as log:  # mutmut draws a spinner: keep it out of the console
        subprocess.run([*mutmut, "run", "--max-children", str(max_children), *names], cwd=work, env=env, check=False,
                       stdout=log, stderr=subprocess.STDOUT)
    out = subprocess.run([*mutmut, "results", "--all", "true"], cwd=work, env=env, check=True,
                         capture_output=True, text=True).stdout
    return settle(work, tests, out, names)


def settle(work: Path, tests: list[str], results: str, names: list[str]) -> collections.Counter:
    """The verdicts in mutmut's `results` text (only `names` when given), each timeout rechecked
    (:func:`recheck`); written to mutation-work/<module>.results.txt. Returns their counts."""
    verdicts = {m.group(1): m.group(2) for m in map(STATUS.match, results.splitlines())
                if m and (not names or any(fnmatch.fnmatchcase(m.group(1), n) for n in names))}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, status in verdicts.items():
        if status == "timeout":
            verdicts[name] = recheck(work, tests, name, env)
    (WORK / f"{work.name}.results.txt").write_text("".join(f"    {n}: {v}\n" for n, v in verdicts.items()))
    return collections.Counter(verdicts.values())


def recheck(work: Path, tests: list[str], name: str, env: dict[str, str]) -> str:
    """A mutmut timeout, run again without mutmut's CPU-time limit.

    mutmut stops a mutant's run after 2 x timeout_multiplier x (its tests' estimated time + 1 s)
    of CPU, estimated per test; tests that start processes (the 2-process gloo tests) or share
    a module fixture cost more than that estimate, so a mutant their first assertion rejects can
    still be stopped as a "timeout". Here the mutant's tests run whole under a wall-clock limit:
    they fail -> "killed (rechecked)", pass -> "survived (rechecked)", still running after
    RECHECK_S -> "timeout (rechecked)" (a hang, which counts as killed).
    """
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow", *tests]
    run_env = {**env, "MUTANT_UNDER_TEST": name, "PYTHONPATH": str(work / "mutants")}
    try:
        proc = subprocess.run(cmd, cwd=work / "mutants", env=run_env, capture_output=True, timeout=RECHECK_S)
    except subprocess.TimeoutExpired:
        return "timeout (rechecked)"
    return "survived (rechecked)" if proc.returncode == 0 else "killed (rechecked)"


def survivors(module: str) -> str:
    """The diff of every surviving mutant of an earlier run of `module` (written next to its results)."""
    work = work_dir(module)
    results = WORK / f"{work.name}.results.txt"
    if not results.is_file():
        raise SystemExit(f"--survivors: no results for {module} in {WORK}; run it first")
    env = {**os.environ, "PYTHONPATH": str(work)}
    names = [m.group(1) for m in map(STATUS.match, results.read_text().splitlines())
             if m and m.group(2).startswith("survived")]
    parts = []
    for name in names:
        diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, env=env,
                              capture_output=True, text=True).stdout
        parts.append(f"## {name}\n" + "".join(line + "\n" for line in diff.splitlines()
                                                if line[:1] in "-+" and line[:3] not in ("---", "+++")))
    text = "".join(parts)
    (WORK / f"{work.name}.survivors.txt").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modules", nargs="*", default=list(MODULES), help="modules to mutate (default: all)")
    ap.add_argument("--max-children", type=int, default=1, help="mutants tested in parallel (default 1)")
    ap.add_argument("--names", nargs="*", default=[],
                    help="only these mutants (mutmut name globs, e.g. 'hear_slicer.api.*timestamp*'); default all")
    ap.add_argument("--recheck", action="store_true",
                    help="recheck the timeouts of the last run of --modules without rerunning mutmut")
    ap.add_argument("--list", action="store_true", help="print the modules and their tests, then exit")
    ap.add_argument("--survivors", action="store_true",
                    help="print the diffs of the surviving mutants of the last run of --modules, then exit")
    args = ap.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        ap.error(f"--modules: {unknown} not among {list(MODULES)}")
    if args.list:
        for m in args.modules:
            print(m, *MODULES[m])
        return
    if args.survivors:
        for m in args.modules:
            print(survivors(m))
        return
    WORK.mkdir(exist_ok=True)
    for module in args.modules:
        if args.recheck:
            work = work_dir(module)
            results = WORK / f"{work.name}.results.txt"
            if not results.is_file():
                raise SystemExit(f"--recheck: no results for {module} in {WORK}; run it first")
            counts = settle(work, MODULES[module], results.read_text(), args.names)
        else:
            counts = run_module(module, MODULES[module], args.max_children, args.names)
        total = sum(counts.values())
        killed = sum(v for k, v in counts.items() if k.startswith(("killed", "timeout", "caught by type check")))
        line = (f"{module}{' ' + ' '.join(args.names) if args.names else ''}\t{killed}/{total}\t{100.0 * killed / max(total, 1):.1f}%\t"
                + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        print(line, flush=True)
        with open(WORK / "summary.tsv", "a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
