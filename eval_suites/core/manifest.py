"""The evaluation manifest: which HEAR models, which task folders, which protocols.

A manifest is a YAML file, read with ``yaml.safe_load`` (no Python objects can be built
from it) and checked completely before any work starts: every problem is listed with the
key it concerns and what was expected. Example::

    suite: demo                      # default suite of the tasks (per-suite means)
    tasks_root: tasks                # folder holding the task folders, relative to this file
    tasks_root_env: HEAR_TASKS_ROOT  # or: take it from this environment variable
    cache_dir: null                  # embeddings cache (default: <out>/embeddings)
    models:
      - name: slicer                 # unique display name
        module: hear_slicer          # any importable HEAR 2021 module
        checkpoint: null             # passed to load_model (path relative to this file)
        options: {}                  # keyword arguments of load_model
    tasks:
      - path: keywords-v1-full       # relative to the tasks root, or absolute
        name: keywords               # optional, default: the folder name
        suite: demo                  # optional, default: the top-level suite
        protocols: [linear, heareval]   # optional, default: every protocol configured below
        settings:                    # optional: this task's own protocol settings, over the ones below
          heareval: {param_grid: {check_val_every_n_epoch: [10]}}
    protocols:                       # the protocols and their settings
      linear: {epochs: 50, lr: 0.001, batch_size: 32, seed: 0}
      heareval: {grid: fast, grid_points: 8}
      knn: {ks: [1, 3, 5, 10, 20, 50], standardize: false}   # no training: seconds

A task's ``settings`` replace the top-level settings of its protocols for that task only
(:meth:`Manifest.protocol_config`); a mapping setting (heareval's ``param_grid``) is updated
entry by entry. They are checked like the top-level ones, where they enter.

The tasks root is, in order: the ``--tasks-root`` option, the environment variable
named by ``tasks_root_env``, the ``tasks_root`` key, the manifest's own folder. A
manifest that names ``tasks_root_env`` but neither gets a root nor has ``tasks_root``
is an error (e.g. ``hear2021.yaml``, whose tasks live wherever the user put them).

:func:`load_manifest` checks the file's structure; :func:`check_inputs` checks what the
manifest points at (task folders, HEAR modules, checkpoints) and is run by
``python -m eval_suites run`` before the first embedding is computed.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eval_suites.core.model_spec import ModelSpec, module_name_problem
from eval_suites.errors import UsageError
from eval_suites.core.protocols.heareval import HearevalConfig
from eval_suites.core.protocols.knn import KnnConfig
from eval_suites.core.protocols.linear import LinearConfig

__all__ = [
    "PROTOCOLS",
    "ManifestError",
    "ModelSpec",
    "TaskSpec",
    "Manifest",
    "load_manifest",
    "check_inputs",
    "merge_settings",
]

PROTOCOLS: dict[str, type] = {"linear": LinearConfig, "heareval": HearevalConfig,
                              "knn": KnnConfig}
"""Protocol name -> its settings dataclass (the keys a manifest may give it)."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_TOP_KEYS = {"suite", "tasks_root", "tasks_root_env", "cache_dir", "models", "tasks", "protocols"}
_MODEL_KEYS = {"name", "module", "checkpoint", "options"}
_TASK_KEYS = {"path", "name", "suite", "protocols", "settings"}


class ManifestError(UsageError):
    """A manifest is malformed or points at something unusable; lists every problem."""

    def __init__(self, where: str, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{where}: {len(self.problems)} problem(s):\n{lines}")


@dataclass(frozen=True)
class TaskSpec:
    """One HEAR-format task folder and the protocols it is scored with; ``settings``: protocol
    -> this task's own settings over the manifest's (e.g. ``{"heareval": {"param_grid":
    {"check_val_every_n_epoch": [10]}}}``)."""

    name: str
    path: Path
    suite: str
    protocols: tuple[str, ...]
    settings: dict[str, dict] = field(default_factory=dict, hash=False)


@dataclass
class Manifest:
    """A checked manifest; paths are absolute."""

    source: Path
    models: list[ModelSpec]
    tasks: list[TaskSpec]
    linear: LinearConfig
    heareval: HearevalConfig
    tasks_root: Path
    cache_dir: Path | None = None
    knn: KnnConfig = field(default_factory=KnnConfig)

    def protocol_config(self, protocol: str, task: TaskSpec | None = None
                        ) -> LinearConfig | HearevalConfig | KnnConfig:
        """The settings of ``protocol`` ("linear", "heareval" or "knn"); for ``task``, with the
        task's own ``settings`` over them (:func:`merge_settings`)."""
        config = {"linear": self.linear, "heareval": self.heareval, "knn": self.knn}[protocol]
        if task is not None and protocol in task.settings:
            return merge_settings(config, task.settings[protocol])
        return config

    def select(self, models: list[str] | None = None, tasks: list[str] | None = None) -> "Manifest":
        """A copy restricted to the named models and tasks (None keeps all)."""
        problems = []
        for what, names, items in (("--models", models, self.models), ("--tasks", tasks, self.tasks)):
            known = [i.name for i in items]
            for n in names or []:
                if n not in known:
                    problems.append(f"{what}: no {what[2:-1]} named {n!r}; expected one of {known}")
        if problems:
            raise ManifestError(str(self.source), problems)
        return dataclasses.replace(
            self,
            models=[m for m in self.models if models is None or m.name in models],
            tasks=[t for t in self.tasks if tasks is None or t.name in tasks],
        )


def merge_settings(config: Any, overrides: dict) -> Any:
    """``config`` (a protocol's settings dataclass) with ``overrides`` (a task's settings):
    a mapping setting (heareval's ``param_grid``) is updated entry by entry, any other replaced.
    The result is checked by the dataclass itself (``ValueError``/``TypeError``)."""
    changes = {}
    for key, value in overrides.items():
        old = getattr(config, key)
        changes[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
    return dataclasses.replace(config, **changes)


# --------------------------------------------------------------------------- parsing


def _expect_name(value: Any, key: str, p: list[str]) -> str | None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        p.append(f"key {key!r}: expected a name of letters, digits and '_.+-' "
                 f"(starting with a letter or digit), got {value!r}")
        return None
    return value


def _unknown_keys(d: dict, allowed: set[str], where: str, p: list[str]) -> None:
    for k in d:
        if k not in allowed:
            p.append(f"{where}: unknown key {k!r}; expected keys among {sorted(allowed)}")


def _parse_protocols(raw: Any, p: list[str]) -> dict[str, Any]:
    """Protocol settings from the top-level ``protocols`` mapping (missing -> linear only)."""
    if raw is None:
        return {"linear": LinearConfig()}
    if not isinstance(raw, dict) or not raw:
        p.append(f"key 'protocols': expected a mapping of protocol name -> settings "
                 f"(protocols: {sorted(PROTOCOLS)}), got {raw!r}")
        return {}
    out: dict[str, Any] = {}
    for name, settings in raw.items():
        if name not in PROTOCOLS:
            p.append(f"key 'protocols': unknown protocol {name!r}; expected one of {sorted(PROTOCOLS)}")
            continue
        cls = PROTOCOLS[name]
        settings = {} if settings is None else settings
        if not isinstance(settings, dict):
            p.append(f"key 'protocols.{name}': expected a mapping of settings, got {settings!r}")
            continue
        fields = {f.name: f for f in dataclasses.fields(cls)}
        bad = [k for k in settings if k not in fields]
        for k in bad:
            p.append(f"key 'protocols.{name}.{k}': unknown setting; expected one of {sorted(fields)}")
        if bad:
            continue
        try:
            out[name] = cls(**settings)
        except (TypeError, ValueError) as e:
            p.append(f"key 'protocols.{name}': {e}")
    return out


def _parse_task_settings(raw: Any, where: str, protocols: dict[str, Any], task_protocols: list[str],
                         p: list[str]) -> dict[str, dict]:
    """A task's ``settings``: protocol -> settings over the top-level ones, each protocol
    configured and scored on the task, each key a setting of it, the merged settings valid."""
    key = f"{where}.settings"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        p.append(f"key '{key}': expected a mapping of protocol name -> settings for this task "
                 f"(protocols: {sorted(protocols)}), got {raw!r}")
        return {}
    out: dict[str, dict] = {}
    for name, overrides in raw.items():
        if name not in protocols:
            p.append(f"key '{key}': protocol {name!r} is not configured under the top-level "
                     f"'protocols' key; expected one of {sorted(protocols)}")
            continue
        if name not in task_protocols:
            p.append(f"key '{key}.{name}': the task is not scored with {name!r}; expected settings "
                     f"of its protocols {task_protocols}")
            continue
        if not isinstance(overrides, dict) or not overrides:
            p.append(f"key '{key}.{name}': expected a non-empty mapping of {name} settings, got {overrides!r}")
            continue
        fields = sorted(f.name for f in dataclasses.fields(PROTOCOLS[name]))
        bad = [k for k in overrides if k not in fields]
        for k in bad:
            p.append(f"key '{key}.{name}.{k}': unknown setting; expected one of {fields}")
        if bad:
            continue
        try:
            merge_settings(protocols[name], overrides)
        except (TypeError, ValueError) as e:
            p.append(f"key '{key}.{name}': {e}")
            continue
        out[name] = dict(overrides)
    return out


def _resolve(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def _tasks_root(raw: dict, base: Path, cli_root: str | Path | None, p: list[str]) -> Path:
    env_name = raw.get("tasks_root_env")
    if env_name is not None and (not isinstance(env_name, str) or not env_name):
        p.append(f"key 'tasks_root_env': expected an environment variable name, got {env_name!r}")
        env_name = None
    key_root = raw.get("tasks_root")
    if key_root is not None and (not isinstance(key_root, str) or not key_root):
        p.append(f"key 'tasks_root': expected a folder path, got {key_root!r}")
        key_root = None
    if cli_root is not None:
        return Path(cli_root).expanduser().resolve()
    if env_name and os.environ.get(env_name):
        return Path(os.environ[env_name]).expanduser().resolve()
    if key_root:
        return _resolve(base, key_root).resolve()
    if env_name:
        p.append(f"tasks root not given: pass --tasks-root DIR or set the environment "
                 f"variable {env_name} to the folder holding the task folders")
    return base


def load_manifest(path: str | Path, tasks_root: str | Path | None = None) -> Manifest:
    """Read and check a manifest file (structure only; see :func:`check_inputs`).

    ``tasks_root`` (the ``--tasks-root`` option) overrides the manifest's own root.
    Raises :class:`ManifestError` listing every problem.
    """
    source = Path(path).resolve()
    where = f"manifest {path}"
    if not source.is_file():
        raise ManifestError(where, [f"file not found; expected a YAML manifest at {source}"])
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ManifestError(where, [f"not UTF-8 text (byte {e.start}); expected a YAML manifest"]) from None
    except yaml.YAMLError as e:
        raise ManifestError(where, [f"not valid YAML (only plain YAML is accepted): {e}"]) from None
    except RecursionError:
        raise ManifestError(where, ["nested too deeply to be a manifest"]) from None
    if not isinstance(raw, dict):
        raise ManifestError(where, [f"expected a mapping with keys 'models' and 'tasks', "
                                    f"got {type(raw).__name__}"])
    p: list[str] = []
    base = source.parent
    _unknown_keys(raw, _TOP_KEYS, "top level", p)

    suite = raw.get("suite", "default")
    if _expect_name(suite, "suite", p) is None:
        suite = "default"
    root = _tasks_root(raw, base, tasks_root, p)
    cache_dir = raw.get("cache_dir")
    if cache_dir is not None and (not isinstance(cache_dir, str) or not cache_dir):
        p.append(f"key 'cache_dir': expected a folder path or null, got {cache_dir!r}")
        cache_dir = None
    protocols = _parse_protocols(raw.get("protocols"), p)

    models: list[ModelSpec] = []
    raw_models = raw.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        p.append(f"key 'models': expected a non-empty list of models "
                 f"({{name, module, checkpoint, options}}), got {raw_models!r}")
        raw_models = []
    for i, m in enumerate(raw_models):
        w = f"models[{i}]"
        if not isinstance(m, dict):
            p.append(f"key '{w}': expected a mapping with keys 'name' and 'module', got {m!r}")
            continue
        _unknown_keys(m, _MODEL_KEYS, w, p)
        name = _expect_name(m.get("name"), f"{w}.name", p)
        module = m.get("module")
        problem = module_name_problem(module)
        if problem:
            p.append(f"key '{w}.module': {problem}")
            module = None
        ckpt = m.get("checkpoint")
        if ckpt is not None and (not isinstance(ckpt, str) or not ckpt):
            p.append(f"key '{w}.checkpoint': expected a file path or null, got {ckpt!r}")
            ckpt = None
        options = m.get("options") or {}
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            p.append(f"key '{w}.options': expected a mapping of load_model keyword "
                     f"arguments, got {options!r}")
            options = {}
        if name and module:
            models.append(ModelSpec(name=name, module=module,
                                    checkpoint=_resolve(base, ckpt).resolve() if ckpt else None,
                                    options=dict(options)))
    _no_repeats([m.name for m in models], "models", p)

    tasks: list[TaskSpec] = []
    raw_tasks = raw.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        p.append(f"key 'tasks': expected a non-empty list of tasks ({{path, name, suite, "
                 f"protocols}}), got {raw_tasks!r}")
        raw_tasks = []
    for i, t in enumerate(raw_tasks):
        w = f"tasks[{i}]"
        if isinstance(t, str):
            t = {"path": t}
        if not isinstance(t, dict):
            p.append(f"key '{w}': expected a task folder path or a mapping with key 'path', got {t!r}")
            continue
        _unknown_keys(t, _TASK_KEYS, w, p)
        tpath = t.get("path")
        if not isinstance(tpath, str) or not tpath:
            p.append(f"key '{w}.path': expected a task folder (relative to the tasks root), got {tpath!r}")
            continue
        folder = _resolve(root, tpath)
        name = _expect_name(t.get("name", folder.name), f"{w}.name", p)
        tsuite = _expect_name(t.get("suite", suite), f"{w}.suite", p)
        tprot = t.get("protocols", list(protocols))
        if (not isinstance(tprot, list) or not tprot
                or not all(isinstance(x, str) for x in tprot)):
            p.append(f"key '{w}.protocols': expected a non-empty list among "
                     f"{sorted(protocols)}, got {tprot!r}")
            continue
        for x in tprot:
            if x not in protocols:
                p.append(f"key '{w}.protocols': protocol {x!r} is not configured under the "
                         f"top-level 'protocols' key; expected one of {sorted(protocols)}")
        settings = _parse_task_settings(t.get("settings"), w, protocols, tprot, p)
        if name and tsuite:
            tasks.append(TaskSpec(name=name, path=folder, suite=tsuite,
                                  protocols=tuple(dict.fromkeys(tprot)), settings=settings))
    _no_repeats([t.name for t in tasks], "tasks", p)

    if p:
        raise ManifestError(where, p)
    return Manifest(
        source=source, models=models, tasks=tasks,
        linear=protocols.get("linear", LinearConfig()),
        heareval=protocols.get("heareval", HearevalConfig()),
        knn=protocols.get("knn", KnnConfig()),
        tasks_root=root,
        cache_dir=_resolve(base, cache_dir).resolve() if cache_dir else None,
    )


def _no_repeats(names: list[str], key: str, p: list[str]) -> None:
    seen = set()
    for n in names:
        if n in seen:
            p.append(f"key '{key}': name {n!r} is used twice; names must be unique")
        seen.add(n)


def check_inputs(manifest: Manifest, check_audio: bool = False, load_models: bool = False) -> list[str]:
    """Problems with what the manifest points at (empty list when all is usable).

    Checks that each HEAR module can be found (without importing it), each checkpoint
    exists, and each task folder is a valid HEAR task (``validate_task`` when
    ``check_audio``, else the metadata, vocabulary and labels only). With ``load_models``
    (``python -m eval_suites list``), each model whose module and checkpoint are there is
    also loaded as every cell of ``run`` loads it (:func:`eval_suites.core.embeddings.load_problem`:
    an option ``load_model`` does not take, a value out of range, a checkpoint it refuses).
    """
    from eval_suites.core.embeddings import load_problem
    from eval_suites.hear_format.task import TaskFormatError, load_task, validate_task

    p: list[str] = []
    for m in manifest.models:
        try:
            found = importlib.util.find_spec(m.module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            p.append(f"model {m.name!r}: module {m.module!r} cannot be imported; install it "
                     f"or put it on PYTHONPATH")
        if m.checkpoint is not None and m.checkpoint.is_dir():
            p.append(f"model {m.name!r}: checkpoint {m.checkpoint} is a directory, not a checkpoint file "
                     "(give the .pt file, e.g. a run's checkpoints/step_XXXXXXXX.pt)")
        elif m.checkpoint is not None and not m.checkpoint.is_file():
            p.append(f"model {m.name!r}: checkpoint {m.checkpoint} does not exist")
        if load_models and found and (m.checkpoint is None or m.checkpoint.is_file()):
            problem = load_problem(m)
            if problem:
                p.append(f"model {m.name!r}: {problem}")
    for t in manifest.tasks:
        try:
            task = (validate_task if check_audio else load_task)(t.path)
        except TaskFormatError as e:
            p.append(f"task {t.name!r} ({t.path}): not a usable HEAR task: "
                     + "; ".join(e.problems[:5]) + (" ..." if len(e.problems) > 5 else ""))
            continue
        if ("heareval" in t.protocols and manifest.protocol_config("heareval", t).standardize
                and task.metadata.split_mode != "trainvaltest"):
            p.append(f"task {t.name!r}: protocols.heareval.standardize is true but the task has "
                     f"split_mode {task.metadata.split_mode!r}; heareval rotates its folds over one "
                     f"set of files, so no train-only statistics exist: set standardize: false or "
                     f"give the task protocols without heareval")
    return p
