"""Recompute the reference scores `make demo` shows (:mod:`eval_suites.demo_references`).

    python -m studies.demo_references [--preset small] [--root demo_data] [--work runs/demo_references]

1. builds the demo data if missing (cached, as the demo does);
2. writes the random-init reference checkpoint: the default checkpoint's frontend and
   normalisation with the encoder at fixed-seed random init (as the study's reference,
   :func:`studies.mini_lape.random_init_checkpoint`);
3. runs the demo manifest (both protocols, every task) on the reference models;
4. stores their cells in ``eval_suites/references/demo_scores/<preset>/`` (commit them).

Run it after a change of the demo data, of the demo manifest's protocol settings or of the
default checkpoint; the demo names the cells it leaves out as stale. It lives here, above
``eval_suites``, because the random-init checkpoint comes from the study's code.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eval_suites import quiet_heareval_imports
from eval_suites.core.manifest import load_manifest
from eval_suites.core.runner import run_manifest
from eval_suites.demo import DEMO_MANIFEST
from eval_suites.demo_references import reference_models, save_references
from eval_suites.synthetic.demo_data import PRESETS, build_demo
from hear_slicer.api import DEFAULT_CHECKPOINT
from studies.mini_lape import random_init_checkpoint


def main(argv: list[str] | None = None) -> int:
    quiet_heareval_imports()
    ap = argparse.ArgumentParser(prog="python -m studies.demo_references", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS), help="demo data preset (default: small)")
    ap.add_argument("--root", type=Path, default=Path("demo_data"), help="where the demo data is built (cached)")
    ap.add_argument("--work", type=Path, default=Path("runs/demo_references"),
                    help="the reference checkpoint, embeddings and results (default: runs/demo_references)")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = ap.parse_args(argv)

    build_demo(args.root, preset=args.preset, progress=not args.no_progress)
    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint = random_init_checkpoint(DEFAULT_CHECKPOINT, args.work / "random_init.pt").resolve()
    manifest = load_manifest(DEMO_MANIFEST, tasks_root=args.root / "tasks")
    manifest.models = reference_models(checkpoint)
    results = run_manifest(manifest, args.work / f"results_{args.preset}", progress=not args.no_progress)
    failed = [f"{r.model}/{r.task}/{r.protocol}: {r.error}" for r in results if not r.ok]
    if failed:
        print("failed cells, nothing stored:\n" + "\n".join(failed), file=sys.stderr)
        return 1
    print(f"stored in {save_references(args.work / f'results_{args.preset}', manifest, args.preset)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
