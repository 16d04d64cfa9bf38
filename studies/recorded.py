"""Every choice made again on recorded audio: the recorded study (crop, methods, default), with seeds.

    python -m studies.recorded --store STORE            # the queue: train what is missing, score what landed
    python -m studies.recorded --report                 # tables and figure from what is recorded
    python -m studies.recorded --ship                   # once the default is chosen: bundle it
    python -m studies.recorded --store STORE --device cuda   # the same queue on one GPU

STORE is the learning-curve study's prepared corpus (``python -m studies.learning_curves
--prepare-only``: the study corpus and recorded audio from Debian's game packages, 15.7 h). The
tasks are the recorded development suite's (``python -m eval_suites.recorded``), none of whose
packages is in that corpus. In order, each run ``--steps`` (1,500) of batch 32 under the budget
rule of the learning curves (``studies.mini_lape.budget_overrides``, the same for every method), in
``--precision`` (fp32 by default: bf16 autocast is 23x slower on a CPU without native bf16):

1. **Previous default**: its recipe, ``pretrain/configs/demo.yaml`` (600 steps on the small demo
   corpus, fp32 on CPU), once per pretraining seed.
2. **Crop**: SLICER with each crop of ``CROPS`` (BYOL-A's crop along frequency and time; time
   only; a milder frequency zoom), once per pretraining seed.
3. **Methods**: the crop chosen on the recorded suite's validation splits (:func:`choose`) for
   DeLoRes-M, BYOL-A, DeLoRes-S (Barlow Twins weighting) and COLA, at the first ``--method-seeds``
   (2) pretraining seeds; a method whose validation mean is then above the best candidate's gets
   the remaining seeds (:func:`promoted`). SLICER's runs are stage 2's with that crop.

Every finished run is exported (student encoder) and scored as it lands, on the recorded suite
(linear probe at each probe seed: its validation score at the epoch it selects, and its test
score) and on the synthesised study suite beside it (reported, never used to choose); so are the
references: random init at ``--init-seeds`` (the normalisation of the first crop run at seed 0),
log-mel statistics, and the default shipped before this study (:data:`SHIPPED_BEFORE`). Choices use validation only: the crop (stage 2's groups), and the default
(among the candidates: every group with all ``--seeds`` runs scored, :func:`eligible`), by the mean over pretraining seeds x probe seeds of the
mean over tasks (every task weighs the same). Test numbers are reported with 95 % intervals of
the hierarchical bootstrap (pretraining runs, then test clips; probe seeds averaged).

``--ship`` (once every planned group is scored and the default chosen): the chosen group's run
with the best validation mean (:func:`best_run`) becomes ``hear_slicer/assets/default.pt``
(``--ship-to``), its recipe ``pretrain/configs/default_model.yaml`` (``--recipe-to``,
:func:`shipped_recipe`), and ``choice.json`` records which run, its SHA-256, and the group's test margins
over the previous default and random init on the recorded suite (:func:`margins`).

Results (committed): ``--out`` holds ``cells/<suite>/seed<p>/...`` (per cell, with per-clip test
outputs), ``runs.json`` (what each scored model was), ``choice.json`` and the report. A rerun
scores only what is missing and trains only what is not finished; checkpoints stay in ``--runs``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import textwrap
from pathlib import Path

import pandas as pd
import yaml

from eval_suites.core.atomic_files import write_atomically
from eval_suites.core.manifest import ModelSpec, load_manifest
from eval_suites.core.results import cell_dir, load_cell
from eval_suites.errors import UsageError, run_command

from .labels import label
from .mini_lape import (CONFIGS, MANIFESTS, METHODS, PretrainRun, StudyError, aggregate, budget_overrides,
                        differences, export_run, load_records, markdown_differences, markdown_table, pretrain_all)

__all__ = ["CROPS", "METHOD_STAGE", "SUITES", "plan", "choose", "validation_table", "test_table", "main"]

REPO = Path(__file__).resolve().parent.parent
CROPS: dict[str, dict[str, str]] = {
    "byol_a_crop": {"augment.rrc.frequency": "true"},
    "time_only": {"augment.rrc.frequency": "false"},
    "mild_freq": {"augment.rrc.frequency": "true", "augment.rrc.freq_scale": "[0.85, 1.15]"},
}
"""Random resize crops compared in stage 2. byol_a_crop: BYOL-A's code (crop height / F ~ U(0.6, 1.5)
along frequency as along time); time_only: frequency left whole (the shipped default's); mild_freq:
a frequency zoom of at most 15 % (this project's variant, not from a paper)."""
METHOD_STAGE = ("delores_m", "byol_a", "delores_s", "cola")
PREVIOUS_DEFAULT = "previous_default"
PLANNED = (PREVIOUS_DEFAULT, *(f"slicer_{c}" for c in CROPS), *METHOD_STAGE)
"""Every group the default is chosen among, once all are scored."""
SUITES = {"recorded": MANIFESTS / "recorded.yaml", "study": MANIFESTS / "study.yaml"}
"""Suite -> manifest. Choices are made on ``recorded`` only; ``study`` (mostly synthesised) is reported beside."""
CHOICE_SUITE = "recorded"
# --precision defaults to fp32, not issue 28's bf16: on a CPU without native bf16 (AMD EPYC Zen 3,
# AVX2 only, the machine of 2026-12-07's second session) bf16 autocast trained SLICER at 0.8 clips/s
# against 18.9 in fp32 (batch 32, two threads): 40 s a step, 33 hours for 3,000 steps. The
# learning curves' 2.4x gain from bf16 was on a CPU that runs it natively. Every run of the study
# uses the same precision, so the comparison stays on one footing. --steps defaults to 1,500 (the
# issue's 6,000 cut twice, the same for every candidate, seeds kept): in fp32 with two runs at a
# time, one thread each, a run here trains at about 6-9 clips/s, 1.5-2.2 h per 1,500 steps.

SHIPPED_BEFORE = "shipped_before"
SHIPPED_BEFORE_SHA256 = "59755a7f2cd691641c4f43bd9cc4b2af8b028e56bcacbc733870835698d37dd7"
"""The default shipped when this study began (``hear_slicer/assets/default.pt`` at 208985a..f8a7444:
SLICER, time-only crops, 6,000 steps on the learning curves' corpus, one run; docs/plugin.md),
scored as a reference, what users had. Copied into ``--runs`` once, while the bundled default is
still that file (by this SHA-256), so its row means the same model after a new default ships."""
REFERENCES = ("random_init", "logmel_stats", SHIPPED_BEFORE)
RUNS_JSON = "runs.json"
CHOICE_JSON = "choice.json"


# ----------------------------------------------------------------------------- plan
def _run(name: str, group: str, config: Path, overrides: dict[str, str], runs_root: Path, seed: int) -> PretrainRun:
    return PretrainRun(name, config, {**overrides, "run.seed": str(seed)}, runs_root / name, group=group, seed=seed)


def previous_default_runs(runs_root: Path, demo_corpus: Path, seeds: list[int], device: str) -> list[PretrainRun]:
    """The previous default's recipe as it is (demo.yaml), once per seed."""
    from pretrain.config import load_config

    steps = load_config(CONFIGS / "demo.yaml").run.steps
    over = {"data.path": str(demo_corpus), "run.steps": str(steps), "run.device": device, "run.progress": "false"}
    return [_run(f"{PREVIOUS_DEFAULT}_s{s}", PREVIOUS_DEFAULT, CONFIGS / "demo.yaml", over, runs_root, s) for s in seeds]


def method_runs(method: str, crop: str, runs_root: Path, store: Path, steps: int, seeds: list[int],
                precision: str, device: str) -> list[PretrainRun]:
    """`method` with `crop` under the budget rule at `steps`, once per seed; group: the method
    (SLICER: ``slicer_<crop>``, stage 2 compares crops)."""
    config = CONFIGS / METHODS[method]
    over = {**budget_overrides(config, steps), "data.path": str(store), **CROPS[crop], "run.precision": precision,
            "run.device": device, "run.progress": "false"}
    group = f"slicer_{crop}" if method == "slicer" else method
    return [_run(f"{method}_{crop}_s{s}", group, config, over, runs_root, s) for s in seeds]


def plan(runs_root: Path, store: Path, demo_corpus: Path, steps: int, seeds: list[int], precision: str,
         device: str, crop: str | None, method_seeds: dict[str, list[int]] | None = None) -> dict[str, list[PretrainRun]]:
    """Stage -> its runs, seed-major (every group at a seed before the next seed); the methods
    stage only once `crop` is chosen, each method at ``method_seeds[method]`` (default `seeds`)."""
    def seed_major(runs: list[PretrainRun]) -> list[PretrainRun]:
        return sorted(runs, key=lambda r: seeds.index(r.seed))

    stages = {"previous_default": previous_default_runs(runs_root, demo_corpus, seeds, device),
              "crop": seed_major([r for c in CROPS for r in method_runs("slicer", c, runs_root, store, steps, seeds,
                                                                        precision, device)])}
    if crop is not None:
        stages["methods"] = seed_major([r for m in METHOD_STAGE for r in method_runs(m, crop, runs_root, store, steps,
                                                                                    (method_seeds or {}).get(m, seeds),
                                                                                    precision, device)])
    return stages


# ----------------------------------------------------------------------------- scoring
TASKS: dict[str, list[str] | None] = {"names": None}
"""The manifests' tasks scored (``--tasks``; None: all)."""


def _manifest(suite: str, tasks_root: Path | None, spec: ModelSpec, seed: int, cache: Path):
    manifest = load_manifest(SUITES[suite], tasks_root=tasks_root)
    if TASKS["names"]:
        manifest = manifest.select(None, [t.name for t in manifest.tasks if t.name in TASKS["names"]])
    manifest.models = [spec]
    manifest.tasks = [dataclasses.replace(t, protocols=("linear",)) for t in manifest.tasks]
    manifest.linear = dataclasses.replace(manifest.linear, seed=seed)
    manifest.cache_dir = cache
    return manifest


def score(spec: ModelSpec, out: Path, roots: dict[str, Path | None], probe_seeds: list[int], cache: Path,
          identity: dict) -> None:
    """The linear probe of `spec` at every probe seed on every suite of `roots`, into
    ``<out>/cells/<suite>/seed<p>``; then `identity` recorded in ``runs.json``."""
    from eval_suites.core.runner import run_manifest

    for suite, root in roots.items():
        for p in probe_seeds:
            run_manifest(_manifest(suite, root, spec, p, cache / suite), out / "cells" / suite / f"seed{p}",
                         progress=False)
    records = load_records(out / RUNS_JSON, "model records", "score every model again")
    records[spec.name] = identity
    _save_json(out / RUNS_JSON, records)


def _cells(out: Path, suite: str, model: str, tasks: list[str], probe_seeds: list[int]):
    for p in probe_seeds:
        for task in tasks:
            path = cell_dir(out / "cells" / suite / f"seed{p}", model, task, "linear") / "result.json"
            yield p, task, path, (load_cell(path) if path.is_file() else None)


def scored(out: Path, model: str, suites: dict[str, list[str]], probe_seeds: list[int]) -> bool:
    return all(r is not None and r.status == "ok" for s, tasks in suites.items()
               for _, _, _, r in _cells(out, s, model, tasks, probe_seeds))


def validation_table(out: Path, groups: dict[str, str], tasks: list[str], probe_seeds: list[int],
                     suite: str = CHOICE_SUITE) -> pd.DataFrame:
    """Validation scores (the linear probe's selected epoch, on the valid split): group, model,
    seed (probe), task, valid. Only ok cells."""
    rows = []
    for model, group in groups.items():
        for p, task, _, r in _cells(out, suite, model, tasks, probe_seeds):
            if r is None or r.status != "ok":
                continue
            folds = [f for f in (r.details.get("folds") or []) if isinstance(f, dict) and "valid_score" in f]
            if folds:
                rows.append(dict(group=group, model=model, seed=p, task=task,
                                 valid=sum(f["valid_score"] for f in folds) / len(folds)))
    return pd.DataFrame(rows, columns=["group", "model", "seed", "task", "valid"])


def test_table(out: Path, groups: dict[str, str], tasks: list[str], probe_seeds: list[int], suite: str) -> pd.DataFrame:
    """The long table of test scores that ``mini_lape.aggregate``/``differences`` read."""
    rows = []
    for model, group in groups.items():
        for p, task, path, r in _cells(out, suite, model, tasks, probe_seeds):
            m = r.primary if r is not None else None
            rows.append(dict(group=group, model=model, task=task, seed=p, metric=m.metric if m else "",
                             value=m.value if m else math.nan, status=r.status if r else "missing",
                             cell=str(path.parent)))
    return pd.DataFrame(rows, columns=["group", "model", "task", "seed", "metric", "value", "status", "cell"])


def choose(valid: pd.DataFrame, candidates: list[str], tasks: list[str], runs_per_group: dict[str, int]) -> pd.DataFrame:
    """Rank `candidates` by validation: per (run, probe seed) the mean over `tasks` (each task
    weighs the same), then the mean over those. A group counts only when each of its runs has
    every task at every probe seed present; returns group, mean, runs (complete), cells and
    spread (the best run's mean over probe seeds minus the worst's; NaN for one run), ranked."""
    rows = []
    for g in candidates:
        sub = valid[valid.group == g]
        per = sub.groupby(["model", "seed"])
        means = [v.valid.mean() for _, v in per if set(v.task) == set(tasks)]
        complete = sub.model.nunique() == runs_per_group.get(g, 0) and len(means) == len(per) and len(means) > 0
        if complete:
            per_run = per.valid.mean().groupby("model").mean()
            rows.append(dict(group=g, mean=sum(means) / len(means), runs=sub.model.nunique(), cells=len(means),
                             spread=float(per_run.max() - per_run.min()) if len(per_run) > 1 else math.nan))
    table = pd.DataFrame(rows, columns=["group", "mean", "runs", "cells", "spread"])
    return table.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


def lead_line(table: pd.DataFrame, kind: str) -> str:
    """How far the first of a ranked `table` (:func:`choose`) leads the second on validation,
    set against the largest seed spread of one `kind` in it: a lead smaller than what a change of
    pretraining seed moves one group is said to rest on little. Empty for fewer than two rows."""
    if len(table) < 2:
        return ""
    lead = float(table["mean"].iloc[0] - table["mean"].iloc[1])
    head = f"Its lead over {label(table.group.iloc[1])} on validation: {lead:.3f}"
    spreads = table["spread"].dropna()
    if spreads.empty:
        return head + " (no group here has two pretraining seeds to compare it with)."
    widest = float(spreads.max())
    if lead < widest:
        return (head + f", smaller than the largest spread between the pretraining seeds of one {kind} here "
                f"({widest:.3f}, best run minus worst): another seed could reverse the order, so the choice rests "
                "on little.")
    return head + f", at least the largest spread between the pretraining seeds of one {kind} here ({widest:.3f})."


def promoted(ranking: pd.DataFrame, full_runs: int, methods: tuple[str, ...] = METHOD_STAGE) -> list[str]:
    """The methods (trained at fewer seeds than a candidate needs) whose validation mean is above
    that of the best group with `full_runs` runs: they get the remaining seeds before the default
    is chosen. None while no group has `full_runs` runs."""
    full = ranking[ranking.runs >= full_runs]
    if full.empty:
        return []
    best = full["mean"].iloc[0]
    return [g for g, m, n in zip(ranking.group, ranking["mean"], ranking.runs) if g in methods and n < full_runs
            and m > best]


def eligible(ranking: pd.DataFrame, full_runs: int) -> pd.DataFrame:
    """The candidates for the default: groups with `full_runs` pretraining runs, ranked."""
    return ranking[ranking.runs >= full_runs].reset_index(drop=True)


def choice_is_final(ranking: pd.DataFrame, choice: dict, full_runs: int) -> bool:
    """True once the default can be chosen: the crop is chosen, every group the study plans
    (the previous default's recipe, SLICER at each crop, each method of stage 3) is complete in
    `ranking`, and no method is owed the rest of its seeds (:func:`promoted`)."""
    return "crop" in choice and set(PLANNED) <= set(ranking.group) and not promoted(ranking, full_runs)


def choice_lines(ranking: pd.DataFrame, choice: dict, full_runs: int) -> tuple[list[str], dict]:
    """The report's sentence on the default, and `choice` updated: ``default`` only once
    :func:`choice_is_final`; before that the best complete candidate is ``leading``, said to
    be so far, with how many of the planned groups are complete."""
    full = eligible(ranking, full_runs)
    choice = {k: v for k, v in choice.items() if k not in ("default", "leading", "default_table")}
    if full.empty:
        return [], choice
    best, table = full.group.iloc[0], full.to_dict("records")
    if choice_is_final(ranking, choice, full_runs):
        first = f"Default chosen (best candidate; every planned group complete): **{label(best)}**."
        choice = {**choice, "default": best, "default_table": table}
    else:
        done = len(set(PLANNED) & set(ranking.group))
        first = (f"Leading so far (not a choice yet: {done} of {len(PLANNED)} planned groups complete): "
                 f"**{label(best)}**.")
        choice = {**choice, "leading": best, "default_table": table}
    return [line for line in (first, lead_line(full, "candidate")) if line], choice


def best_run(valid: pd.DataFrame, group: str) -> str:
    """The run of `group` to ship: the best validation score (per probe seed, the mean over tasks;
    then the mean over probe seeds); a tie goes to the first run by name."""
    sub = valid[valid.group == group]
    if sub.empty:
        raise StudyError(f"no validation cell of group {group!r} is scored")
    per = sub.groupby(["model", "seed"]).valid.mean().groupby("model").mean()
    return sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def margins(diffs: pd.DataFrame, group: str, references: tuple[str, ...] = ("random_init", PREVIOUS_DEFAULT)
            ) -> dict[str, dict]:
    """`group`'s mean test difference over each of `references` in `diffs` (a ``differences_<suite>.csv``):
    reference -> diff, ci_low, ci_high and a verdict: ``ahead`` (the interval is above 0),
    ``behind`` (below 0) or ``not separated``."""
    rows = {ref: _mean_row(diffs, group, ref) for ref in references}
    return {ref: dict(diff=float(r["diff"]), ci_low=float(r.ci_low), ci_high=float(r.ci_high),
                      verdict=verdict(r.ci_low, r.ci_high)) for ref, r in rows.items() if r is not None}


def verdict(low: float, high: float) -> str:
    """``ahead`` (a 95 % interval above 0), ``behind`` (below 0), ``not separated``, or ``no interval``."""
    if math.isnan(low) or math.isnan(high):
        return "no interval"
    return "ahead" if low > 0 else "behind" if high < 0 else "not separated"


def _mean_row(diffs: pd.DataFrame | None, group: str, reference: str):
    if diffs is None:
        return None
    rows = diffs[(diffs.model == group) & (diffs.task == "mean") & (diffs.reference == reference)]
    return rows.iloc[0] if len(rows) else None


def _cell(row) -> str:
    if row is None:
        return "–"
    return f"{row['diff']:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}] {verdict(row.ci_low, row.ci_high)}"


def answer_lines(diffs: dict[str, pd.DataFrame], ranking: pd.DataFrame, runs: dict[str, int],
                 choice: dict, final: bool) -> list[str]:
    """The report's answers to issue 28's questions, from the test differences (`diffs`: suite ->
    model, task, diff, ci_low, ci_high, reference; each model minus its reference), the validation
    `ranking` (:func:`choose`), the runs scored per group, and `choice` (the crop, once chosen).
    Each answer says whether it stands on every planned run (`final`) or on what is scored so far."""
    rec, study = diffs.get(CHOICE_SUITE), diffs.get("study")
    status = ("every planned group is scored" if final else
              "so far: not every planned group is scored, so these answers can still change")
    lines = ["## Answers", "", f"Recorded suite's test first, the study suite's beside ({status}). Each cell: mean "
             "over tasks, the model minus the reference, [95 % interval over pretraining runs and test clips]; "
             "`ahead` / `behind`: the interval excludes 0; `not separated`: it does not.", ""]
    groups = [g for g in dict.fromkeys([*ranking.group, *(rec.model if rec is not None else [])])
              if g not in ("random_init", "logmel_stats")]
    lines += ["**Does each model pass random init on recorded audio?**", "",
              "| model | runs | recorded, minus random init | study suite, minus random init |", "|---|---:|---|---|"]
    lines += [f"| {label(g)} | {runs.get(g, 0)} | {_cell(_mean_row(rec, g, 'random_init'))} | "
              f"{_cell(_mean_row(study, g, 'random_init'))} |" for g in groups]
    crop = choice.get("crop")
    lines += ["", "**Is SLICER first?**", ""]
    slicer = f"slicer_{crop}" if crop else None
    methods = [m for m in METHOD_STAGE if m in set(ranking.group)]
    if not crop or not methods:
        lines += ["Not answered yet: the methods train with the chosen crop once every crop is scored."]
    else:
        order = [g for g in ranking.group if g in {slicer, *methods}]
        place = order.index(slicer) + 1 if slicer in order else None
        lines += [f"On the recorded suite's validation, among SLICER and the {len(methods)} method(s) scored with "
                  f"its crop: SLICER is {'not ranked (incomplete)' if place is None else f'{place} of {len(order)}'} "
                  f"({', '.join(label(g) for g in order)}). On test, SLICER minus each method:", "",
                  "| method | runs | recorded | study suite |", "|---|---:|---|---|"]
        for m in methods:
            r, st = _mean_row(rec, m, slicer), _mean_row(study, m, slicer)
            lines.append(f"| {label(m)} | {runs.get(m, 0)} | {_cell(_negate(r))} | {_cell(_negate(st))} |")
    lines += ["", "**Which crop generalises?**", "",
              "| crop (SLICER) | validation rank | recorded, minus random init | study suite, minus random init |",
              "|---|---:|---|---|"]
    ranked = [g for g in ranking.group if g.removeprefix("slicer_") in CROPS]
    for c in CROPS:
        g = f"slicer_{c}"
        rank = f"{ranked.index(g) + 1} of {len(ranked)} scored" if g in ranked else "– (incomplete)"
        lines.append(f"| {label(g)} | {rank} | {_cell(_mean_row(rec, g, 'random_init'))} | "
                     f"{_cell(_mean_row(study, g, 'random_init'))} |")
    return lines


def _negate(diffs):
    """Differences (a row or a table) of `a - b` as `b - a`: the sign and the interval's ends swapped."""
    if diffs is None:
        return None
    out = diffs.copy()
    out["diff"], out["ci_low"], out["ci_high"] = -diffs["diff"], -diffs["ci_high"], -diffs["ci_low"]
    return out


def ship(args) -> dict:
    """Bundle the chosen default (see the module's docstring); the record added to ``choice.json``."""
    import hashlib

    from hear_slicer.api import DEFAULT_CHECKPOINT

    write_report(args)
    choice = _load_json(args.out / CHOICE_JSON)
    if "default" not in choice:
        lead = f"; {label(choice['leading'])} leads so far" if "leading" in choice else ""
        raise UsageError(f"--ship: the default is not chosen yet{lead} (report.md says how many groups are "
                         "complete); run the queue until every planned group is scored")
    group = choice["default"]
    tasks = _task_names(CHOICE_SUITE, args.tasks_root)
    run = best_run(validation_table(args.out, _groups(args), tasks, args.probe_seeds), group)
    src = args.runs / run / f"{run}.pt"
    if not src.is_file():
        raise UsageError(f"--ship: {src} not found: the slim checkpoint of run {run} (written when it was scored; "
                         "--runs must be the queue's)")
    dest = args.ship_to
    _refuse_foreign(dest, DEFAULT_CHECKPOINT, "--ship-to", "the bundled default")
    recipe_to = args.recipe_to or (DEFAULT_RECIPE if dest.resolve() == DEFAULT_CHECKPOINT.resolve()
                                   else dest.with_suffix(".yaml"))
    _refuse_foreign(recipe_to, DEFAULT_RECIPE, "--recipe-to", "pretrain/configs/default_model.yaml")
    recipe = shipped_recipe(args, run, src, choice["crop"])
    data = src.read_bytes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(dest, lambda fh: fh.write(data), mode="wb")
    recipe_to.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(recipe_to, lambda fh: fh.write(recipe))
    diffs = args.out / f"differences_{CHOICE_SUITE}.csv"
    record = {"group": group, "run": run, "sha256": hashlib.sha256(data).hexdigest(), "to": str(dest),
              "recipe": str(recipe_to),
              "test_margins": margins(pd.read_csv(diffs), group) if diffs.is_file() else {}}
    _save_json(args.out / CHOICE_JSON, {**choice, "shipped": record})
    print(f"shipped {run} (group {label(group)}, the best of its runs on validation) to {dest}", flush=True)
    for ref, m in record["test_margins"].items():
        print(f"  recorded test, minus {label(ref)}: {m['diff']:+.3f} [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}] "
              f"({m['verdict']})", flush=True)
    return record


DEFAULT_RECIPE = REPO / "pretrain" / "configs" / "default_model.yaml"
"""The recipe of the bundled default; ``--ship`` rewrites it with the shipped run's."""
_VENUE_KEYS = ("data.path", "run.out", "run.progress", "run.device")
"""Where a run's data and outputs were and how it showed progress: not part of its recipe."""


def _refuse_foreign(path: Path, ours: Path, flag: str, what: str) -> None:
    """A :class:`UsageError` if a file is at `path` and it is not `ours` (which --ship replaces)."""
    if (path.exists() or path.is_symlink()) and path.resolve() != ours.resolve():
        raise UsageError(f"{flag} {path}: a file is there and it is not {what}; choose a new path (nothing was changed)")


def shipped_recipe(args, run: str, checkpoint: Path, crop: str) -> str:
    """The YAML recipe of `run` (`checkpoint` its slim export), as the study plans it, with the
    default places of its data (``--store``'s and ``--demo-root``'s defaults) and ``run.out:
    runs/default_model``; refused (:class:`StudyError`) unless the checkpoint was trained with
    exactly that recipe (every key but :data:`_VENUE_KEYS`)."""
    from hear_slicer.checkpoint import load_checkpoint
    from pretrain.config import _flatten, config_from_dict, load_config

    defaults = build_parser()
    stages = _dry(args, plan(args.runs, defaults.get_default("store"), defaults.get_default("demo_root") / "corpus",
                             args.steps, args.seeds, args.precision, args.device, crop,
                             {m: args.seeds for m in METHOD_STAGE}))
    planned = next((r for runs in stages.values() for r in runs if r.name == run), None)
    if planned is None:
        raise StudyError(f"{run}: not a run the study plans (crop {crop}, seeds {args.seeds})")
    recipe = load_config(planned.config, planned.set_args()).to_dict()
    base = load_config(planned.config).run
    recipe["run"].update(out="runs/default_model", progress=base.progress, device=base.device)
    trained = _flatten(config_from_dict(load_checkpoint(checkpoint).train_config).to_dict())
    wanted = _flatten(recipe)
    differ = sorted(k for k in set(trained) | set(wanted) if k not in _VENUE_KEYS and trained.get(k) != wanted.get(k))
    if differ:
        raise StudyError(f"{checkpoint}: trained with another recipe than the study plans for {run}: "
                         + "; ".join(f"{k}: {trained.get(k)!r} (trained) vs {wanted.get(k)!r} (planned)"
                                     for k in differ[:5]))
    data = ("the learning-curve study's corpus store (python -m studies.learning_curves --prepare-only)"
            if planned.group != PREVIOUS_DEFAULT else "the small demo corpus (python -m eval_suites.demo builds it)")
    head = ["The recipe of the shipped default checkpoint (hear_slicer/assets/default.pt), written by "
            f"`python -m studies.recorded --ship`: run {run}, {label(planned.group)}, the best run on validation of "
            "the group the recorded study chose on the recorded suite's validation splits "
            "(studies/results/recorded/report.md and choice.json; docs/studies.md).",
            f"Its source config: pretrain/configs/{planned.config.name}, with the study's overrides: "
            + ", ".join(f"{k}={v}" for k, v in planned.overrides.items()
                        if k not in _VENUE_KEYS and k != "run.seed") + f"; run.seed={planned.seed}.",
            f"Data: {data}.",
            "Reproduce:",
            f"  python -m pretrain --config {DEFAULT_RECIPE.relative_to(REPO)}",
            "  python -m pretrain.export runs/default_model hear_slicer/assets/default.pt"]
    lines = [w for h in head for w in ([h] if h.startswith("  ") else textwrap.wrap(h, 96, break_on_hyphens=False))]
    return "".join(f"# {h}\n" for h in lines) + yaml.safe_dump(recipe, sort_keys=False)


# ----------------------------------------------------------------------------- the queue
def reference_specs(runs_root: Path, init_seeds: list[int]) -> dict[str, tuple[str, ModelSpec]]:
    """name -> (group, spec) of the references. Random init takes its frontend and normalisation
    from ``<runs>/random_init_source.pt`` (the first crop run's, written once it exists)."""
    source = runs_root / "random_init_source.pt"
    out = {f"random_init_s{s}": ("random_init", ModelSpec(name=f"random_init_s{s}", module="hear_slicer",
                                                           checkpoint=source,
                                                           options={"random_init": True, "random_init_seed": s}))
           for s in init_seeds}
    out["logmel_stats"] = ("logmel_stats", ModelSpec(name="logmel_stats", module="eval_suites.references.logmel_stats",
                                                     checkpoint=None, options={}))
    out[SHIPPED_BEFORE] = (SHIPPED_BEFORE, ModelSpec(name=SHIPPED_BEFORE, module="hear_slicer",
                                                     checkpoint=runs_root / f"{SHIPPED_BEFORE}.pt", options={}))
    return out


def copy_shipped_before(dest: Path, bundled: Path = REPO / "hear_slicer" / "assets" / "default.pt") -> bool:
    """Copy the bundled default to `dest` if it is still the one shipped before the study (by
    :data:`SHIPPED_BEFORE_SHA256`); True when `dest` holds it (copied now or before, checked by
    the same hash). A `dest` with other bytes: StudyError, nothing touched."""
    import hashlib

    if dest.exists() or dest.is_symlink():
        if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == SHIPPED_BEFORE_SHA256:
            return True
        raise StudyError(f"{dest} is not the default shipped before the study (its SHA-256 is not "
                         f"{SHIPPED_BEFORE_SHA256[:12]}...); move it away (nothing was changed)")
    if not bundled.is_file():
        return False
    data = bundled.read_bytes()
    if hashlib.sha256(data).hexdigest() != SHIPPED_BEFORE_SHA256:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(dest, lambda fh: fh.write(data), mode="wb")
    return True


def _run_identity(run: PretrainRun) -> dict:
    from .mini_lape import _comparable, _desired_config

    cfg = _comparable(_desired_config(run))
    cfg["data"].pop("path", None)
    return {"group": run.group, "config": cfg}


def _score_run(run: PretrainRun, args, roots, tasks_of, cache: Path) -> None:
    if scored(args.out, run.name, tasks_of, args.probe_seeds):
        return
    missing = _suites_ready(roots)
    if missing:  # scored by a later invocation, once the suites are built
        print(f"  {run.name}: not scored yet, task folders not complete: {', '.join(missing)}", flush=True)
        return
    ckpt = export_run(run).resolve()
    print(f"  scoring {run.name}", flush=True)
    score(ModelSpec(name=run.name, module="hear_slicer", checkpoint=ckpt, options={}), args.out, roots,
          args.probe_seeds, cache, _run_identity(run))


def _score_references(args, roots, tasks_of, cache: Path, first_crop_run: PretrainRun) -> None:
    from .learning_curves import _slim

    found = sorted((first_crop_run.out / "checkpoints").glob("step_*.pt"))
    if _suites_ready(roots):
        return
    for name, (group, spec) in reference_specs(args.runs, args.init_seeds).items():
        if scored(args.out, name, tasks_of, args.probe_seeds):
            continue
        if group == SHIPPED_BEFORE:
            if not copy_shipped_before(spec.checkpoint):
                print(f"  {name}: not scored, the bundled default is no longer the one shipped before the study "
                      f"(SHA-256 {SHIPPED_BEFORE_SHA256[:12]}...) and {spec.checkpoint} holds no copy", flush=True)
                continue
        elif spec.checkpoint is not None:
            if not found:
                continue  # random init waits for a checkpoint of the first crop run (its normalisation)
            _slim(found[0], spec.checkpoint)
        print(f"  scoring reference {name}", flush=True)
        score(spec, args.out, roots, args.probe_seeds, cache, {"group": group, "options": spec.options})


def still_to_train(runs: list[PretrainRun], out: Path, suites: dict[str, list[str]], probe_seeds: list[int]
                   ) -> list[PretrainRun]:
    """`runs` less those scored already under the same recipe (every cell ok, and ``runs.json``
    records the run's identity): their results are committed, so a new machine without their
    checkpoints does not train them again. A run whose cells are there but whose recorded
    recipe is another: StudyError, before anything is trained."""
    records = load_records(out / RUNS_JSON, "model records", "score every model again")
    todo = []
    for run in runs:
        if not scored(out, run.name, suites, probe_seeds):
            todo.append(run)
            continue
        want = json.loads(json.dumps(_run_identity(run)))
        if records.get(run.name) != want:
            raise StudyError(f"{run.name}: its cells in {out} were scored for another recipe than the one planned "
                             f"now ({out / RUNS_JSON}); move {out} away to score again (nothing was changed)")
        if not (run.out / "checkpoints").is_dir():
            print(f"  {run.name}: scored already ({RUNS_JSON}); its checkpoints are not in {run.out.parent}, "
                  "not trained again", flush=True)
    return todo


def _stage(runs: list[PretrainRun], args, roots, tasks_of, cache: Path, threads: int,
           first_crop_run: PretrainRun) -> list[str]:
    """Train `runs` (each to its own run.steps) and score each as it finishes; the references as
    soon as they can be (random init once the first crop run has a checkpoint). Runs scored
    already are left out (:func:`still_to_train`)."""
    def on_finished(run: PretrainRun) -> None:
        _score_run(run, args, roots, tasks_of, cache)
        _score_references(args, roots, tasks_of, cache, first_crop_run)

    return pretrain_all(still_to_train(runs, args.out, tasks_of, args.probe_seeds),
                        lambda r: int(r.overrides["run.steps"]), args.parallel, threads,
                        train=not args.no_train, on_finished=on_finished)


def run_queue(args) -> int:
    roots = {s: r for s, r in (("recorded", args.tasks_root), ("study", args.study_tasks_root)) if s in args.suites}
    tasks_of = {s: _task_names(s, roots[s]) for s in roots}
    cache = args.runs / "embeddings"
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.parallel)
    demo_corpus = _demo_corpus(args.demo_root)
    _check_disjoint(args.store, demo_corpus)
    stages = _dry(args, plan(args.runs, args.store, demo_corpus, args.steps, args.seeds, args.precision, args.device,
                             None))
    failed = []
    print(f"[1/3] previous default's recipe ({len(args.seeds)} seeds) and SLICER's crops "
          f"({len(CROPS)} x {len(args.seeds)} seeds), {args.parallel} at a time, {threads} thread(s) each", flush=True)
    first_crop_run = stages["crop"][0]
    _score_references(args, roots, tasks_of, cache, first_crop_run)  # log-mel statistics need no run
    failed += _stage(stages["previous_default"] + stages["crop"], args, roots, tasks_of, cache, threads, first_crop_run)
    _score_references(args, roots, tasks_of, cache, first_crop_run)
    groups = _groups(args)
    valid = validation_table(args.out, groups, tasks_of[CHOICE_SUITE], args.probe_seeds)
    crops = choose(valid, [f"slicer_{c}" for c in CROPS], tasks_of[CHOICE_SUITE], _runs_per_group(args))
    if len(crops) < len(CROPS):
        print(f"the crop is not chosen yet: {len(crops)} of {len(CROPS)} crops have every run scored", flush=True)
        return _finish(args, failed)
    crop = crops.group.iloc[0].removeprefix("slicer_")
    _save_json(args.out / CHOICE_JSON, {**_load_json(args.out / CHOICE_JSON), "crop": crop,
                                         "crop_table": crops.to_dict("records")})
    print(f"[2/3] crop chosen on the recorded suite's validation: {crop}; the methods with it, "
          f"{len(_method_seeds(args))} seed(s) each", flush=True)
    stages = _dry(args, plan(args.runs, args.store, demo_corpus, args.steps, args.seeds, args.precision, args.device,
                             crop, {m: _method_seeds(args) for m in METHOD_STAGE}))
    failed += _stage(stages["methods"], args, roots, tasks_of, cache, threads, first_crop_run)
    if not failed and len(_method_seeds(args)) < len(args.seeds):
        valid = validation_table(args.out, _groups(args), tasks_of[CHOICE_SUITE], args.probe_seeds)
        ranking = choose(valid, [PREVIOUS_DEFAULT, *(f"slicer_{c}" for c in CROPS), *METHOD_STAGE],
                         tasks_of[CHOICE_SUITE], _runs_per_group(args))
        up = sorted(set(promoted(ranking, len(args.seeds))) | set(_load_json(args.out / CHOICE_JSON).get("promoted", [])))
        if up:
            _save_json(args.out / CHOICE_JSON, {**_load_json(args.out / CHOICE_JSON), "promoted": up})
            print(f"  ahead of every full candidate on validation at {len(_method_seeds(args))} seeds: {', '.join(up)}; "
                  f"their remaining seeds before the default is chosen", flush=True)
            stages = _dry(args, plan(args.runs, args.store, demo_corpus, args.steps, args.seeds, args.precision,
                                     args.device, crop, {m: args.seeds if m in up else [] for m in METHOD_STAGE}))
            failed += _stage(stages["methods"], args, roots, tasks_of, cache, threads, first_crop_run)
    return _finish(args, failed)


def _check_disjoint(store: Path, demo_corpus: Path) -> None:
    """Refuse to train on a corpus that holds audio of the recorded suite (the store's listing,
    ``corpus_files.txt`` beside it, and the demo corpus, links followed)."""
    from eval_suites.recorded.sources import corpus_overlap

    listing = store.parent / "corpus_files.txt"
    files = [f for f in listing.read_text().splitlines() if f] if listing.is_file() else []
    files += [str(p) for p in demo_corpus.rglob("*") if p.is_file()]
    shared = corpus_overlap(files)
    if shared:
        raise StudyError(f"the pretraining corpus holds {len(shared)} file(s) of the recorded suite's packages "
                         f"(first: {shared[0]}); a corpus the study trains on must be disjoint from it")
    if not listing.is_file():
        print(f"  (no listing {listing} beside the store: only the demo corpus was checked against the suite)",
              flush=True)


def _dry(args, stages: dict[str, list[PretrainRun]]) -> dict[str, list[PretrainRun]]:
    """--dry-run-steps N (the tests' end-to-end run): every run N steps, a checkpoint each step."""
    if args.dry_run_steps:
        for runs in stages.values():
            for r in runs:
                r.overrides.update({"run.steps": str(args.dry_run_steps), "run.checkpoint_every": "1"})
    return stages


def _finish(args, failed: list[str]) -> int:
    print("[3/3] report", flush=True)
    write_report(args)
    if failed:
        print(f"FAILED runs: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- report
def _load_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda fh: fh.write(json.dumps(data, indent=1, sort_keys=True, default=str)))


def _groups(args) -> dict[str, str]:
    """model -> group of every model the registry holds (scored models only)."""
    records = load_records(args.out / RUNS_JSON, "model records", "score every model again")
    return {m: r["group"] for m, r in sorted(records.items())}


def _method_seeds(args) -> list[int]:
    """Stage 3's pretraining seeds: the first ``--method-seeds`` of ``--seeds``."""
    return args.seeds[:args.method_seeds]


def _runs_per_group(args) -> dict[str, int]:
    """How many runs each group has when complete: one per pretraining (or init) seed (a method of
    stage 3: ``--method-seeds``, all of ``--seeds`` once promoted); log-mel one."""
    n = {f"slicer_{c}": len(args.seeds) for c in CROPS}
    up = set(_load_json(args.out / CHOICE_JSON).get("promoted", []))
    n.update({m: len(args.seeds) if m in up else len(_method_seeds(args)) for m in METHOD_STAGE})
    n.update({PREVIOUS_DEFAULT: len(args.seeds), "random_init": len(args.init_seeds), "logmel_stats": 1,
              SHIPPED_BEFORE: 1})
    return n


def _task_names(suite: str, root: Path | None) -> list[str]:
    names = [t.name for t in load_manifest(SUITES[suite], tasks_root=root).tasks]
    return [n for n in names if not TASKS["names"] or n in TASKS["names"]]


def _suites_ready(roots: dict[str, Path | None]) -> list[str]:
    """The task folders of the suites that are not complete yet (a model is scored once all are)."""
    from eval_suites.hear_format.task import task_is_complete

    missing = []
    for suite, root in roots.items():
        m = load_manifest(SUITES[suite], tasks_root=root)
        missing += [str(t.path) for t in m.tasks if (not TASKS["names"] or t.name in TASKS["names"])
                    and not task_is_complete(t.path)]
    return missing


def _demo_corpus(root: Path) -> Path:
    from eval_suites.synthetic.demo_data import build_demo

    if not (root / "corpus").is_dir():
        build_demo(root, preset="small", progress=False)
    return root / "corpus"


def write_report(args) -> None:
    """``report.md``, ``test_<suite>.csv``, ``differences_<suite>.csv`` and ``recorded_study.png``
    from what is scored: the default chosen on validation among the complete candidate groups."""
    groups = _groups(args)
    if not groups:
        print("nothing scored yet: no report", flush=True)
        return
    out = args.out
    suites = {s: _task_names(s, r) for s, r in (("recorded", args.tasks_root), ("study", args.study_tasks_root))
              if s in args.suites}
    n_runs = _runs_per_group(args)
    valid = validation_table(out, groups, suites[CHOICE_SUITE], args.probe_seeds)
    candidates = [g for g in dict.fromkeys(groups.values()) if g not in REFERENCES]
    ranking = choose(valid, candidates, suites[CHOICE_SUITE], n_runs)
    sentence, choice = choice_lines(ranking, _load_json(out / CHOICE_JSON), len(args.seeds))
    _save_json(out / CHOICE_JSON, choice)
    order = list(ranking.group) + [g for g in candidates if g not in set(ranking.group)]
    order += [g for g in REFERENCES if g in set(groups.values())]
    lines = ["# The recorded study", "", "Written by `python -m studies.recorded --report` from the scored cells. "
             "Choices use the recorded suite's validation splits only; test is reported.", ""]
    lines += ["## Choice on the recorded suite's validation", "",
              "Mean validation score (linear probe, mean over tasks, then over pretraining seeds x probe seeds "
              f"{args.probe_seeds}); only groups with every run scored. A candidate for the default has "
              f"{len(args.seeds)} pretraining seeds; a method of stage 3 has {len(_method_seeds(args))} unless it was "
              "ahead of every candidate, which gave it the rest:", "",
              "| rank | group | mean validation | seed spread | runs | candidate |", "|---:|---|---:|---:|---:|---|"]
    lines += [f"| {i + 1} | {label(r.group)} | {r['mean']:.3f} | "
              f"{'–' if math.isnan(r.spread) else f'{r.spread:.3f}'} | {r.runs} | "
              f"{'yes' if r.runs >= len(args.seeds) else 'no'} |" for i, r in ranking.iterrows()]
    lines += ["", "Seed spread: the best pretraining run's mean validation minus the worst's, within the group."]
    if sentence:
        lines += ["", " ".join(sentence)]
    if "crop" in choice:
        crops = ranking[ranking.group.isin([f"slicer_{c}" for c in CROPS])].reset_index(drop=True)
        lines += ["", " ".join(filter(None, (f"Crop chosen (stage 2, SLICER): **{label('slicer_' + choice['crop'])}**.",
                                             lead_line(crops, "crop"))))]
    diffs_all = {}
    for suite, tasks in suites.items():
        long = test_table(out, groups, tasks, args.probe_seeds, suite)
        long = long[long.group.isin(order)]
        if long.empty or (long.status == "ok").sum() == 0:
            continue
        table = aggregate(long, order)
        table.to_csv(out / f"test_{suite}.csv", index=False)
        lines += ["", f"## Test, {suite} suite" + (" (reported beside; not used to choose)" if suite != CHOICE_SUITE
                                                    else ""), "",
                  "Mean over pretraining runs x probe seeds; [95 % interval] of the hierarchical bootstrap "
                  "(pretraining runs, then test clips; probe seeds averaged).", "",
                  markdown_table(table, [g for g in order if g in set(long.group)], tasks, {})]
        frames = []
        refs = ("random_init", PREVIOUS_DEFAULT, *([f"slicer_{choice['crop']}"] if "crop" in choice else []))
        for ref in refs:
            if ref not in set(long.group):
                continue
            others = [g for g in order if g != ref] if not ref.startswith("slicer_") else \
                [g for g in METHOD_STAGE if g in set(long.group)]
            if not others:
                continue
            d = differences(long, ref, others)
            d = _negate(d).assign(reference=ref)
            frames.append(d)
            lines += ["", f"Each group minus {label(ref)} on the {suite} suite's test clips (paired; intervals "
                      "resample pretraining runs of both sides and test clips; > 0: ahead; **bold**: excludes 0):", "",
                      markdown_differences(d, ref, tasks, header=f"minus {label(ref)}")]
        if frames:
            diffs_all[suite] = pd.concat(frames, ignore_index=True)
            diffs_all[suite].to_csv(out / f"differences_{suite}.csv", index=False)
    final = choice_is_final(ranking, choice, len(args.seeds))
    runs_scored = {g: sum(1 for v in groups.values() if v == g) for g in set(groups.values())}
    answers = answer_lines(diffs_all, ranking, runs_scored, choice, final)
    cut = lines.index(f"## Test, {CHOICE_SUITE} suite") if f"## Test, {CHOICE_SUITE} suite" in lines else len(lines)
    lines = lines[:cut] + answers + [""] + lines[cut:]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    if "random_init" in {g for d in diffs_all.values() for g in d.reference}:
        plot_differences(diffs_all, out / "recorded_study.png", runs_scored)
    print(f"report: {out / 'report.md'}", flush=True)


def plot_differences(diffs: dict[str, pd.DataFrame], path: Path, runs: dict[str, int] | None = None) -> Path:
    """Each group's test difference against random init (mean over tasks, 95 % interval), one
    panel per suite side by side, the recorded suite first; 0 marked. `runs`: group -> runs
    scored, shown beside its name (``n = 2``), so a row resting on fewer seeds reads as such."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = [s for s in ("recorded", "study") if s in diffs]
    fig, axes = plt.subplots(1, len(suites), figsize=(4 + 4.5 * len(suites), 4.5), sharey=True, sharex=True,
                             squeeze=False)  # one x scale: a gap reads the same in both panels
    first = diffs[suites[0]]
    groups = list(dict.fromkeys(first[(first.reference == "random_init") & (first.task == "mean")].model))
    y = list(range(len(groups)))[::-1]
    for ax, suite in zip(axes[0], suites):
        d = diffs[suite]
        d = d[(d.reference == "random_init") & (d.task == "mean")].set_index("model")
        for yi, g in zip(y, groups):
            if g in d.index and not math.isnan(d.loc[g, "ci_low"]):
                r = d.loc[g]
                ax.errorbar(r["diff"], yi, xerr=[[r["diff"] - r.ci_low], [r.ci_high - r["diff"]]], fmt="o",
                            color="tab:blue", capsize=3)
            elif g in d.index:
                ax.plot(d.loc[g, "diff"], yi, "o", color="tab:gray")
        ax.axvline(0, color="black", linewidth=1)
        ax.set_yticks(y, [label(g) + (f"  (n = {runs[g]})" if runs and g in runs else "") for g in groups])
        ax.set_title(f"{suite} suite\n({'recorded audio; choices made on its validation' if suite == 'recorded' else 'mostly synthesised; reported only'})",
                     fontsize=9)
        ax.set_xlabel("test score minus random init\n(mean over tasks, 95 % interval)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Does pretraining beat random init? Test splits, intervals over pretraining runs (n) and clips",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m studies.recorded", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=Path("runs/learning_curves/corpus_store"),
                    help="the prepared pretraining corpus (python -m studies.learning_curves --prepare-only)")
    ap.add_argument("--demo-root", type=Path, default=Path("demo_data"),
                    help="the small demo data (the previous default's corpus; built if missing)")
    ap.add_argument("--tasks-root", type=Path, default=None,
                    help="the recorded suite's tasks (default: recorded.yaml's, recorded_data/tasks)")
    ap.add_argument("--study-tasks-root", type=Path, default=None,
                    help="the study suite's tasks (default: study.yaml's, demo_data_study/tasks)")
    ap.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES),
                    help="suites to score (recorded is the one choices are made on)")
    ap.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                    help="only these tasks of the manifests (names; default all)")
    ap.add_argument("--runs", type=Path, default=Path("runs/recorded"), help="checkpoints (outside the repository)")
    ap.add_argument("--out", type=Path, default=Path("studies/results/recorded"), help="results (commit it)")
    ap.add_argument("--steps", type=int, default=1500,
                    help="steps of every run of stages 2 and 3 (default 1500: CPU time, the same for every candidate)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="pretraining seeds (default 0 1 2)")
    ap.add_argument("--method-seeds", type=int, default=2,
                    help="pretraining seeds of each method of stage 3 (the first N of --seeds; default 2); a method "
                         "ahead of every full candidate on validation gets the rest")
    ap.add_argument("--init-seeds", type=int, nargs="+", default=[0, 1, 2], help="random-init seeds (default 0 1 2)")
    ap.add_argument("--probe-seeds", type=int, nargs="+", default=[0, 1, 2], help="linear-probe seeds (default 0 1 2)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="of stages 2 and 3, every run alike (default fp32; bf16 only where the CPU or GPU runs it "
                         "natively: on a CPU without it, 23x slower)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--parallel", type=int, default=2, help="pretraining processes at a time (default 2)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per process (default cores / parallel)")
    ap.add_argument("--no-train", action="store_true", help="score what is finished; train nothing")
    ap.add_argument("--report", action="store_true", help="train and score nothing; the report only")
    ap.add_argument("--ship", action="store_true",
                    help="train and score nothing: the report, then bundle the chosen default (refused until "
                         "every planned group is scored)")
    ap.add_argument("--ship-to", type=Path, default=None,
                    help="where --ship writes the default (default hear_slicer/assets/default.pt; any other "
                         "path must not exist yet)")
    ap.add_argument("--recipe-to", type=Path, default=None,
                    help="where --ship writes the shipped run's recipe (default pretrain/configs/default_model.yaml "
                         "beside the bundled default, else --ship-to's path with .yaml; any other path must not "
                         "exist yet)")
    ap.add_argument("--dry-run-steps", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return ap


def _check_args(args) -> None:
    for flag in ("steps", "parallel", "method_seeds"):
        v = getattr(args, flag)
        if v < 1:
            raise UsageError(f"--{flag.replace('_', '-')} {v}: must be a positive integer")
    if args.method_seeds > len(args.seeds):
        raise UsageError(f"--method-seeds {args.method_seeds}: at most the number of --seeds ({len(args.seeds)})")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: must be a positive integer")
    for flag in ("seeds", "init_seeds", "probe_seeds"):
        v = getattr(args, flag)
        if any(s < 0 for s in v) or len(set(v)) != len(v):
            raise UsageError(f"--{flag.replace('_', '-')} {v}: must be distinct integers >= 0")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a folder")
    if args.tasks:
        known = {t.name for suite in args.suites for t in load_manifest(SUITES[suite], tasks_root=Path("/")).tasks}
        unknown = [t for t in args.tasks if t not in known]
        if unknown:
            raise UsageError(f"--tasks {unknown}: no such task in the suites {args.suites}; choose from {sorted(known)}")
    if CHOICE_SUITE not in args.suites:
        raise UsageError(f"--suites {args.suites}: must include {CHOICE_SUITE!r}, the suite choices are made on")
    for flag in ("ship_to", "recipe_to"):
        if getattr(args, flag) is not None and not args.ship:
            raise UsageError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: only with --ship")
    if args.ship and args.report:
        raise UsageError("--ship and --report: choose one (--ship writes the report first)")
    if not (args.report or args.ship) and not (args.store / "store.json").is_file():
        raise UsageError(f"--store {args.store}: no prepared corpus there; build it with "
                         "python -m studies.learning_curves --prepare-only")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        _check_args(args)
        args.runs = args.runs.resolve()
        TASKS["names"] = args.tasks
        if args.report:
            write_report(args)
            return 0
        if args.ship:
            from hear_slicer.api import DEFAULT_CHECKPOINT

            args.ship_to = args.ship_to or DEFAULT_CHECKPOINT
            ship(args)
            return 0
        return run_queue(args)

    return run_command(go, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
