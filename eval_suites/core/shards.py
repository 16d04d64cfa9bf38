"""One cluster job's share of a run: ``--shard K/N`` or a SLURM job array.

The cells of a manifest, (model, task, protocol) by name, are sorted and cut into N
contiguous blocks whose sizes differ by at most one; shard K (1-based) runs block K,
``cells[(K-1)*n//N : K*n//N]``. The share depends only on the sorted names and on N, so
every job of an array computes the same partition without talking to the others; together
the N shards cover every cell once. Contiguous blocks keep a model's tasks, and a task's
protocols, in one job (each job loads few models and computes few embeddings); where a
block boundary splits a task's protocols, both jobs need its embeddings and the cache's
lock (:func:`eval_suites.core.embeddings.ensure_embeddings`) lets one compute them while
the other waits and reads them.

All jobs must be given the same manifest and the same ``--models``/``--tasks``: a
different selection is a different partition.

Without ``--shard``, a SLURM array job (``sbatch --array=0-7``) takes its shard from the
variables SLURM sets in each array task: shard ``(ID - MIN) / STEP + 1`` of ``COUNT``
(``SLURM_ARRAY_TASK_ID``, ``_MIN``, ``_STEP``, ``_COUNT``). An array whose ids are not an
evenly spaced range (``--array=1,4,9``) cannot be mapped and is an error that says to pass
``--shard``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

from eval_suites.errors import UsageError

__all__ = ["ShardError", "Shard", "parse_shard", "shard_from_slurm"]

T = TypeVar("T")

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(UsageError):
    """A bad ``--shard`` or SLURM array: the message says what was expected (exit 2)."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1 <= index <= count); ``source`` says where it came from."""

    index: int
    count: int
    source: str = "--shard"

    def __post_init__(self) -> None:
        if not (isinstance(self.index, int) and isinstance(self.count, int) and 1 <= self.index <= self.count):
            raise ShardError(f"expected a shard K/N with 1 <= K <= N, got {self.index}/{self.count}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, cells: Sequence[T]) -> list[T]:
        """This shard's block of ``sorted(cells)`` (``cells``: sortable, e.g. name triples)."""
        ordered = sorted(cells)
        n = len(ordered)
        return ordered[(self.index - 1) * n // self.count: self.index * n // self.count]


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> :class:`Shard`; a :class:`ShardError` saying what was expected otherwise."""
    m = _SHARD_RE.match(text)
    if m is None:
        raise ShardError(f"--shard: expected K/N (e.g. 2/8: the second of eight jobs), got {text!r}")
    return Shard(int(m.group(1)), int(m.group(2)))


def shard_from_slurm(env: Mapping[str, str]) -> Shard | None:
    """The shard of a SLURM array task from ``env`` (``os.environ``), None outside an array."""
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP")
    defaults = {"SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "1"}
    seen = {k: env.get(k, defaults.get(k)) for k in names}
    try:
        task_id, count, first, step = (int(seen[k]) for k in names)
    except (TypeError, ValueError):
        raise ShardError(f"SLURM array variables {seen} are not all integers; pass --shard K/N") from None
    offset, rest = divmod(task_id - first, step) if step > 0 else (-1, 0)
    source = ", ".join(f"{k}={seen[k]}" for k in names if k in env)
    if rest or not 0 <= offset < count:
        raise ShardError(f"cannot tell this job's shard from the SLURM array ({source}): its ids are not "
                         "an evenly spaced range; pass --shard K/N")
    return Shard(offset + 1, count, source=source)
