"""The offline demo, the README's main job: `python -m eval_suites.demo` (`make demo`).

On a fresh machine, with nothing downloaded, it shows the whole product working:
1. builds the demo tasks and corpus from real speech and music synthesised here
   (`eval_suites.synthetic.demo_data`, cached: a second run reuses them);
2. runs the real `hear-validator hear_slicer` on the model;
3. evaluates the model on `eval_suites/manifests/demo.yaml` with both protocols (LAPE's
   linear evaluation and heareval's MLP), adds the references (a random-init encoder and
   log-mel statistics, scores stored with the package: `eval_suites.demo_references`; the
   report adds each task's chance level) and prints the table; `<out>/results.csv`,
   `results.md` and `results.png` hold the results.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

from eval_suites import quiet_heareval_imports
from eval_suites.synthetic.demo_data import PRESETS, build_demo
from eval_suites.core.manifest import ModelSpec, load_manifest
from eval_suites.demo_references import DEMO_MANIFEST, REFERENCES, add_references
from eval_suites.errors import run_command

MEASURED = {"seconds": 296, "build_seconds": 71, "date": "2026-12-07"}
# `make demo` on the 2 quiet cores (the study's jobs paused), 2026-12-07: "seconds" is the median
# wall time of three runs with the demo data cached and demo_results/ removed before each (276,
# 296, 299 s); "build_seconds" the data build of one first run (71 s of its 383 s), measured
# earlier that day (the build has not changed since).
"""How long `make demo` took on this project's 2-core CPU machine, other jobs paused (README,
"Set up and run"): the whole demo with the data cached, and the first run's data build."""


def expected_duration(root: Path, preset: str) -> str:
    """The demo's first line: how long it will take, from :data:`MEASURED` (the small preset on
    2 CPU cores), with the data build when ``root`` holds no demo data yet."""
    if preset != "small":
        return f"hear-slicer demo ({preset} preset): no measured duration for this preset (only for 'small')"
    if MEASURED["seconds"] is None:
        return "hear-slicer demo (small preset): no measured duration yet (eval_suites/demo.py, MEASURED)"
    minutes = MEASURED["seconds"] / 60
    if (root / "recipe.json").is_file():
        return (f"hear-slicer demo: about {minutes:.0f} min on 2 CPU cores (measured {MEASURED['date']}; "
                f"the demo data in {root}/ is reused if current)")
    build = MEASURED["build_seconds"] / 60
    return (f"hear-slicer demo: about {minutes + build:.0f} min on 2 CPU cores (measured {MEASURED['date']}): "
            f"{build:.0f} min to synthesise the demo data into {root}/ (first run only), {minutes:.0f} min the rest")


def run_validator(checkpoint: str) -> bool:
    """The real hear-validator on hear_slicer (and `checkpoint`, if given); prints its verdict."""
    exe = Path(sys.executable).parent / "hear-validator"
    cmd = [str(exe if exe.exists() else "hear-validator"), "hear_slicer"] + (["--model", checkpoint] if checkpoint else [])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [l for l in (proc.stdout + proc.stderr).splitlines() if l.startswith(("Checking", "  - ", "Looks good"))]
    print("\n".join(lines[-8:]))
    ok = proc.returncode == 0 and "Looks good!" in proc.stdout
    if not ok:
        print(f"hear-validator failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
    return ok


def main(argv: list[str] | None = None) -> int:
    quiet_heareval_imports()
    ap = argparse.ArgumentParser(prog="python -m eval_suites.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("demo_data"), help="where the demo data is built (cached)")
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS), help="demo data size (default: small)")
    ap.add_argument("--out", type=Path, default=Path("demo_results"), help="results folder (default: demo_results)")
    ap.add_argument("--checkpoint", default="", help="evaluate this checkpoint instead of the default model")
    ap.add_argument("--protocols", nargs="+", default=["linear", "heareval"], choices=["linear", "heareval"])
    ap.add_argument("--tasks", nargs="+", default=None, help="only these demo tasks (names in demo.yaml)")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = ap.parse_args(argv)
    # exit 1: validator or a cell failed; 2: bad arguments or manifest; 3: unreadable data or
    # unwritable outputs; one error line (eval_suites.errors)
    return run_command(lambda: _demo(args), debug=args.debug)


def _demo(args: argparse.Namespace) -> int:
    print(expected_duration(args.root, args.preset), flush=True)
    t0 = time.time()

    import hear_slicer

    model = hear_slicer.load_model(args.checkpoint)
    what = args.checkpoint or "the default model"
    if model.is_random_init:
        print(f"Model: {what} — a fixed-seed RANDOM-INIT encoder (the default checkpoint is missing); "
              "the demo shows the machinery, not learned representations.")
    else:
        prov = model.provenance
        print(f"Model: {what} ({model.checkpoint_path}) — {prov.get('objective', '?')} pretrained for "
              f"{prov.get('steps', '?')} steps on {prov.get('data', '?')} ({prov.get('files', '?')} files)")
    del model

    print(f"\n[1/3] Demo data ({args.preset}) in {args.root}/ (built once, then cached)")
    parts = build_demo(args.root, preset=args.preset, progress=not args.no_progress)
    print(f"      {len(parts) - 1} tasks and a corpus ready ({time.time() - t0:.0f} s)")

    print("\n[2/3] hear-validator hear_slicer" + (f" --model {args.checkpoint}" if args.checkpoint else ""))
    if not run_validator(args.checkpoint):
        return 1

    print(f"\n[3/3] Evaluation on {DEMO_MANIFEST.name}: protocols {', '.join(args.protocols)}")
    from eval_suites.core.report import print_summary, write_report
    from eval_suites.core.runner import run_manifest

    manifest = load_manifest(DEMO_MANIFEST, tasks_root=args.root / "tasks").select(None, args.tasks)
    name = "slicer" if not args.checkpoint else Path(args.checkpoint).stem
    checkpoint = Path(args.checkpoint).resolve() if args.checkpoint else None
    manifest.models = [ModelSpec(name=name, module="hear_slicer", checkpoint=checkpoint, options={})]
    manifest.tasks = [dataclasses.replace(t, protocols=tuple(p for p in t.protocols if p in args.protocols))
                      for t in manifest.tasks]
    results = [r for r in run_manifest(manifest, args.out, progress=not args.no_progress) if r.model == name]
    if name in REFERENCES:
        print(f"references left out: the evaluated model is named {name!r}, as one of them")
    else:
        for line in add_references(args.out, manifest, args.preset):
            print(line)
    write_report(args.out)
    failed = print_summary(results, args.out)
    print(f"total {time.time() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
