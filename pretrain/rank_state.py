"""The part of the training state that differs between DDP processes, saved per process.

Under DDP the weights, teacher, queue, optimiser and step are identical on every process and
live in the checkpoint (`checkpoints/step_XXXXXXXX.pt`, rank 0's copy). Two things are not:
- the augmentation memories (mixup, k-mix): each process remembers its own clips;
- BatchNorm running statistics (`broadcast_buffers=False`, no SyncBatchNorm): each process
  normalises its own batches.
(The RNG states differ too; they are small and gathered into the checkpoint.) Process r > 0
writes its part next to the checkpoint, `checkpoints/ranks/step_XXXXXXXX.rank{r}.pt`, before
rank 0 writes the checkpoint itself, so a visible checkpoint always has its rank files. They
stay out of the checkpoint because the memories are ~100 MB per process at the defaults and
the checkpoint is also the file `hear_slicer.load_model` reads. Resuming, process r loads its
file; with it, a P-process run stopped and resumed equals the uninterrupted run bit for bit.
Without it (more processes than were saved) it starts from rank 0's memories and statistics.
Multi-node resume needs the run folder on a file system every node sees (as the checkpoint).
"""
from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from hear_slicer.checkpoint import CheckpointError, non_finite_entries
from hear_slicer.written import WrittenFiles
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["rank_state_path", "batchnorm_buffers", "save_rank_state", "load_rank_state", "prune_rank_states"]


def rank_state_path(checkpoint: str | Path, rank: int) -> Path:
    """Where process `rank` keeps its part of `checkpoint`'s state."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / "ranks" / f"{checkpoint.stem}.rank{rank}.pt"


def batchnorm_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    """Running statistics of every BatchNorm (incl. SyncBatchNorm) in `module`, by state_dict name."""
    return {f"{name}.{b}".lstrip("."): buf for name, m in module.named_modules() if isinstance(m, _BatchNorm)
            for b, buf in m.named_buffers(recurse=False)}


def save_rank_state(checkpoint: Path, rank: int, augment: nn.Module, objective: nn.Module,
                    written: WrittenFiles | None = None) -> Path:
    """Write this process's memories and BatchNorm statistics for `checkpoint` (atomically; through the run's
    record `written`, which refuses to replace a file it does not prove the run wrote)."""
    path = rank_state_path(checkpoint, rank)
    state = {"rank": rank, "augment": augment.state_dict(),
             "batchnorm": {k: v.detach().cpu() for k, v in batchnorm_buffers(objective).items()}}
    buf = io.BytesIO()
    torch.save(state, buf)
    return (written or WrittenFiles(Path(checkpoint).parent.parent, "the run")).write(path, buf.getvalue())


def load_rank_state(checkpoint: Path, rank: int, augment: nn.Module, objective: nn.Module) -> bool:
    """Restore this process's part of `checkpoint`'s state; False when it was not saved."""
    path = rank_state_path(checkpoint, rank)
    if not path.is_file():
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, disallowed objects
        raise CheckpointError(f"{path} cannot be read ({type(e).__name__}: {str(e)[:200]}); resume an earlier "
                              "checkpoint") from e
    if not isinstance(state, dict) or state.get("rank") != rank:
        raise CheckpointError(f"{path} holds the state of process {getattr(state, 'get', dict().get)('rank')}, "
                              f"not {rank}")
    bad = non_finite_entries(state)
    if bad:
        raise CheckpointError(f"{path} holds NaN or Inf values ({', '.join(bad[:5])}); resume an earlier checkpoint")
    augment.load_state_dict(state["augment"])
    mine = batchnorm_buffers(objective)
    if set(mine) != set(state["batchnorm"]):
        raise CheckpointError(f"{path} was saved for a model with other BatchNorm layers; it cannot be resumed here")
    with torch.no_grad():
        for name, value in state["batchnorm"].items():
            mine[name].copy_(value)
    return True


def prune_rank_states(checkpoint: Path, written: WrittenFiles | None = None) -> None:
    """Delete the rank files of a checkpoint that is being deleted: those the run's record (default: that of the
    run folder the checkpoint lies in) proves it wrote."""
    written = written or WrittenFiles(Path(checkpoint).parent.parent, "the run")
    folder = rank_state_path(checkpoint, 0).parent
    mine = set(written.recorded())
    written.remove([p for p in folder.glob(f"{Path(checkpoint).stem}.rank*.pt") if written.name(p) in mine],
                   f"delete the rank files of {checkpoint}")
