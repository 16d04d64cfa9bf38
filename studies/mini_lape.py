"""Mini-LAPE: the paper's comparison, at a small equal budget, on the offline demo data.

    python -m studies.mini_lape                      # 5 methods + 2 references
    python -m studies.mini_lape --ablations          # ... and SLICER's ablations
    python -m studies.mini_lape --methods slicer byol_a --pretrain-seeds 0 1 --out results/mini_lape_seeds
    python -m studies.mini_lape --steps 1200 --runs runs/mini_lape_1200 --out results/mini_lape_1200

1. builds the demo data if missing (``eval_suites.synthetic.demo_data``, cached);
2. pretrains SLICER, BYOL-A, DeLoRes-S, DeLoRes-M and COLA on the demo corpus with the same
   budget: the sizes of ``pretrain/configs/demo.yaml`` (batch 32, 600 steps, warm-up 50,
   augmentation memories 512, a 512-key queue where a method has one) applied to each
   method's own config (``pretrain/configs/<method>.yaml``), each run a real
   ``python -m pretrain`` process (``--parallel`` at a time; an unfinished run is resumed, a
   finished one reused after its config is checked);
3. adds two references that learn nothing: the encoder at random init
   (``hear_slicer.load_model(<SLICER run>, random_init=True)``: seed 0, the SLICER run's
   frontend and normalisation statistics) and plain log-mel statistics
   (``eval_suites.references.logmel_stats``);
4. scores every model on the demo tasks (``eval_suites/manifests/demo.yaml``) with the linear
   protocol, once per probe seed (embeddings computed once, cached);
5. writes ``<out>/mini_lape.csv`` (one row per run, task and probe seed, with the folder of
   the cell and its per-clip outputs), ``mini_lape.md`` (per method: mean over its pretraining
   seeds x probe seeds with a 95 % bootstrap interval, hierarchical over pretraining seeds and
   test clips, methods ranked by their mean over tasks; then SLICER minus each other method,
   a paired bootstrap on the same test clips) and ``mini_lape.png`` (bars with the intervals).

Each method is pretrained once per ``--pretrain-seeds`` (default: 0 only; the seed sets the
initialisation, the data order and the augmentations); the ablations once, with the first.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from functools import lru_cache

import pandas as pd

from eval_suites import quiet_heareval_imports
from eval_suites.core.atomic_files import write_atomically
from eval_suites.core.clip_outputs import load_outputs
from eval_suites.synthetic.demo_data import PRESETS, build_demo
from eval_suites.core.intervals import BootstrapConfig, CellOutputs, difference_intervals, model_intervals, supports
from eval_suites.core.manifest import ManifestError, ModelSpec, load_manifest
from eval_suites.core.results import cell_dir
from eval_suites.errors import DataError, UsageError, run_command
from studies.labels import label

__all__ = ["METHODS", "ABLATIONS", "budget_overrides", "PretrainRun", "plan_runs", "run_state", "StudyError",
           "RegistryError", "load_records", "launch_run", "aggregate", "differences", "run_differences", "chance_levels",
           "markdown_table", "markdown_differences", "plot_table", "build_parser", "main"]

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "pretrain" / "configs"
MANIFESTS = REPO / "eval_suites" / "manifests"
DEMO_MANIFEST = MANIFESTS / "demo.yaml"


def manifest_for(preset: str) -> Path:
    """The shipped manifest of a demo-data preset: ``<preset>.yaml`` if there is one, else demo.yaml."""
    return next(p for p in (MANIFESTS / f"{preset}.yaml", DEMO_MANIFEST) if p.is_file())


class StudyError(UsageError):
    """The study cannot go on as asked (a --runs folder holding another run, nothing to report): exit 2."""


class RegistryError(DataError):
    """``<out>/runs.json`` cannot be read as the study's records: exit 3."""


BUDGET_STEPS, BUDGET_BATCH = 600, 32
"""The study's budget: steps and per-process batch of every run."""


def budget_overrides(config: Path, steps: int = BUDGET_STEPS, batch: int = BUDGET_BATCH) -> dict[str, str]:
    """The reduced-budget rule, applied alike to every method from its own config (never tuned
    for one method; docs/mini_lape.md "Budget rule"):

    - `steps` of batch `batch`, warm-up steps / 12, one loader worker;
    - augmentation memories 512, k-mix r scaled with them (r / memory as in the config);
    - every EMA teacher's time constant 1 / (1 - m) at most 10 % of the steps: the effective
      per-step momentum m ** updates_per_step is capped at 1 - 10 / steps (else 0.999 leaves
      55 % of a teacher at its random init after 600 steps);
    - every key queue at most 16 x batch keys (the last 8 steps' two views);
    - cluster columns at most the batch (the released SLICER code: C = 128 for a batch of 128).
    """
    from pretrain.config import load_config

    cfg = load_config(config)
    memory = 512
    out: dict[str, object] = {
        "data.batch_size": batch, "data.num_workers": 1,
        "augment.mixup.memory": memory, "augment.kmix.memory": memory,
        "augment.kmix.r": max(1, cfg.augment.kmix.r * memory // cfg.augment.kmix.memory),
        "stats.fraction": 0.25, "optim.warmup_steps": max(1, steps // 12), "run.steps": steps,
        "run.checkpoint_every": 100, "run.keep_last": 2,
    }
    p = cfg.objective.params
    if hasattr(p, "momentum"):
        cap = max(0.0, round(1 - 10 / steps, 5))
        if p.momentum ** getattr(p, "ema_updates_per_step", 1) > cap:
            out["objective.params.momentum"] = cap
            if hasattr(p, "ema_updates_per_step"):
                out["objective.params.ema_updates_per_step"] = 1
    if hasattr(p, "queue_size"):
        out["objective.params.queue_size"] = min(p.queue_size, 16 * batch)
    if hasattr(p, "n_clusters"):
        out["objective.params.n_clusters"] = min(p.n_clusters, batch)
    return {k: str(v) for k, v in out.items()}


METHODS: dict[str, str] = {
    "slicer": "slicer.yaml",
    "byol_a": "byol_a.yaml",
    "delores_s": "delores_s.yaml",
    "delores_m": "delores_m.yaml",
    "cola": "cola.yaml",
}
"""Method -> its config in pretrain/configs (the budget rule is applied to each)."""

ABLATIONS: dict[str, dict[str, str]] = {
    "slicer_no_kmix": {"augment.kmix.enabled": "false"},
    "slicer_no_cluster": {"objective.params.cluster_weight": "0"},
    "slicer_no_entropy": {"objective.params.entropy_term": "false"},
    "slicer_no_split_bn": {"objective.params.split_bn_groups": "1"},
    "slicer_rrc_time_only": {"augment.rrc.frequency": "false"},
}
"""SLICER ablations (each on top of SLICER's config under the budget rule): one component changed."""

REFERENCES = ("random_init", "logmel_stats")


@dataclass
class PretrainRun:
    name: str
    config: Path
    overrides: dict[str, str]
    out: Path
    group: str = ""  # the method or ablation; runs differing only in their seed share it
    seed: int = 0

    def set_args(self) -> list[str]:
        return [f"{k}={v}" for k, v in {**self.overrides, "run.out": str(self.out)}.items()]


def plan_runs(runs_root: Path, corpus: Path, steps: int, methods: list[str], ablations: list[str],
              seeds: list[int] = (0,), overrides: dict[str, str] | None = None, tag: str = ""
              ) -> list[PretrainRun]:
    """The pretraining runs to have: each method once per pretraining seed (all methods at one
    seed before the next seed), then each ablation with the first seed. A run is named after its method or ablation, then
    ``_<tag>`` when `overrides` (applied to every run) are tagged, then ``_seed<s>`` for
    seeds other than 0; results are grouped under the name without the seed."""
    suffix = f"_{tag}" if tag else ""
    plan = [(m, {}) for m in methods] + [(a, ABLATIONS[a]) for a in ablations]
    runs = []
    for kind, extra in plan:
        config = METHODS[kind] if kind in METHODS else METHODS["slicer"]
        common = {**budget_overrides(CONFIGS / config, steps), "data.path": str(corpus)}
        for s in (seeds if kind in METHODS else seeds[:1]):
            group = kind + suffix
            name = group if s == 0 else f"{group}_seed{s}"
            seed = {} if s == 0 else {"run.seed": str(s)}
            runs.append(PretrainRun(name, CONFIGS / config, {**common, **extra, **(overrides or {}), **seed},
                                    runs_root / name, group=group, seed=s))
    # every method at the first seed, then at the next seeds, then the ablations: an interrupted
    # study has the whole comparison at one seed first
    is_ablation = {a + suffix for a in ablations}
    return sorted(runs, key=lambda r: (r.group in is_ablation, list(seeds).index(r.seed)))


def _desired_config(run: PretrainRun) -> dict:
    from pretrain.config import load_config

    return load_config(str(run.config), run.set_args()).to_dict()


def _comparable(cfg: dict) -> dict:
    cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
    # where it is written, how it shows, how far it has got, which checkpoints it keeps: not the recipe
    for key in ("out", "progress", "tensorboard", "steps", "keep_steps"):
        cfg.get("run", {}).pop(key, None)
    if "data" in cfg and cfg["data"].get("path"):
        cfg["data"]["path"] = str(Path(cfg["data"]["path"]).resolve())
    return cfg


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} (run) vs {vb!r} (wanted)")
    return out


def run_state(run: PretrainRun, steps: int) -> tuple[str, Path | None]:
    """("done" | "partial" | "new", newest checkpoint). Raises :class:`StudyError` when the run
    folder holds a run of another config or more steps (it is never overwritten)."""
    from pretrain.train import config_of_checkpoint

    found = sorted((run.out / "checkpoints").glob("step_*.pt"))
    if not found:
        return "new", None
    have = _comparable(config_of_checkpoint(found[-1]).to_dict())
    want = _comparable(_desired_config(run))
    diffs = _diff(have, want)
    if diffs:
        raise StudyError(f"{run.out} holds a run with another config; move it away or pick another --runs "
                         "folder. Differences: " + "; ".join(diffs))
    step = int(re.search(r"step_(\d+)", found[-1].name).group(1))
    if step > steps:
        raise StudyError(f"{run.out} holds a run of {step} steps, more than the {steps} asked for; "
                         "move it away or pick another --runs folder")
    return ("done" if step >= steps else "partial"), found[-1]


def _log_span_minutes(run_dir: Path) -> float:
    """Wall minutes from the first to the last line of the run's run.log (NaN if unknown)."""
    log = run_dir / "run.log"
    if not log.is_file():
        return math.nan
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\]", log.read_text(), flags=re.M)
    if len(stamps) < 2:
        return math.nan
    first, last = (datetime.strptime(s, "%Y-%m-%d %H:%M:%S") for s in (stamps[0], stamps[-1]))
    return (last - first).total_seconds() / 60


def launch_run(run: PretrainRun, ckpt: Path | None, env: dict[str, str]) -> subprocess.Popen:
    """Start `python -m pretrain` for `run`: resumed from `ckpt`, or new (no checkpoint there, so
    files a crashed attempt left are replaced: --overwrite); its output appended to
    ``<runs>/<name>.out``."""
    run.out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pretrain"]
    cmd += ["--resume", str(ckpt)] if ckpt else ["--config", str(run.config), "--overwrite"]
    cmd += ["--set", *run.set_args()]
    with open(run.out.parent / f"{run.name}.out", "a") as log:
        verb = f"resuming from {ckpt.name}" if ckpt else "training"
        print(f"  {run.name}: {verb} (log: {log.name})", flush=True)
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def pretrain_all(runs: list[PretrainRun], steps: int | Callable[[PretrainRun], int], parallel: int,
                 threads: int | None, train: bool = True,
                 on_finished: Callable[[PretrainRun], None] | None = None) -> list[str]:
    """Train every run not yet done, `parallel` processes at a time; returns the names of the
    runs that failed (or, with ``train=False``, that are not finished). `steps`: every run's
    length, or a function of the run giving it. ``on_finished(run)`` is called as each run
    trained here finishes, after the next run has taken its place (the others, and that one, go
    on training while it scores), and for each run found finished already, once the first new
    ones have started."""
    todo, ready = [], []
    for run in runs:
        state, ckpt = run_state(run, steps(run) if callable(steps) else steps)
        if state == "done":
            print(f"  {run.name}: done ({ckpt.name}), reused")
            ready.append(run)
        else:
            todo.append((run, ckpt))
    if not train:
        for run, ckpt in todo:
            print(f"  {run.name}: not finished ({ckpt.name if ckpt else 'not started'}), left out (--no-train)")
        return [run.name for run, _ in todo]
    env = {**os.environ}
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    active: list[tuple[PretrainRun, subprocess.Popen, float]] = []
    failed = []
    if on_finished is None:
        ready = []
    while todo or active or ready:
        while todo and len(active) < parallel:  # a freed slot is filled before anything is scored
            run, ckpt = todo.pop(0)
            active.append((run, launch_run(run, ckpt, env), time.time()))
        while ready:  # trained before this call, or just finished: scored while the others train
            on_finished(ready.pop(0))
        if not active:
            break
        time.sleep(2)
        for item in list(active):
            run, proc, t0 = item
            if proc.poll() is None:
                continue
            active.remove(item)
            took = (time.time() - t0) / 60
            if proc.returncode == 0:
                print(f"  {run.name}: finished in {took:.1f} min", flush=True)
                if on_finished is not None:
                    ready.append(run)
            else:
                print(f"  {run.name}: FAILED (exit {proc.returncode}); see {run.out.parent / (run.name + '.out')}",
                      flush=True)
                failed.append(run.name)
    return failed


def export_run(run: PretrainRun) -> Path:
    """The slim embedding checkpoint of the run's final step (written once)."""
    from hear_slicer.checkpoint import load_checkpoint, save_checkpoint
    from pretrain.export import slim

    target = run.out / f"{run.name}.pt"
    final = sorted((run.out / "checkpoints").glob("step_*.pt"))[-1]
    if not target.is_file() or target.stat().st_mtime < final.stat().st_mtime:
        save_checkpoint(slim(load_checkpoint(final)), target)
    return target


def evaluate(models: list[ModelSpec], tasks_root: Path, out: Path, seeds: list[int],
             tasks: list[str] | None, progress: bool, cache: Path | None = None,
             manifest_path: Path = DEMO_MANIFEST) -> None:
    """Linear protocol on the manifest's tasks, once per probe seed, into ``<out>/seed<s>/cells``."""
    from eval_suites.core.runner import run_manifest

    for seed in seeds:
        manifest = load_manifest(manifest_path, tasks_root=tasks_root).select(None, tasks)
        manifest.models = models
        manifest.tasks = [dataclasses.replace(t, protocols=("linear",)) for t in manifest.tasks]
        manifest.linear = dataclasses.replace(manifest.linear, seed=seed)
        manifest.cache_dir = cache or out / "embeddings"
        print(f"  probe seed {seed}: {len(models)} models x {len(manifest.tasks)} tasks", flush=True)
        run_manifest(manifest, out / f"seed{seed}", progress=progress)


def task_names(manifest_path: Path, tasks_root: Path, tasks: list[str] | None) -> list[str]:
    return [t.name for t in load_manifest(manifest_path, tasks_root=tasks_root).select(None, tasks).tasks]


def scores(out: Path, models: list[str], tasks: list[str], seeds: list[int]) -> pd.DataFrame:
    """The long table of test scores read from the cells in ``<out>/seed<s>`` (a missing cell
    is a row with status "missing"); ``valid`` is the validation score of the selected epoch
    (mean over folds), the one to choose recipes by."""
    from eval_suites.core.results import load_cell

    rows = []
    for seed in seeds:
        for model in models:
            for task in tasks:
                path = cell_dir(out / f"seed{seed}", model, task, "linear") / "result.json"
                r = load_cell(path) if path.is_file() else None
                p = r.primary if r else None
                folds = (r.details.get("folds") or []) if r else []
                valid = [f["valid_score"] for f in folds if isinstance(f, dict) and "valid_score" in f]
                rows.append(dict(model=model, task=task, seed=seed, metric=p.metric if p else "",
                                 value=p.value if p else math.nan,
                                 valid=float(sum(valid) / len(valid)) if valid else math.nan,
                                 status=r.status if r else "missing", error=(r.error if r else "") or "",
                                 cell=str(path.parent)))
    return pd.DataFrame(rows, columns=["model", "task", "seed", "metric", "value", "valid", "status", "error", "cell"])


# ----------------------------------------------------------------------------- the record of finished runs
REGISTRY = "runs.json"
"""``<out>/runs.json``: model name -> what it was (its config without paths, the data preset,
pretraining minutes). With the model's cells in ``<out>``, a later invocation, on this or a
fresh machine, takes its scores from there and neither trains nor evaluates it again. This
is what makes the study resumable across sessions from committed results alone."""


def _identity(run: PretrainRun, preset: str) -> dict:
    """What a recorded model must match: its config (without paths), steps and data preset."""
    cfg = _desired_config(run)
    steps = cfg["run"]["steps"]
    cfg = _comparable(cfg)
    cfg["data"].pop("path", None)
    return {"config": cfg, "steps": steps, "preset": preset}


def load_records(path: Path, what: str = "model records", redo: str = "re-run everything") -> dict[str, dict]:
    """A JSON object of records (``runs.json``, the learning curves' ``points.json``); {} when the
    file is missing; a RegistryError naming it when it is not such an object."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        raise RegistryError(f"{path} is not valid JSON ({type(e).__name__}: {e}); restore it from git or remove "
                            f"it to {redo}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path} must hold a JSON object of {what}")
    return data


def load_registry(out: Path) -> dict[str, dict]:
    return load_records(out / REGISTRY)


def save_registry(out: Path, registry: dict[str, dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / REGISTRY, lambda fh: fh.write(json.dumps(registry, indent=1, sort_keys=True)))


def record(out: Path, identities: dict[str, dict], tasks: list[str], seeds: list[int]) -> None:
    """Add to ``<out>/runs.json`` each model whose cells are all ok (read afresh, so records
    written meanwhile by another invocation are kept)."""
    registry = load_registry(out)
    table = scores(out, list(identities), tasks, seeds)
    for name, identity in identities.items():
        if (table[table.model == name].status == "ok").all():
            registry[name] = identity
    save_registry(out, registry)


def normalised_identity(identity: dict) -> dict:
    """`identity` with its training config read back through today's config code: keys added
    since it was recorded take their defaults, which reproduce the old behaviour (e.g.
    `run.keep_steps`), so a record keeps matching the run it describes. Configs that are no
    training config (a reference's) are returned as they are."""
    from pretrain.config import ConfigError, config_from_dict

    cfg = identity.get("config")
    if not isinstance(cfg, dict) or "module" in cfg:
        return identity
    extra = {k: cfg[k] for k in ("like",) if k in cfg}  # random_init: whose normalisation it carries
    try:
        full = _comparable(config_from_dict({k: v for k, v in cfg.items() if k not in extra}).to_dict())
    except (ConfigError, ValueError, TypeError):
        return identity
    full["data"].pop("path", None)
    return {**identity, "config": {**extra, **full}}


def recorded(registry: dict[str, dict], name: str, identity: dict, out: Path, tasks: list[str],
             seeds: list[int]) -> bool:
    """True when `name` is recorded with this identity (configs compared with every key the
    code knows today, :func:`normalised_identity`) and every (task, probe seed) cell is ok."""
    entry = registry.get(name)
    if entry is None or normalised_identity({k: entry.get(k) for k in identity}) != normalised_identity(identity):
        return False
    table = scores(out, [name], tasks, seeds)
    return bool((table.status == "ok").all())


@lru_cache(maxsize=4096)
def _outputs(cell: str) -> CellOutputs | None:
    return load_outputs(cell)


def _group_outputs(long: pd.DataFrame, group: str) -> tuple[dict, dict]:
    """({task: runs}, {task: metric}) of a group's per-clip outputs, runs[r][p] the outputs of
    its pretraining run r (ordered by name) with probe seed p. A task is left out (its interval
    is n/a) when any of its cells failed or has no stored outputs (e.g. a CSV from before they
    were kept), a run lacks it, or its metric cannot be resampled."""
    rows = long[long.group == group]
    runs = sorted(rows.model.unique())
    model, metrics = {}, {}
    for task, sub in rows.groupby("task", sort=False):
        metric = sub.metric.iloc[0]
        if "cell" not in sub or (sub.status != "ok").any() or not supports(metric) or sorted(sub.model.unique()) != runs:
            continue
        outs = [[_outputs(str(c)) for c in sub[sub.model == run].sort_values("seed").cell] for run in runs]
        if all(o is not None for rep in outs for o in rep):
            model[task], metrics[task] = outs, metric
    return model, metrics


def _groups(long: pd.DataFrame) -> pd.DataFrame:
    long = long.copy()
    long["group"] = long["group"] if "group" in long else long["model"]
    return long


def aggregate(long: pd.DataFrame, order: list[str], bootstrap: BootstrapConfig = BootstrapConfig()
              ) -> pd.DataFrame:
    """Per group (method, ablation or reference; column ``group``, default ``model``) and task:
    mean, std and count over its scores (every pretraining run x probe seed); plus the
    group's mean over tasks, averaged per (run, probe seed) first, so that its std is the
    spread of those means. Column ``model`` of the result holds the group.

    ``ci_low``/``ci_high``: the bootstrap interval (:func:`eval_suites.core.intervals.model_intervals`:
    pretraining runs and test clips resampled, probe seeds averaged) where every cell has per-clip
    outputs (column ``cell`` of ``long``), NaN otherwise; ``runs``: pretraining runs of the group."""
    long = _groups(long)
    ok = long[long.status == "ok"].copy()
    per_task = ok.groupby(["group", "task"]).value.agg(["mean", "std", "count"]).reset_index()
    per_seed_mean = ok.groupby(["group", "model", "seed"]).value.mean().reset_index()
    overall = per_seed_mean.groupby("group").value.agg(["mean", "std", "count"]).reset_index()
    overall["task"] = "mean"
    table = pd.concat([per_task, overall], ignore_index=True)
    table["ci_low"] = table["ci_high"] = math.nan
    table["runs"] = table.group.map(ok.groupby("group").model.nunique())
    for group in table.group.unique():
        model, metrics = _group_outputs(long, group)
        if not model:
            continue
        ivs = model_intervals(model, metrics, bootstrap)
        every = set(long[long.group == group].task)
        for task, iv in ivs.items():
            if task == "mean" and set(model) != every:
                continue  # a mean over some tasks only is no interval of the reported mean
            at = (table.group == group) & (table.task == task)
            table.loc[at, ["ci_low", "ci_high"]] = iv.low, iv.high
    table = table.rename(columns={"group": "model"})
    table["model"] = pd.Categorical(table.model, categories=[m for m in order if m in set(table.model)],
                                    ordered=True)
    return table.sort_values(["model", "task"]).reset_index(drop=True)


def differences(long: pd.DataFrame, reference: str, others: list[str],
                bootstrap: BootstrapConfig = BootstrapConfig()) -> pd.DataFrame:
    """``reference`` minus each of ``others``, per task and ``mean`` over tasks: columns model
    (the other group), task, diff, ci_low, ci_high (a paired bootstrap on the same test clips,
    :func:`eval_suites.core.intervals.difference_intervals`; NaN where either side lacks per-clip
    outputs), excludes_zero."""
    long = _groups(long)
    ok = long[long.status == "ok"]
    means = ok.groupby(["group", "task"]).value.mean()
    ref_model, ref_metrics = _group_outputs(long, reference)
    rows = []
    for other in others:
        if other == reference or other not in set(long.group):
            continue
        model, _ = _group_outputs(long, other)
        shared = [t for t in ref_model if t in model]
        ivs = difference_intervals({t: ref_model[t] for t in shared}, {t: model[t] for t in shared},
                                   ref_metrics, bootstrap) if shared else {}
        tasks = [t for t in dict.fromkeys(long.task) if (reference, t) in means and (other, t) in means]
        complete = set(shared) == set(long[long.group.isin([reference, other])].task)
        for task in tasks + ["mean"]:
            if task == "mean":
                diff = float(sum(means[reference, t] - means[other, t] for t in tasks) / len(tasks)) if tasks else math.nan
            else:
                diff = float(means[reference, task] - means[other, task])
            iv = ivs.get(task) if (task != "mean" or complete) else None
            lo, hi = (iv.low, iv.high) if iv is not None else (math.nan, math.nan)
            rows.append(dict(model=other, task=task, diff=diff, ci_low=lo, ci_high=hi,
                             excludes_zero=bool(iv is not None and iv.excludes(0.0))))
    return pd.DataFrame(rows, columns=["model", "task", "diff", "ci_low", "ci_high", "excludes_zero"])


def run_differences(long: pd.DataFrame, run: str, others: list[str],
                    bootstrap: BootstrapConfig = BootstrapConfig()) -> pd.DataFrame:
    """Pretraining run ``run`` alone (not its group's mean over seeds) minus each of ``others``,
    as :func:`differences`. For the ablations, which ran at SLICER's first pretraining seed only:
    against SLICER's run at that seed both sides share the seed, so only test clips are resampled."""
    long = _groups(long)
    long.loc[long.model == run, "group"] = label = f"{run} (run)"
    return differences(long, label, others, bootstrap)


def _fmt(mean: float, low: float, high: float, signed: bool = False) -> str:
    if math.isnan(mean):
        return "—"
    value = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    if math.isnan(low):
        return value + " [n/a]"
    return value + (f" [{low:+.3f}, {high:+.3f}]" if signed else f" [{low:.3f}, {high:.3f}]")


def chance_levels(long: pd.DataFrame, tasks: list[str]) -> dict[str, float]:
    """{task: chance level of its metric} (:mod:`eval_suites.core.chance`) from the first ok
    cell of the task with stored outputs, and "mean": their mean when every task has one."""
    from eval_suites.core.chance import chance_level

    levels = {}
    for task in tasks:
        for _, r in long[(long.task == task) & (long.status == "ok")].iterrows():
            level = chance_level(_outputs(str(r.cell)), r.metric) if "cell" in r else None
            if level is not None:
                levels[task] = level
                break
    if levels and len(levels) == len(tasks):
        levels["mean"] = sum(levels.values()) / len(levels)
    return levels


def markdown_table(table: pd.DataFrame, models: list[str], tasks: list[str], notes: dict[str, str],
                   chance: dict[str, float] | None = None) -> str:
    """Models ranked by their mean; cells "mean [low, high]" (the bootstrap interval; n/a where
    there are no per-clip outputs); a last row with each task's ``chance`` level, if given."""
    means = table[table.task == "mean"].set_index("model")["mean"]
    ranked = sorted((m for m in models if m in means.index), key=lambda m: -means[m])
    ranked += [m for m in models if m not in means.index]
    cols = tasks + ["mean"]
    lines = ["| rank | model | " + " | ".join(cols) + " | notes |",
             "|---|---|" + "---|" * len(cols) + "---|"]
    cell = {(r.model, r.task): _fmt(r["mean"], r["ci_low"], r["ci_high"]) for _, r in table.iterrows()}
    for i, m in enumerate(ranked, 1):
        vals = [cell.get((m, t), "—") for t in cols]
        vals[-1] = f"**{vals[-1]}**"
        lines.append(f"| {i} | {m} | " + " | ".join(vals) + f" | {notes.get(m, '')} |")
    if chance:
        vals = [f"{chance[t]:.3f}" if t in chance else "—" for t in cols]
        lines.append("| | *chance* | " + " | ".join(vals) + " | best constant prediction on the test labels |")
    return "\n".join(lines)


def markdown_differences(diffs: pd.DataFrame, reference: str, tasks: list[str], header: str | None = None) -> str:
    """One row per other method: "``reference`` − other" per task and for the mean, "diff
    [low, high]"; bold where the interval excludes 0 (the difference is larger than the noise
    of the test clips and pretraining seeds)."""
    cols = tasks + ["mean"]
    lines = [f"| {header or reference + ' minus'} | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for other in dict.fromkeys(diffs.model):
        sub = diffs[diffs.model == other].set_index("task")
        vals = []
        for t in cols:
            if t not in sub.index:
                vals.append("—")
                continue
            r = sub.loc[t]
            text = _fmt(r["diff"], r["ci_low"], r["ci_high"], signed=True)
            vals.append(f"**{text}**" if r["excludes_zero"] else text)
        lines.append(f"| {other} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def plot_table(table: pd.DataFrame, groups: list[tuple[str, list[str]]], tasks: list[str], path: Path,
               chance: dict[str, float] | None = None) -> Path:
    """Grouped bars (task x model) with the bootstrap intervals as error bars (none where n/a),
    references hatched, each task's ``chance`` level (if given) a dashed line across its
    group; one panel per group; readable names (:func:`studies.labels.label`), not code names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = tasks + ["mean"]
    groups = [(title, [m for m in ms if m in set(table.model)]) for title, ms in groups]
    groups = [(title, ms) for title, ms in groups if ms]
    every = list(dict.fromkeys(m for _, ms in groups for m in ms))
    colors = {m: plt.get_cmap("tab20" if len(every) > 10 else "tab10")(i) for i, m in enumerate(every)}
    fig, axes = plt.subplots(len(groups), 1, figsize=(max(9, 1.7 * len(cols) + 2), 3.6 * len(groups)), squeeze=False)
    for ax, (title, ms) in zip(axes[:, 0], groups):
        width = 0.8 / len(ms)
        x = np.arange(len(cols))
        for i, m in enumerate(ms):
            sub = table[table.model == m].set_index("task")
            means = np.array([sub["mean"].get(t, np.nan) for t in cols])
            low = np.array([sub["ci_low"].get(t, np.nan) for t in cols])
            high = np.array([sub["ci_high"].get(t, np.nan) for t in cols])
            err = np.nan_to_num(np.maximum(np.stack([means - low, high - means]), 0))  # no bar where n/a
            hatch = "//" if m in REFERENCES else None
            ax.bar(x + (i - (len(ms) - 1) / 2) * width, means, width, yerr=err,
                   label=label(m), hatch=hatch, capsize=2, edgecolor="black", linewidth=0.4, color=colors[m])
        marked = [j for j, c in enumerate(cols) if c in (chance or {})]
        if marked:
            ax.hlines([chance[cols[j]] for j in marked], x[marked] - 0.45, x[marked] + 0.45, colors="black",
                      linestyles="--", linewidth=1.2, zorder=4, label=label("chance"))
        ax.set_xticks(x, [label(c) for c in cols])
        ax.set_ylim(0, 1)
        ax.set_ylabel("test score (linear probe)")
        ax.set_title(title + " (95 % bootstrap intervals)")
        ax.axvline(len(tasks) - 0.5, color="grey", linewidth=0.8)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m studies.mini_lape", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None,
                    help="demo data folder, built if missing (default: demo_data, or demo_data_<preset>)")
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS),
                    help="demo data size (default: small; the study: study)")
    ap.add_argument("--manifest", type=Path, default=None,
                    help="tasks to score (default: eval_suites/manifests/<preset>.yaml if it exists, else demo.yaml)")
    ap.add_argument("--runs", type=Path, default=Path("runs/mini_lape"), help="pretraining runs folder")
    ap.add_argument("--out", type=Path, default=Path("results/mini_lape"),
                    help="results folder: cells, runs.json, tables (commit it to resume elsewhere)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--ablations", nargs="*", default=None, choices=list(ABLATIONS),
                    help="also run SLICER ablations (no names: all of them)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                    help="config overrides applied to every run (e.g. augment.rrc.frequency=false); needs --tag")
    ap.add_argument("--tag", default="", help="suffix of the run names (<method>_<tag>) for --set variants")
    ap.add_argument("--no-train", action="store_true",
                    help="train nothing: evaluate the runs already finished, leave the others out")
    ap.add_argument("--report", action="store_true",
                    help="train and evaluate nothing: rebuild the tables and plot from the models recorded in "
                         "<out>/runs.json (e.g. while a study is still running)")
    ap.add_argument("--no-references", action="store_true", help="skip the random-init and log-mel references")
    ap.add_argument("--steps", type=int, default=BUDGET_STEPS, help="pretraining steps per method")
    ap.add_argument("--pretrain-seeds", type=int, nargs="+", default=[0, 1],
                    help="pretraining seeds of each method (ablations: the first only); default 0 1")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="linear-probe seeds (default 0 1 2)")
    ap.add_argument("--tasks", nargs="+", default=None, help="only these tasks (names in the manifest)")
    ap.add_argument("--parallel", type=int, default=2,
                    help="pretraining processes at a time (default 2: on a 2-core CPU two 1-thread runs "
                         "train about 1.4x faster together than one after the other)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per pretraining process (default: CPU cores / --parallel)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="embeddings cache (default: <runs>/embeddings, kept out of the results folder)")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 1 a run or cell failed, 2 bad arguments (:class:`StudyError`, a bad
    manifest), 3 unreadable records or outputs (:class:`RegistryError`, OSError); one
    ``error:`` line, the traceback with ``--debug`` (:mod:`eval_suites.errors`)."""
    quiet_heareval_imports()
    ap = build_parser()
    args = ap.parse_args(argv)
    return run_command(lambda: _study(ap, args), debug=args.debug)


def _study(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.steps < 1 or args.parallel < 1 or (args.threads is not None and args.threads < 1):
        ap.error("--steps, --parallel and --threads must be >= 1")
    if len(set(args.pretrain_seeds)) != len(args.pretrain_seeds) or min(args.pretrain_seeds) < 0:
        ap.error("--pretrain-seeds must be distinct integers >= 0")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        ap.error("--seeds must be distinct integers >= 0")
    if bool(args.overrides) != bool(args.tag) or not re.fullmatch(r"[A-Za-z0-9_.-]*", args.tag):
        ap.error("--set and --tag go together (the tag names the variant's runs: letters, digits, _ . -)")
    bad = [o for o in args.overrides if "=" not in o or o.split("=", 1)[0] in ("run.out", "run.steps", "run.seed")]
    if bad:
        ap.error(f"--set takes KEY=VALUE pairs other than run.out/run.steps/run.seed (use --runs, --steps, "
                 f"--pretrain-seeds): {bad}")
    root = args.root or Path("demo_data" if args.preset == "small" else f"demo_data_{args.preset}")
    manifest_path = args.manifest or manifest_for(args.preset)
    if not manifest_path.is_file():
        ap.error(f"--manifest {manifest_path}: no such file")
    overrides = dict(o.split("=", 1) for o in args.overrides)
    ablations = list(ABLATIONS) if args.ablations == [] else (args.ablations or [])
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.parallel)
    cache = args.cache or args.runs / "embeddings"
    t0 = time.time()

    if not args.report:
        print(f"[1/4] Demo data ({args.preset}) in {root}/")
        build_demo(root, preset=args.preset, progress=not args.no_progress)
    tasks = task_names(manifest_path, root / "tasks", args.tasks)

    runs = plan_runs(args.runs, root / "corpus", args.steps, args.methods, ablations, args.pretrain_seeds,
                     overrides, args.tag)
    registry = load_registry(args.out)
    identity = {r.name: _identity(r, args.preset) for r in runs}
    done_before = [r for r in runs if recorded(registry, r.name, identity[r.name], args.out, tasks, args.seeds)]
    for r in done_before:
        print(f"  {r.name}: scores recorded in {args.out / REGISTRY}, reused (neither trained nor evaluated)")
    to_train = [] if args.report else [r for r in runs if r not in done_before]
    if args.report:
        print(f"  left out (not recorded): {', '.join(r.name for r in runs if r not in done_before) or 'none'}")
    print(f"[2/4] Pretraining {len(to_train)} run(s), {args.steps} steps each, in {args.runs}/ "
          f"({args.parallel} at a time, {threads} thread(s) each)")

    def land(run: PretrainRun) -> None:
        """Export, score and record a run as soon as it finishes, so that an interrupted study
        keeps (and can commit) every finished run's results."""
        print(f"  {run.name}: scoring it now", flush=True)
        spec = ModelSpec(name=run.name, module="hear_slicer", checkpoint=export_run(run).resolve(), options={})
        try:
            evaluate([spec], root / "tasks", args.out, args.seeds, args.tasks, False, cache, manifest_path)
        except ManifestError as e:
            print(f"  {run.name}: not scored: {e}", file=sys.stderr)
            return
        identity[run.name]["minutes"] = round(_log_span_minutes(run.out), 1)
        record(args.out, {run.name: identity[run.name]}, tasks, args.seeds)

    failed = pretrain_all(to_train, args.steps, args.parallel, threads, train=not args.no_train, on_finished=land)
    registry = load_registry(args.out)
    landed = [r for r in to_train if recorded(registry, r.name, identity[r.name], args.out, tasks, args.seeds)]
    done_before += landed
    trained = [r for r in to_train if r.name not in failed and r not in landed]

    print("[3/4] Models: exported checkpoints and references")
    models, exported = [], {}
    for run in trained:
        exported[run.name] = export_run(run)
        models.append(ModelSpec(name=run.name, module="hear_slicer", checkpoint=exported[run.name].resolve(),
                                options={}))
        identity[run.name]["minutes"] = round(_log_span_minutes(run.out), 1)
    group_of = {r.name: r.group for r in runs}
    present = [r for r in runs if r in done_before or r in trained]
    minutes: dict[str, dict[int, float]] = {}
    for r in present:
        m = identity[r.name].get("minutes", registry.get(r.name, {}).get("minutes", math.nan))
        minutes.setdefault(r.group, {})[r.seed] = math.nan if m is None else m
    notes = {g: f"seed{'s' if len(m) > 1 else ''} {', '.join(map(str, m))}; "
                + " / ".join("?" if math.isnan(v) else f"{v:.0f}" for v in m.values()) + " min"
             for g, m in minutes.items()}
    names = [r.name for r in present]
    if not args.no_references:
        like = next((r for r in present if r.group.startswith("slicer") and r.seed == args.pretrain_seeds[0]),
                    present[0] if present else None)
        if like is not None:
            identity["random_init"] = {"config": {"like": like.name, **identity[like.name]["config"]},
                                       "preset": args.preset}
            random_recorded = recorded(registry, "random_init", identity["random_init"], args.out, tasks, args.seeds)
            if random_recorded:
                print("  random_init: recorded, reused")
            elif args.report:
                print("  random_init: not recorded, left out (--report)")
            elif any((like.out / "checkpoints").glob("step_*.pt")):  # trained on this machine
                # hear_slicer's one random-init reference, with this SLICER run's normalisation
                models.append(ModelSpec(name="random_init", module="hear_slicer",
                                        checkpoint=export_run(like).resolve(), options={"random_init": True}))
            else:
                print(f"  random_init: needs {like.name}'s checkpoint, which is recorded but not on this machine: "
                      "left out (remove its record from runs.json to retrain it)")
            if random_recorded or not args.report:
                names.append("random_init")
            notes["random_init"] = f"no training (init seed 0); {like.name}'s normalisation"
        identity["logmel_stats"] = {"config": {"module": "eval_suites.references.logmel_stats"}, "preset": args.preset}
        logmel_recorded = recorded(registry, "logmel_stats", identity["logmel_stats"], args.out, tasks, args.seeds)
        if not logmel_recorded and not args.report:
            models.append(ModelSpec(name="logmel_stats", module="eval_suites.references.logmel_stats",
                                    checkpoint=None, options={}))
        if logmel_recorded or not args.report:
            names.append("logmel_stats")
        notes["logmel_stats"] = "no training; log-mel mean + std"
    for m in models:
        print(f"  {m.name}: {m.checkpoint or m.module}")

    if args.report and not names:
        raise StudyError(f"--report: no model is recorded in {args.out / REGISTRY}; nothing to report "
                         "(run the study first)")
    print(f"[4/4] Linear protocol on {manifest_path.name}'s tasks, probe seeds {args.seeds}")
    if models:
        evaluate(models, root / "tasks", args.out, args.seeds, args.tasks, not args.no_progress, cache, manifest_path)
    long = scores(args.out, names, tasks, args.seeds)
    record(args.out, {m.name: identity[m.name] for m in models}, tasks, args.seeds)
    long.insert(0, "group", [group_of.get(m, m) for m in long.model])
    order = list(dict.fromkeys(group_of.get(m, m) for m in names))
    table = aggregate(long, order)
    chance = chance_levels(long, tasks)
    args.out.mkdir(parents=True, exist_ok=True)
    long.to_csv(args.out / "mini_lape.csv", index=False)
    suffix = f"_{args.tag}" if args.tag else ""
    slicer = "slicer" + suffix
    main_models = [g for g in order if g in {m + suffix for m in METHODS} or g in REFERENCES]
    ablation_models = [g for g in order if g in {a + suffix for a in ablations}]
    variant = f" with {' '.join(args.overrides)} for every run" if args.overrides else ""
    runs_of = table.groupby("model", observed=True).runs.max()
    text = [f"Linear probe on the {args.preset} tasks ({args.steps} pretraining steps per run{variant}): test score, "
            f"mean over every pretraining run x probe seed {args.seeds}, with its 95 % bootstrap interval "
            f"(pretraining seeds and test clips resampled, probe seeds averaged; docs/eval.md); models ranked by "
            "their mean over tasks.", "", markdown_table(table, main_models, tasks, notes, chance)]
    others = [g for g in main_models if g != slicer]
    if slicer in order and others:
        diffs = differences(long, slicer, others)
        diffs.to_csv(args.out / "mini_lape_differences.csv", index=False)
        text += ["", f"{slicer} minus each other model: paired bootstrap on the same test clips (pretraining seeds "
                 f"of each side resampled on their own; {slicer}: {runs_of.get(slicer, 0)} run(s)); **bold**: the "
                 "95 % interval excludes 0.", "", markdown_differences(diffs, slicer, tasks)]
    if ablation_models:
        first = args.pretrain_seeds[0]
        text += ["", f"SLICER ablations (one component changed each; pretraining seed {first}):", "",
                 markdown_table(table, [slicer] + ablation_models + ["random_init"], tasks, notes, chance)]
        first_run = next((r.name for r in runs if r.group == slicer and r.seed == first), None)
        if first_run in set(long.model):
            ablation_diffs = run_differences(long, first_run, ablation_models)
            ablation_diffs.to_csv(args.out / "mini_lape_ablation_differences.csv", index=False)
            text += ["", f"{slicer}'s seed-{first} run minus each ablation (the same pretraining seed on both sides: a "
                     "paired bootstrap on the same test clips); positive: the full recipe scores higher; **bold**: "
                     "the 95 % interval excludes 0.", "",
                     markdown_differences(ablation_diffs, f"{slicer} (seed {first})", tasks)]
    (args.out / "mini_lape.md").write_text("\n".join(text) + "\n")
    groups = [(f"Five pretraining methods at one budget{variant}, two references, test splits", main_models)]
    if ablation_models:
        groups.append(("SLICER with one component changed, test splits", [slicer] + ablation_models + ["random_init"]))
    plot_table(table, groups, tasks, args.out / "mini_lape.png", chance)
    print("\n".join(text))
    bad = long[long.status != "ok"]
    for _, r in bad.iterrows():
        print(f"FAILED cell {r.model}/{r.task} seed {r.seed}: {r.status} {r.error}", file=sys.stderr)
    print(f"\nwrote {args.out / 'mini_lape.md'}, {args.out / 'mini_lape.csv'}, {args.out / 'mini_lape.png'} "
          f"({(time.time() - t0) / 60:.1f} min)")
    return 1 if (failed and not args.no_train) or len(bad) else 0


if __name__ == "__main__":
    sys.exit(main())
