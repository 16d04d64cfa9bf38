"""Export a training checkpoint as a slim embedding checkpoint.

A training checkpoint carries what resuming needs (teacher, heads, queue, augmentation
memories, optimizer state): about 3-4x the encoder's size. The HEAR plugin needs only the
encoder it embeds with, its configs, the normalisation statistics and the provenance.

    python -m pretrain.export runs/demo hear_slicer/assets/default.pt        # newest checkpoint of a run
    python -m pretrain.export runs/demo/checkpoints/step_00000600.pt out.pt --use teacher

Errors are one line (`pretrain.errors`): exit 2 for a wrong argument, 3 for a checkpoint that
cannot be read or an output that cannot be written.

OUT is written through a record of what export wrote in its folder (`hear_slicer.written`,
`.hear-slicer-written.jsonl` there): an existing OUT is replaced only when an earlier export
wrote it and it is unchanged. Refused, exit 2, nothing touched: OUT that is the source
itself (`export X X`), OUT that is a training checkpoint (one that holds a training state,
e.g. a run's `checkpoints/step_*.pt`), and any other file at OUT (remove it first if you mean
to replace it).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from hear_slicer.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from hear_slicer.written import WrittenFiles

from .errors import UsageError, run_command
from .train import latest_checkpoint


def slim(ckpt: Checkpoint, use: str | None = None) -> Checkpoint:
    """The same checkpoint with only the encoder the plugin uses (`use`, default: the checkpoint's)."""
    use = use or ckpt.use
    if use == "teacher" and ckpt.teacher is None:
        raise CheckpointError("--use teacher, but the checkpoint holds no teacher weights")
    weights = ckpt.teacher if use == "teacher" else ckpt.student
    provenance = {**ckpt.provenance, "exported_from": use}
    return dataclasses.replace(ckpt, student=weights, teacher=None, use="student", training_state=None,
                               provenance=provenance)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pretrain.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="a checkpoint file, or a run folder (its newest checkpoint)")
    ap.add_argument("out", type=Path, help="where to write the slim checkpoint")
    ap.add_argument("--use", choices=["student", "teacher"], default=None,
                    help="which encoder to export (default: the one the checkpoint marks for embedding)")
    ap.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    args = ap.parse_args(argv)
    return run_command(lambda: export(args.source, args.out, args.use), args.debug)


def export(source: Path, out: Path, use: str | None = None) -> Path:
    """Write the slim checkpoint of `source` (a checkpoint file or a run folder: its newest) to `out`."""
    if not source.exists():
        raise UsageError(f"no checkpoint file or run folder at {source}")
    if source.is_dir():
        source = latest_checkpoint(source)
    written = WrittenFiles(out.parent, "pretrain.export")
    _check_destination(source, out, written)
    ckpt = slim(load_checkpoint(source), use)
    save_checkpoint(ckpt, out, written)
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB) from {source}: {ckpt.provenance.get('objective')}, "
          f"step {ckpt.provenance.get('steps', ckpt.provenance.get('step'))}")
    return out


def _check_destination(source: Path, out: Path, written: WrittenFiles) -> None:
    """UsageError (exit 2) for an OUT that is the source or a training checkpoint; ForeignFileError (exit 2)
    for any other existing file export did not write; nothing is touched either way."""
    if out.is_dir():
        raise UsageError(f"{out} is a directory; give the file to write, e.g. {out / 'model.pt'}")
    if not (out.exists() or out.is_symlink()):
        return
    if out.exists() and source.exists() and out.samefile(source):
        raise UsageError(f"{out} is the checkpoint being exported; write the export to another file")
    try:
        is_training = load_checkpoint(out).training_state is not None
    except CheckpointError:
        is_training = False
    if is_training:
        raise UsageError(f"{out} is a training checkpoint (it holds a training state); an export never replaces "
                         "one: write the export to another file")
    written.check([out], f"replace {out} with the export")


if __name__ == "__main__":
    sys.exit(main())
