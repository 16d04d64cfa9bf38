"""The run's one typed config: dataclasses loaded from YAML, overridable with `--set key.sub=value`.

Every value is type-checked when loaded (ints are accepted where floats are expected,
tuples from YAML lists), then range-checked by the `CHECKS` its dataclass declares (see
`pretrain.checks`) and by the cross-key `RELATIONS` below, before any work starts; an
unknown key is an error that lists the known ones. The
objective's hyper-parameters (`objective.params`) are checked against the dataclass the
selected objective declares (`Objective.Config`), so adding a method needs no change here.
`to_dict` gives the plain dict saved into every checkpoint, and `from_dict` reads it back.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from hear_slicer.encoder import EncoderConfig
from hear_slicer.frontend import FrontendConfig

from .augment import AugmentConfig
from .checks import Check, Relation, above, at_least, between, each, field_errors, matches, non_empty
from .errors import UsageError
from .objectives import objective_class

__all__ = ["DataConfig", "StatsConfig", "ObjectiveConfig", "OptimConfig", "RunConfig", "TrainConfig",
           "ConfigError", "load_config", "config_from_dict", "apply_overrides", "parse_override", "RELATIONS",
           "RESUMABLE_KEYS", "config_changes"]


class ConfigError(UsageError):
    """A config file or override is invalid; the message names the key."""


@dataclass
class DataConfig:
    path: str = ""  # folder (searched recursively), a .csv/.txt manifest of audio files, or a prepared store
    extensions: tuple[str, ...] = ("wav", "flac", "ogg")
    crop_seconds: float = 0.95  # RECIPE.md
    batch_size: int = 128  # per process; released SLICER code: 128 x 4 GPUs
    num_workers: int = 2
    silence_peak: float = 1e-4  # files whose peak |x| is below this are skipped as silent
    scan_headers: bool = True  # check every file's header before training (skips unreadable/empty ones early)
    max_peak: float = 1000.0  # files whose peak |x| is above this are skipped as out of range (float audio is ~[-1, 1])
    scan_workers: int = 8  # threads reading headers; results cached in run.out/header_scan.csv
    verify_store: bool = False  # a prepared store: check every clip's hash when opened (else sizes and the index only)
    CHECKS: ClassVar[dict[str, Check]] = {
        "extensions": Check("a non-empty list of non-empty extensions", lambda v: len(v) > 0 and all(v)),
        "crop_seconds": between(0, 600, low_open=True), "batch_size": between(2, 1 << 20),
        "num_workers": between(0, 1024), "silence_peak": between(0, 1, high_open=True), "max_peak": above(0.0),
        "scan_workers": between(1, 1024)}


@dataclass
class StatsConfig:
    fraction: float = 0.05  # of the files, for mean/std and k-means (released SLICER code: 5 %)
    min_files: int = 64
    max_files: int = 5000
    kmeans_iters: int = 20  # released SLICER code
    kmeans_init: int = 3  # k-means restarts (scikit-learn n_init)
    CHECKS: ClassVar[dict[str, Check]] = {"fraction": between(0, 1, low_open=True), "min_files": at_least(1),
                                          "max_files": at_least(1), "kmeans_iters": at_least(1),
                                          "kmeans_init": at_least(1)}


@dataclass
class ObjectiveConfig:
    name: str = "slicer"
    params: Any = None  # the objective's Config dataclass (type-checked against it)


@dataclass
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"  # research snapshot: AdamW; released code: SGD
    lr: float = 3e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9  # SGD only
    warmup_steps: int = 500
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 3.0  # max global grad norm; 0 disables (not in the sources: a safety net)
    CHECKS: ClassVar[dict[str, Check]] = {
        "lr": above(0.0), "weight_decay": between(0, 1), "betas": each(between(0, 1, high_open=True)),
        "momentum": between(0, 1, high_open=True), "warmup_steps": at_least(0), "min_lr_ratio": between(0, 1),
        "grad_clip": at_least(0.0)}


@dataclass
class RunConfig:
    out: str = "runs/slicer"
    steps: int = 20000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # autocast of the encoder and heads (pretrain.precision): fp32 | bf16 (CUDA or CPU) | fp16 (CUDA only,
    # with a GradScaler) | auto (bf16 on CUDA, fp16 on GPUs without bfloat16, fp32 on CPU; the old run.amp=true)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    checkpoint_every: int = 1000
    keep_last: int = 3
    keep_steps: tuple[int, ...] = ()  # checkpoints of these steps are never pruned (learning curves)
    log_every: int = 10
    progress: bool = True  # a bar on a terminal, else a heartbeat line a minute (main process)
    tensorboard: bool = True  # log.csv's rows also as TensorBoard curves in <out>/tensorboard (if installed)
    save_rank_states: bool = False  # debug: each process writes its final weights to out/rank{r}_final.pt
    sync_batchnorm: bool = False  # DDP on CUDA: SyncBatchNorm (batch statistics over all processes)
    # resume with another number of processes than the checkpoint's: the global batch changes and the other
    # processes' augmentation memories and BatchNorm statistics are lost (refused unless true)
    allow_world_size_change: bool = False
    CHECKS: ClassVar[dict[str, Check]] = {
        "out": non_empty("a folder path"), "steps": at_least(1), "seed": between(0, 2**31 - 1),
        "device": matches(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, mps, cuda or cuda:N"),
        "checkpoint_every": at_least(1), "keep_last": at_least(1), "keep_steps": each(at_least(1)),
        "log_every": at_least(1)}


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


#: Checks of the config sections defined in `hear_slicer` (which does not import `pretrain`).
EXTERNAL_CHECKS: dict[type, dict[str, Check]] = {
    FrontendConfig: {"sample_rate": between(1000, 384000), "n_fft": between(16, 1 << 16),
                     "win_length": at_least(1), "hop_length": between(1, 1 << 16), "n_mels": between(8, 1024),
                     "f_min": at_least(0.0), "f_max": above(0.0), "eps": above(0.0)},
    EncoderConfig: {"n_mels": between(8, 1024), "channels": between(1, 4096), "d": between(1, 1 << 16),
                    "dropout": between(0, 1, high_open=True)},
}


def _crop_samples(c: "TrainConfig") -> int:
    return round(c.data.crop_seconds * c.frontend.sample_rate)


#: Checks that relate several keys, run on the whole config after every section passed its own.
RELATIONS: list[Relation] = [
    Relation(("frontend.n_mels", "encoder.n_mels"), "equal", lambda c: c.frontend.n_mels == c.encoder.n_mels),
    Relation(("stats.min_files", "stats.max_files"), "min_files <= max_files",
             lambda c: c.stats.min_files <= c.stats.max_files),
    Relation(("data.silence_peak", "data.max_peak"), "silence_peak < max_peak",
             lambda c: c.data.silence_peak < c.data.max_peak),
    Relation(("objective.params.split_bn_groups", "data.batch_size"), "groups <= batch size (a clip per group at least)",
             lambda c: getattr(c.objective.params, "split_bn_groups", 1) <= c.data.batch_size),
    Relation(("augment.kmix.r", "augment.kmix.memory"), "r <= memory",
             lambda c: c.augment.kmix.r <= c.augment.kmix.memory),
    Relation(("data.crop_seconds", "frontend.n_fft", "frontend.hop_length"),
             "a crop of at least n_fft samples and 8 frames (one encoder frame)",
             lambda c: _crop_samples(c) >= c.frontend.n_fft and c.frontend.num_frames(_crop_samples(c)) >= 8),
]


def _to_plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_plain(v) for v in x]
    return x


# ----------------------------------------------------------------------------- typed conversion
def _convert(value: Any, tp: Any, key: str) -> Any:
    """`value` checked/converted to type `tp`; `key` names it in errors."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError("; ".join(errors))
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key} must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key} must have {len(args)} elements, got {value!r}")
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp}")


def _build(cls: type, values: Any, prefix: str) -> Any:
    """Instance of dataclass `cls` from a mapping (missing keys keep their defaults)."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(values) - set(names))
    if unknown:
        where = prefix or "the top level"
        raise ConfigError(f"unknown config key(s) {', '.join(repr(f'{prefix}.{u}'.lstrip('.')) for u in unknown)}; "
                          f"known keys in {where}: {', '.join(names)}")
    kwargs = {n: _convert(values[n], hints[n], f"{prefix}.{n}".lstrip(".")) for n in names if n in values}
    errors = field_errors(cls, kwargs, prefix, EXTERNAL_CHECKS.get(cls))
    if errors:
        raise ConfigError("; ".join(errors))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {prefix or 'config'}: {e}") from e


def _upgrade_legacy_keys(d: dict[str, Any]) -> dict[str, Any]:
    """`run.amp` (before `run.precision` existed) -> `run.precision`, with a note.

    amp=true was: bfloat16 autocast on a CUDA GPU with bfloat16, float16 with a GradScaler on
    an older GPU, nothing on CPU; that is `precision: auto`. amp=false is `precision: fp32`.
    Checkpoints written before the change store `run.amp` and still load and resume.
    """
    run = d.get("run")
    if not isinstance(run, dict) or "amp" not in run:
        return d
    run = dict(run)
    amp = run.pop("amp")
    if "precision" in run:
        raise ConfigError(f"run.amp={amp!r} and run.precision={run['precision']!r} are both set; run.amp is the "
                          "old name of run.precision: keep only run.precision (fp32 | bf16 | fp16 | auto)")
    if not isinstance(amp, bool):
        raise ConfigError(f"run.amp must be true or false, got {amp!r} (run.amp is replaced by run.precision)")
    run["precision"] = "auto" if amp else "fp32"
    warnings.warn(f"config key run.amp={str(amp).lower()} is replaced by run.precision; read as "
                  f"run.precision={run['precision']} (the same behaviour)", FutureWarning, stacklevel=3)
    return {**d, "run": run}


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Typed TrainConfig from a plain dict (YAML or a checkpoint's `train_config`).

    Legacy keys are upgraded first (`run.amp` -> `run.precision`, see `_upgrade_legacy_keys`).
    """
    d = _upgrade_legacy_keys(dict(d or {}))
    objective = dict(d.pop("objective", None) or {})
    cfg = _build(TrainConfig, d, "")
    name = objective.pop("name", "slicer")
    params = objective.pop("params", None)
    if objective:
        raise ConfigError(f"unknown config key(s) {sorted('objective.' + k for k in objective)}; "
                          "known keys in objective: name, params")
    try:
        cls = objective_class(name)
    except ValueError as e:
        raise ConfigError(f"objective.name: {e}") from e
    cfg.objective = ObjectiveConfig(name=name, params=_build(cls.Config, params, "objective.params"))
    errors = []
    for rel in RELATIONS:
        if not rel.test(cfg):
            values = ", ".join(f"{k}={_lookup(cfg, k)!r}" for k in rel.keys)
            errors.append(f"{' and '.join(rel.keys)} must be {rel.allowed}, got {values}")
    if errors:
        raise ConfigError("; ".join(errors))
    return cfg


def _lookup(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=1e-3' -> (['optim', 'lr'], 0.001); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r} has an empty key part")
    try:
        return parts, yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from e


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each `key.sub=value` in the plain dict `d` (a copy); types are checked later."""
    d = copy.deepcopy(d)
    for text in overrides:
        parts, value = parse_override(text)
        node = d
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {p} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return d


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """TrainConfig from a YAML file (or the defaults) with `key.sub=value` overrides applied."""
    d: dict[str, Any] = {}
    if path is not None:
        d = read_yaml(path)
    return config_from_dict(apply_overrides(d, list(overrides)))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds; a ConfigError names the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"cannot read config file {path}: {str(e).splitlines()[0]}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{path} must hold a YAML mapping at the top level")
    return d


def merge_into(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` (a copy) with every key `changes` sets, section by section."""
    out = copy.deepcopy(base)
    for k, v in changes.items():
        out[k] = merge_into(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


# ----------------------------------------------------------------------------- resume
#: Keys a resumed run may change: they do not touch the saved state (weights, optimiser
#: moments, queue, memories, statistics, data order). Everything else is refused.
RESUMABLE_KEYS = (
    "run.steps", "run.out", "run.device", "run.precision", "run.checkpoint_every", "run.keep_last", "run.keep_steps",
    "run.log_every", "run.progress", "run.tensorboard", "run.save_rank_states", "run.allow_world_size_change",
    "data.num_workers", "data.scan_headers", "data.scan_workers", "data.verify_store",
    "optim.lr", "optim.warmup_steps", "optim.min_lr_ratio", "optim.grad_clip",
)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_changes(stored: TrainConfig, requested: TrainConfig) -> tuple[list[str], list[str]]:
    """(accepted, refused) changes from `stored` to `requested`, as 'key: old -> new' lines."""
    a, b = _flatten(stored.to_dict()), _flatten(requested.to_dict())
    accepted, refused = [], []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            line = f"{key}: {a.get(key)!r} -> {b.get(key)!r}"
            (accepted if key in RESUMABLE_KEYS else refused).append(line)
    return accepted, refused
