"""The project's one checkpoint format, shared by the plugin, the trainer and the suites.

A checkpoint is a plain dict saved with `torch.save` and read with
`torch.load(weights_only=True)`, so an untrusted file cannot run code: it holds only
tensors, dicts, lists, tuples, strings, numbers, booleans and None.

    {
      "format": "hear-slicer-checkpoint", "format_version": 1,
      "frontend": {...FrontendConfig...}, "encoder": {...EncoderConfig...},
      "norm_mean": float, "norm_std": float,
      "student": encoder state_dict, "teacher": encoder state_dict | None,
      "use": "student" | "teacher",          # which encoder the plugin embeds with
      "train_config": dict, "provenance": dict,
      "training_state": dict | None,         # what a trainer needs to resume
      "tensors_blake2b": str,                # hash of every tensor above (`tensors_hash`)
      "settings_blake2b": str,               # hash of every other value above (`settings_hash`)
    }

`save_checkpoint` records two hashes and `load_checkpoint` checks both: one of every tensor
(names, dtypes, shapes and bytes), one of every other value (the normalisation statistics,
the frontend and encoder configs, `use`, the training config, the provenance and the
training state's numbers: names, types and exact values). A flipped bit anywhere that
changes a result is a `CheckpointError`, not wrong embeddings or a resume at another
learning rate. A file without a hash (written before it existed) loads, with a warning
logged on the `hear_slicer.checkpoint` logger naming what is unverified.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .encoder import AudioNTT2020, EncoderConfig
from .frontend import FrontendConfig, LogMelFrontend
from .written import WrittenFiles

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "build_encoder",
    "build_frontend",
    "non_finite_entries",
    "settings_hash",
    "tensors_hash",
]

FORMAT_NAME = "hear-slicer-checkpoint"
FORMAT_VERSION = 1
HASH_KEY = "tensors_blake2b"
SETTINGS_HASH_KEY = "settings_blake2b"
log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, of another format, or inconsistent."""


@dataclass
class Checkpoint:
    frontend: FrontendConfig
    encoder: EncoderConfig
    norm_mean: float
    norm_std: float
    student: dict[str, torch.Tensor]
    teacher: dict[str, torch.Tensor] | None = None
    use: str = "student"
    train_config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.use not in ("student", "teacher"):
            raise CheckpointError(f"'use' must be 'student' or 'teacher', got {self.use!r}")
        if self.use == "teacher" and self.teacher is None:
            raise CheckpointError("'use' is 'teacher' but the checkpoint holds no teacher weights")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "frontend": dataclasses.asdict(self.frontend),
            "encoder": dataclasses.asdict(self.encoder),
            "norm_mean": float(self.norm_mean),
            "norm_std": float(self.norm_std),
            "student": self.student,
            "teacher": self.teacher,
            "use": self.use,
            "train_config": self.train_config,
            "provenance": self.provenance,
            "training_state": self.training_state,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "checkpoint") -> "Checkpoint":
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise CheckpointError(
                f"{source} is not a hear-slicer checkpoint (no 'format': {FORMAT_NAME!r} entry); "
                "checkpoints are written by `python -m pretrain` or hear_slicer.checkpoint.save_checkpoint"
            )
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{source} has checkpoint format version {version!r}; this hear-slicer reads version "
                f"{FORMAT_VERSION}. Upgrade hear-slicer or re-export the checkpoint."
            )
        missing = [k for k in ("frontend", "encoder", "norm_mean", "norm_std", "student") if k not in d]
        if missing:
            raise CheckpointError(f"{source} lacks required entries: {', '.join(missing)}")
        for name in ("frontend", "encoder"):
            if not isinstance(d[name], dict):
                raise CheckpointError(f"{source}: '{name}' must be a mapping of config values, got {d[name]!r:.80}")
        for name in ("norm_mean", "norm_std"):
            if isinstance(d[name], bool) or not isinstance(d[name], (int, float)) or not math.isfinite(d[name]):
                raise CheckpointError(f"{source}: '{name}' must be a finite number, got {d[name]!r:.80}")
        for name in ("student", "teacher"):
            _check_weights(d.get(name), name, source, required=name == "student")
        for name in ("train_config", "provenance", "training_state"):
            if d.get(name) is not None and not isinstance(d[name], dict):
                raise CheckpointError(f"{source}: '{name}' must be a mapping, got a {type(d[name]).__name__} "
                                      f"({d[name]!r:.80}); the checkpoint is damaged or was not written by hear-slicer")
        try:
            frontend = FrontendConfig(**d["frontend"])
            encoder = EncoderConfig(**d["encoder"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{source} has an invalid frontend or encoder config: {e}") from e
        if frontend.n_mels != encoder.n_mels:
            raise CheckpointError(f"{source}: the frontend makes {frontend.n_mels} mel bins but the encoder expects "
                                  f"{encoder.n_mels} (frontend.n_mels != encoder.n_mels); the checkpoint is "
                                  "inconsistent")
        return cls(
            frontend=frontend,
            encoder=encoder,
            norm_mean=float(d["norm_mean"]),
            norm_std=float(d["norm_std"]),
            student=d["student"],
            teacher=d.get("teacher"),
            use=d.get("use", "student"),
            train_config=d.get("train_config") or {},
            provenance=d.get("provenance") or {},
            training_state=d.get("training_state"),
        )

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The state dict of the encoder the plugin uses (`use`)."""
        return self.teacher if self.use == "teacher" else self.student


def non_finite_entries(tree: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a nested dict/list/tuple that hold NaN or Inf."""
    if isinstance(tree, torch.Tensor):
        return [prefix or "tensor"] if tree.is_floating_point() and not torch.isfinite(tree).all() else []
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return []
    return [name for k, v in items for name in non_finite_entries(v, f"{prefix}.{k}" if prefix else str(k))]


def _check_weights(state: Any, what: str, source: str, required: bool) -> None:
    """A state dict of finite tensors, or a CheckpointError naming the first bad entry."""
    if state is None and not required:
        return
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source}: '{what}' must be a non-empty state dict of tensors, got {type(state).__name__}")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: {what} entry {key!r} is a {type(value).__name__}, not a tensor")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{source}: {what} weights {key!r} hold NaN or Inf values; the checkpoint "
                                  "comes from a diverged run or is corrupt. Use an earlier checkpoint.")


def tensors_hash(tree: Any) -> str:
    """blake2b of every tensor in a nested dict/list/tuple: its path, dtype, shape and bytes, in order."""
    h = hashlib.blake2b(digest_size=20)

    def walk(node: Any, name: str) -> None:
        if isinstance(node, torch.Tensor):
            t = node.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode("utf-8", "surrogatepass"))
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{name}/{k}")
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{name}/{i}")

    walk(tree, "")
    return h.hexdigest()


def settings_hash(tree: Any) -> str:
    """blake2b of every value in a nested dict/list/tuple that is not a tensor: its path, type and exact
    value (floats by `float.hex`), in order; tensors are left to `tensors_hash`."""
    h = hashlib.blake2b(digest_size=20)

    def walk(node: Any, name: str) -> None:
        if isinstance(node, torch.Tensor):
            return
        if isinstance(node, dict):
            h.update(f"{name}|dict|{len(node)}|".encode())
            for k, v in node.items():
                walk(v, f"{name}/{type(k).__name__}:{k}")
        elif isinstance(node, (list, tuple)):
            h.update(f"{name}|{type(node).__name__}|{len(node)}|".encode())
            for i, v in enumerate(node):
                walk(v, f"{name}/{i}")
        else:
            value = node.hex() if isinstance(node, float) else repr(node)
            h.update(f"{name}|{type(node).__name__}|{value}|".encode("utf-8", "surrogatepass"))

    walk(tree, "")
    return h.hexdigest()


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike, written: WrittenFiles | None = None) -> Path:
    """Write `ckpt` to `path` atomically: a temporary file in the same folder, then rename.

    A crash mid-write leaves the previous file (if any) intact. A failed write (disk full,
    read-only folder) raises an OSError naming `path`; the previous file is left as it was.
    `written`: the record of the folder's writer (`hear_slicer.written`, e.g. a run's): the
    file goes through it, and an existing `path` it does not prove ours is a ForeignFileError.
    """
    path = Path(path)
    if written is not None:
        d = ckpt.to_dict()
        buf = io.BytesIO()
        torch.save({**d, HASH_KEY: tensors_hash(d), SETTINGS_HASH_KEY: settings_hash(d)}, buf)
        try:
            return written.write(path, buf.getvalue())
        except OSError as e:
            cause = e.__cause__ if isinstance(e.__cause__, OSError) else e  # the OS's own words
            raise OSError(e.errno or errno.EIO, f"cannot write checkpoint {path}: {cause.strerror or cause}; "
                          "earlier checkpoints are intact") from e
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OSError(e.errno, f"cannot write checkpoint {path}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            d = ckpt.to_dict()
            torch.save({**d, HASH_KEY: tensors_hash(d), SETTINGS_HASH_KEY: settings_hash(d)}, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a checkpoint gets ordinary file permissions
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, (OSError, RuntimeError)):  # torch reports a failed write as RuntimeError
            raise OSError(getattr(e, "errno", None) or errno.EIO,
                          f"cannot write checkpoint {path}: {e}; earlier checkpoints are intact") from e
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint with `weights_only=True`; every failure is a `CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    try:
        d = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle errors, zip errors, disallowed globals...
        raise CheckpointError(
            f"could not read {path} as a checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "It is not a hear-slicer checkpoint, is corrupt, or holds objects that cannot be loaded safely."
        ) from e
    recorded = d.pop(HASH_KEY, None) if isinstance(d, dict) else None
    settings = d.pop(SETTINGS_HASH_KEY, None) if isinstance(d, dict) else None
    ckpt = Checkpoint.from_dict(d, source=str(path))  # names a bad entry (NaN weights, wrong types) first
    if recorded is not None and recorded != tensors_hash(d):
        raise CheckpointError(f"{path} is corrupt: its tensor data does not match the hash recorded when it was "
                              "written (a changed byte on disk or in transfer); use an earlier checkpoint or copy")
    if settings is not None and settings != settings_hash(d):
        raise CheckpointError(f"{path} is corrupt: its settings (normalisation statistics, frontend, encoder, "
                              "training config, provenance or training state) do not match the hash recorded when "
                              "it was written (a changed byte on disk or in transfer, or an edit); use an earlier "
                              "checkpoint or copy")
    unverified = [what for what, key in (("its tensors", recorded), ("its settings (normalisation statistics, "
                  "frontend, encoder, training config)", settings)) if key is None]
    if unverified:
        log.warning("%s records no hash of %s: they are loaded unverified (written by an older hear-slicer or "
                    "another tool); save it again with hear_slicer.checkpoint.save_checkpoint to protect it",
                    path, " or ".join(unverified))
    return ckpt


def _load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(
            f"the {what} weights do not match the encoder config in the checkpoint: {' '.join(first[:3])}"
        ) from e


def build_encoder(ckpt: Checkpoint) -> AudioNTT2020:
    """The encoder selected by `ckpt.use`, with its weights loaded, in eval mode."""
    encoder = AudioNTT2020(ckpt.encoder)
    _load_weights(encoder, ckpt.encoder_state(), ckpt.use)
    return encoder.eval()


def build_frontend(ckpt: Checkpoint) -> LogMelFrontend:
    """The log-mel frontend with the checkpoint's normalisation statistics."""
    try:
        return LogMelFrontend(ckpt.frontend, mean=ckpt.norm_mean, std=ckpt.norm_std)
    except ValueError as e:
        raise CheckpointError(f"invalid normalisation statistics in checkpoint: {e}") from e
