"""The objective interface: what every pretraining method (SLICER, BYOL-A, DeLoRes, COLA) provides.

Legend: B batch, F mel bins, T frames, D encoder features.

An objective is an `nn.Module` that owns everything its method trains or tracks: the
student encoder (`hear_slicer.encoder.AudioNTT2020`), heads/projectors, an EMA teacher if
any, queues. The trainer (`pretrain.train`) owns everything else: data, frontend,
augmentations (two views), optimiser, schedule, AMP, checkpoints, DDP. One step reads:

    out = model(view_a, view_b)          # model = objective, or DDP(objective)
    out.loss.backward(); optimizer.step()
    objective.after_step(step, total_steps)   # EMA teacher, enqueue keys (explicit state)

Contract
- `Config`: a dataclass of the method's hyper-parameters. The YAML's `objective.params`
  section is type-checked against it (unknown keys are errors), so adding a method needs no
  change to `pretrain.config`.
- `__init__(encoder_cfg, cfg, dist)`: build modules. Create the teacher with
  `pretrain.ema.copy_as_teacher` (parameters with requires_grad=False are ignored by the
  optimiser and by DDP). Queues are `pretrain.queue.KeyQueue` submodules (buffers), so
  `state_dict()` holds all resumable state of the objective.
- `views_from_separate_crops`: class attribute, False by default. When True the trainer
  draws two independent random crops of each file and makes `view_a` from the first and
  `view_b` from the second (COLA's segments); otherwise both views augment one crop.
- `forward(view_a, view_b) -> ObjectiveOutput(loss, metrics)`: views are normalised,
  augmented log-mels (B, F, T) of the same clips (same files). Compute teacher outputs under
  `torch.no_grad()`, via `pretrain.distributed.shuffled_forward` when the teacher has
  BatchNorm (shuffle-BN under DDP). Do not change state used by later steps here: stash
  what `after_step` needs (e.g. keys) on `self`. Metrics are detached 0-d tensors (the
  trainer converts them to floats only on logging steps).
- `after_step(step, total_steps)`: called once after each optimiser step, outside DDP.
  Update the teacher (`pretrain.ema.ema_update`) and enqueue keys gathered from every
  process (`pretrain.distributed.all_gather_nograd`, so every process's queue stays equal).
- `encoder_for_export()`: the student AudioNTT2020; `teacher_for_export()`: the teacher
  AudioNTT2020 or None; `export_use`: "student" or "teacher", which one the HEAR plugin
  embeds with. Their state dicts become the checkpoint's `student`/`teacher` entries.

DDP: the trainer wraps the objective in `DistributedDataParallel(broadcast_buffers=False)`;
each process keeps its own BatchNorm running statistics (the exported ones are rank 0's)
while parameters, teachers and queues stay identical on every process by construction.

Adding a method: one module in `pretrain/objectives/`, a subclass of `Objective` with its
`Config`, one line in `pretrain.objectives.OBJECTIVES`, one YAML file in `pretrain/configs/`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from hear_slicer.encoder import AudioNTT2020, EncoderConfig

from ..distributed import DistContext

__all__ = ["Objective", "ObjectiveOutput", "NoParams"]


class ObjectiveOutput(NamedTuple):
    """loss: 0-d tensor to minimise; metrics: name -> detached 0-d tensor, logged as-is."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


@dataclass
class NoParams:
    """Config of an objective without hyper-parameters."""


class Objective(nn.Module):
    """Base class of pretraining objectives; see the module docstring for the contract."""

    #: The dataclass of this method's hyper-parameters (YAML `objective.params`).
    Config: ClassVar[type] = NoParams
    #: True: the two views come from two independent random crops of each file, not one crop.
    views_from_separate_crops: ClassVar[bool] = False

    def __init__(self, encoder_cfg: EncoderConfig, cfg, dist: DistContext | None = None):
        super().__init__()
        if not isinstance(cfg, self.Config):
            raise TypeError(f"{type(self).__name__} expects a {self.Config.__name__} config, got {type(cfg).__name__}")
        self.encoder_cfg = encoder_cfg
        self.cfg = cfg
        self.dist = dist or DistContext()

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> ObjectiveOutput:
        """view_a, view_b: (B, F, T) two augmented views of the same B clips."""
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """State updates after the optimiser step `step` (1-based) of `total_steps`."""

    @property
    def ema_momentum(self) -> float | None:
        """The teacher's EMA momentum per training step (the config's `momentum` to the power of its
        `ema_updates_per_step`, if any); None for a method without an EMA teacher. Logged by the trainer."""
        momentum = getattr(self.cfg, "momentum", None)
        return None if momentum is None else momentum ** getattr(self.cfg, "ema_updates_per_step", 1)

    def encoder_for_export(self) -> AudioNTT2020:
        raise NotImplementedError

    def teacher_for_export(self) -> AudioNTT2020 | None:
        return None

    @property
    def export_use(self) -> str:
        """'student' or 'teacher': the encoder the plugin embeds with (config `export` if present)."""
        return getattr(self.cfg, "export", "student")

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
