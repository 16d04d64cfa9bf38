"""Command line: `python -m pretrain --config pretrain/configs/slicer.yaml --set data.path=/audio`.

Multi-process (DDP): `torchrun --nproc_per_node=P -m pretrain ...`; multi-node adds torchrun's
`--nnodes`, `--node_rank`, `--rdzv_endpoint` (or `--master_addr/--master_port`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hear_slicer.checkpoint import load_checkpoint

from .config import apply_overrides, config_from_dict, load_config, merge_into, read_yaml
from .errors import UsageError, run_command
from .train import latest_checkpoint, train

EXAMPLES = """examples:
  python -m pretrain --config pretrain/configs/slicer.yaml --set data.path=/data/fsd50k --out runs/fsd
  python -m pretrain --config pretrain/configs/slicer.yaml --set data.path=files.csv run.steps=5000 optim.lr=1e-3
  python -m pretrain --resume runs/fsd                      # newest checkpoint in runs/fsd/checkpoints
  python -m pretrain --resume runs/fsd/checkpoints/step_00010000.pt --set run.steps=40000
  python -m pretrain --config pretrain/configs/slicer.yaml --set data.path=/data/fsd50k --out runs/fsd --overwrite
  torchrun --nproc_per_node=4 -m pretrain --config pretrain/configs/slicer.yaml --set data.path=/data/as
  python -m pretrain.prepare /data/as /data/as_store && python -m pretrain --set data.path=/data/as_store ...
  torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=$HOST:29400 -m pretrain ...  # each node
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pretrain",
        description="Self-supervised pretraining of the AudioNTT2020 encoder (SLICER and baselines). "
                    "Checkpoints load with hear_slicer.load_model(path).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (e.g. pretrain/configs/slicer.yaml); defaults are used for "
                                    "missing keys. With --resume, the checkpoint's config is the base and the "
                                    "keys this file sets are changes to it (checked like --set).")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override config values, e.g. optim.lr=1e-3 data.batch_size=64 objective.params.queue_size=4096")
    p.add_argument("--out", help="output folder (same as --set run.out=...)")
    p.add_argument("--resume", nargs="?", const="", metavar="PATH",
                   help="resume from a checkpoint file, or from the newest checkpoint of a run folder "
                        "(no PATH: the run folder given by --out / the config). Changes asked for with "
                        "--config/--set are compared with the checkpoint's config: those that would mix "
                        "state (batch size, data, model, objective, optimiser, ...) are refused, the "
                        "others (run.steps, logging, checkpoint_every, lr schedule, ...) are listed in run.log. "
                        "The run continues in the folder the checkpoint is in (also after the folder was moved), "
                        "unless --out names another")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in the output folder (checkpoints, logs, stats) before starting; "
                        "without it, a folder holding another run is refused. Only a run's own files are "
                        "deleted, each listed in run.log; a folder that is not a run is never emptied")
    p.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit 0, or one line `error: ...` and 2 (usage, config), 3 (data, IO), 1 (diverged): `pretrain.errors`."""
    args = parse_args(argv)
    return run_command(lambda: _run(args), args.debug)


def _run(args: argparse.Namespace) -> Path:
    overrides = list(args.overrides) + ([f"run.out={args.out}"] if args.out else [])
    resume = None
    if args.resume is not None:
        target = Path(args.resume) if args.resume else Path(load_config(args.config, overrides).run.out)
        if not target.exists():
            raise UsageError(f"--resume {target}: no such checkpoint file or run folder")
        resume = latest_checkpoint(target) if target.is_dir() else target
        base = config_from_dict(load_checkpoint(resume).train_config).to_dict()
        changes = apply_overrides(read_yaml(args.config) if args.config else {}, overrides)
        if changes.get("objective", {}).get("name", base["objective"]["name"]) != base["objective"]["name"]:
            base["objective"] = {}  # another objective: its params are its own (the change is refused later)
        cfg = config_from_dict(merge_into(base, changes))
    else:
        cfg = load_config(args.config, overrides)
    return train(cfg, resume=resume, overwrite=args.overwrite)


if __name__ == "__main__":
    sys.exit(main())
