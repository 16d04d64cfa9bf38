"""FIFO queue of keys (MoCo's dictionary of negatives), explicit state with an explicit enqueue.

Legend: K queue size, D key dimension, N keys enqueued at once.

The queue is a ring buffer: `enqueue` overwrites the oldest K entries, wrapping around the
end. It is an `nn.Module` whose tensors are buffers, so it travels with `.to(device)` and
is saved in (and restored from) the owning module's `state_dict`. Each slot also records
the data-parallel rank that produced its key (`owners`, -1 for the random initial keys),
which makes "the queue holds every process's keys" checkable.

Nothing here is called from inside a loss: the training step calls `enqueue` where a
reader can see it (see `pretrain.objectives.base`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KeyQueue"]


class KeyQueue(nn.Module):
    """A FIFO of `size` keys of dimension `dim`, initialised with random unit vectors.

    Buffers: `keys` (K, D), `owners` (K,) int64 rank of the producer (-1 = initial),
    `ptr` () int64 next slot to write, `num_enqueued` () int64 keys ever enqueued.
    """

    def __init__(self, size: int, dim: int, normalize_init: bool = True):
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"queue size and key dimension must be positive, got size={size}, dim={dim}")
        keys = torch.randn(size, dim)
        self.register_buffer("keys", F.normalize(keys, dim=1) if normalize_init else keys)  # (K, D)
        self.register_buffer("owners", torch.full((size,), -1, dtype=torch.long))  # (K,)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_enqueued", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, owners: torch.Tensor | None = None) -> None:
        """Write `keys` (N, D) over the oldest entries, wrapping around; N may exceed K.

        owners: (N,) int64 rank that produced each key, or None (recorded as 0).
        """
        if keys.dim() != 2 or keys.shape[1] != self.keys.shape[1]:
            raise ValueError(f"expected keys of shape (N, {self.keys.shape[1]}), got {tuple(keys.shape)}")
        n = keys.shape[0]
        if owners is None:
            owners = torch.zeros(n, dtype=torch.long, device=keys.device)
        if owners.shape != (n,):
            raise ValueError(f"expected owners of shape ({n},), got {tuple(owners.shape)}")
        if n > self.size:  # only the newest K survive; they land where a loop of writes would put them
            skip = n - self.size
            keys, owners = keys[skip:], owners[skip:]
            start = (self.ptr + skip) % self.size
        else:
            start = self.ptr
        slots = (start + torch.arange(keys.shape[0], device=self.keys.device)) % self.size  # (N,)
        self.keys[slots] = keys.detach().to(self.keys.dtype)
        self.owners[slots] = owners.to(self.owners.device)
        self.ptr.copy_((self.ptr + n) % self.size)
        self.num_enqueued.add_(n)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.keys.shape[1]}"
