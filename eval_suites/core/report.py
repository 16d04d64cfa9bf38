"""The run's report: ``results.csv``, ``results.md`` (models x tasks) and ``results.png``.

Everything is rebuilt from the cells' ``result.json`` files, so ``python -m eval_suites
report OUT`` gives the same files as the end of a run. Each protocol gets its own table
and plot panel. A cell shows the task's primary metric (its first ``evaluation`` metric,
e.g. ``top1_acc``; ``mean ± std`` over folds for k-fold tasks), ``FAILED`` when the cell
failed (its error is listed under the table) or ``–`` when it was not run. The
``mean <suite>`` columns average the primary metrics of the suite's tasks where larger
is better (accuracy, mAP, F-measure, d', AUC); a task whose primary metric is an error
rate (smaller is better, heareval's ``maximize=False``) is never averaged with them and
is left out of the mean. A mean over fewer tasks than the suite has (a failed or missing
cell, or an error-rate task) is marked ``*``.

Two kinds of reference sit beside the models. A **chance** row (a dashed line per task in
the plot) gives what the best constant prediction scores on each task's test labels
(:mod:`eval_suites.core.chance`: the majority-class rate for accuracies, the label
frequencies for mAP; none for event metrics). A **reference model** is a cell whose
``details`` name it one (``details["reference"]``: what it is, e.g. a random-init encoder or
log-mel statistics; the demo adds them): it is listed after the other models, hatched in
the plot, and described under the table.

Every value carries its bootstrap interval over test clips, ``value [low, high]``
(:mod:`eval_suites.core.intervals`, computed from the per-clip outputs each cell stores; a suite
mean resamples clips within each of its tasks). ``[n/a]`` where a cell has no per-clip
outputs (results from before they were kept) or its metric cannot be resampled: an interval
is never invented. The plot draws the intervals as error bars.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from eval_suites.core.atomic_files import write_atomically
from eval_suites.core.chance import chance_level
from eval_suites.core.clip_outputs import OUTPUTS_FILE, load_outputs
from eval_suites.core.intervals import BootstrapConfig, cell_replicates, percentile_interval, supports
from eval_suites.core.results import CellResult, cell_dir, collect_results, write_csv

__all__ = ["REFERENCE_KEY", "Intervals", "larger_is_better", "markdown_report", "plot_results", "write_report",
           "print_summary"]

REFERENCE_KEY = "reference"
"""Key of ``CellResult.details`` that marks a reference model's cell; its value says what the model is."""


@lru_cache(maxsize=1024)
def _cached_chance(path: str, stamp: tuple, metric: str) -> float | None:
    return chance_level(load_outputs(Path(path).parent), metric)


@lru_cache(maxsize=8192)
def _cached_replicates(path: str, stamp: tuple, metric: str, task: str, cfg: BootstrapConfig) -> np.ndarray:
    outputs = load_outputs(Path(path).parent)
    return cell_replicates(outputs, metric, cfg, task)


class Intervals:
    """Bootstrap replicates and intervals of the cells under a results folder (computed once
    per cell and outputs file in a process, so the report rebuilt after every cell stays cheap)."""

    def __init__(self, out_dir: str | Path | None, cfg: BootstrapConfig = BootstrapConfig()):
        self.out = None if out_dir is None else Path(out_dir)
        self.cfg = cfg

    def replicates(self, r: CellResult | None, metric: str | None = None) -> np.ndarray | None:
        """(n_boot,) the metric (default: primary) of cell ``r`` on each resample, or None."""
        if self.out is None or r is None or not r.ok or r.primary is None:
            return None
        metric = metric or r.primary.metric
        path = cell_dir(self.out, r.model, r.task, r.protocol) / OUTPUTS_FILE
        value = next((m.value for m in r.metrics if m.metric == metric), math.nan)
        if not supports(metric) or not path.is_file() or math.isnan(value):
            return None
        st = path.stat()
        reps = _cached_replicates(str(path), (st.st_mtime_ns, st.st_size), metric, r.task, self.cfg)
        return None if np.isnan(reps).any() else reps

    def cell(self, r: CellResult | None, metric: str | None = None) -> tuple[float, float] | None:
        reps = self.replicates(r, metric)
        return None if reps is None else percentile_interval(reps, self.cfg.level)

    def mean(self, cells: list[CellResult]) -> tuple[float, float] | None:
        """Interval of the mean of the cells' primary metrics (None unless all have outputs)."""
        reps = [self.replicates(r) for r in cells]
        if not reps or any(x is None for x in reps):
            return None
        return percentile_interval(np.mean(reps, axis=0), self.cfg.level)

    def chance(self, cells: list[CellResult]) -> float | None:
        """Chance level of the primary metric of a task, from the first of its ``cells``
        that stored per-clip outputs (all are scored on the same test clips)."""
        for r in cells:
            path = None if self.out is None or r.primary is None else \
                cell_dir(self.out, r.model, r.task, r.protocol) / OUTPUTS_FILE
            if path is not None and path.is_file():
                st = path.stat()
                return _cached_chance(str(path), (st.st_mtime_ns, st.st_size), r.primary.metric)
        return None

    def table(self, results: list[CellResult]) -> dict:
        """{(model, task, protocol, metric): (low, high)} for every metric that has one."""
        out = {}
        for r in results:
            for m in (r.metrics if r.ok else []):
                iv = self.cell(r, m.metric)
                if iv is not None:
                    out[(r.model, r.task, r.protocol, m.metric)] = iv
        return out


def _ci(iv: tuple[float, float] | None) -> str:
    return " [n/a]" if iv is None else f" [{iv[0]:.3f}, {iv[1]:.3f}]"


def _references(results: list[CellResult]) -> dict[str, str]:
    """{reference model: what it is} (cells marked with :data:`REFERENCE_KEY`)."""
    return {r.model: str(r.details[REFERENCE_KEY]) for r in results if r.details.get(REFERENCE_KEY)}


def _wrap_name(name: str, width: int = 14) -> str:
    """`name` broken after underscores into lines of at most about `width` characters (a tick label
    such as ``event_onset_200ms_fms`` would run into its neighbours)."""
    lines = [""]
    for part in name.split("_"):
        piece = part if not lines[-1] else "_" + part
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines[-1] += "_"
            lines.append(part)
        else:
            lines[-1] += piece
    return "\n".join(lines)


def legend_label(model: str, references: dict[str, str]) -> str:
    """The plot's legend entry of `model`: a reference says what it is in a few words (the part of
    its description before a colon), e.g. ``random_init (reference: no training)``."""
    if model not in references:
        return model
    what = references[model]
    return f"{model} (reference: {what.split(':')[0].strip()})" if ":" in what else f"{model} (reference)"


def _layout(results: list[CellResult]):
    """(protocols, models (reference models last), tasks sorted by suite, {task: suite},
    {(m, t, p): result})."""
    protocols = sorted({r.protocol for r in results}, key=lambda p: (p != "linear", p))
    references = _references(results)
    names = list(dict.fromkeys(r.model for r in results))
    models = [m for m in names if m not in references] + [m for m in names if m in references]
    suites = {r.task: r.suite for r in results}
    tasks = sorted(suites, key=lambda t: (suites[t], t))
    cells = {(r.model, r.task, r.protocol): r for r in results}
    return protocols, models, tasks, suites, cells


def _fmt(r: CellResult | None, intervals: Intervals) -> str:
    if r is None:
        return "–"
    if not r.ok:
        return "FAILED"
    m = r.primary
    if m is None:
        return "–"
    text = f"{m.value:.3f} ± {m.std:.3f}" if m.std is not None else f"{m.value:.3f}"
    return text + _ci(intervals.cell(r))


def larger_is_better(metric: str) -> bool:
    """Whether a larger ``metric`` is better (heareval's ``maximize``; error rates are not).

    Metrics heareval does not know are taken as larger-is-better unless their name says
    error rate (ends in ``_er``, ``error`` or ``error_rate``)."""
    try:
        from heareval.score import available_scores
        return bool(getattr(available_scores[metric](label_to_idx={"x": 0}), "maximize", True))
    except (ImportError, KeyError, TypeError):
        name = metric.lower()
        return not (name.endswith("_er") or name.endswith("error") or name.endswith("error_rate"))


def _suite_means(cells, model: str, protocol: str, tasks: list[str], suites: dict, intervals: Intervals
                 ) -> dict[str, tuple[float, bool, tuple[float, float] | None]]:
    """{suite: (mean of the larger-is-better primary metrics, complete?, interval or None)}."""
    out = {}
    for suite in dict.fromkeys(suites[t] for t in tasks):
        members = [t for t in tasks if suites[t] == suite]
        done = [cells[(model, t, protocol)] for t in members
                if (model, t, protocol) in cells and cells[(model, t, protocol)].primary
                and larger_is_better(cells[(model, t, protocol)].primary.metric)]
        if done:
            out[suite] = (float(np.mean([r.primary.value for r in done])), len(done) == len(members),
                          intervals.mean(done))
    return out


def _chance_levels(results: list[CellResult], tasks: list[str], suites: dict, intervals: Intervals
                   ) -> tuple[dict[str, float], dict[str, tuple[float, bool]]]:
    """({task: chance level of its primary metric}, {suite: (mean over its larger-is-better
    tasks that have one, complete?)}); tasks without a level (events, no outputs) are absent."""
    levels = {}
    for t in tasks:
        level = intervals.chance([r for r in results if r.task == t and r.primary is not None])
        if level is not None:
            levels[t] = level
    means = {}
    for suite in dict.fromkeys(suites[t] for t in tasks):
        members = [t for t in tasks if suites[t] == suite]
        have = [levels[t] for t in members if t in levels]
        if have:
            means[suite] = (float(np.mean(have)), len(have) == len(members))
    return levels, means


def markdown_report(results: list[CellResult], intervals: Intervals | None = None) -> str:
    """Markdown tables (one per protocol, models x tasks, with per-suite means), each value
    with its bootstrap interval (``intervals``; none given: every interval ``n/a``)."""
    intervals = intervals or Intervals(None)
    if not results:
        return "# Results\n\nNo finished cells yet.\n"
    protocols, models, tasks, suites, cells = _layout(results)
    suite_names = list(dict.fromkeys(suites[t] for t in tasks))
    lines = ["# Results", ""]
    metric_of = {}
    for r in results:
        if r.primary is not None:
            metric_of.setdefault(r.task, r.primary.metric)
    lines.append("Primary metric per task: " + ", ".join(
        f"{t} ({suites[t]}): {metric_of.get(t, '?')}" for t in tasks) + ".")
    lines.append("")
    chance, chance_means = _chance_levels(results, tasks, suites, intervals)
    if chance:
        lines += ["*chance*: the best constant prediction on the test labels (majority class; mAP: label "
                  "frequencies); `–` where there is none (event metrics).", ""]
    references = _references(results)
    if references:
        lines += ["Reference models: " + "; ".join(f"`{m}`: {what}" for m, what in references.items()) + ".", ""]
    for protocol in protocols:
        lines += [f"## Protocol `{protocol}`", ""]
        header = ["model"] + tasks + [f"mean {s}" for s in suite_names]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * len(header)) + "|")
        incomplete = False
        for model in models:
            row = [model] + [_fmt(cells.get((model, t, protocol)), intervals) for t in tasks]
            means = _suite_means(cells, model, protocol, tasks, suites, intervals)
            for s in suite_names:
                if s in means:
                    v, complete, iv = means[s]
                    row.append(f"{v:.3f}" + ("" if complete else "*") + _ci(iv))
                    incomplete |= not complete
                else:
                    row.append("–")
            lines.append("| " + " | ".join(row) + " |")
        if chance:
            row = ["*chance*"] + [f"{chance[t]:.3f}" if t in chance else "–" for t in tasks]
            row += [f"{chance_means[s][0]:.3f}" + ("" if chance_means[s][1] else "*") if s in chance_means else "–"
                    for s in suite_names]
            incomplete |= any(not c for _, c in chance_means.values())
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        failed = [r for r in results if r.protocol == protocol and not r.ok]
        if failed:
            lines.append("Failed cells:")
            for r in failed:
                first = (r.error or "").splitlines()[0] if r.error else ""
                lines.append(f"- {r.model} / {r.task}: {first}")
            lines.append("")
        if incomplete:
            lines.append("`*` mean over the finished tasks only (*chance*: over the tasks that have one); "
                         "error-rate tasks are never averaged with accuracies.")
            lines.append("")
    cfg = intervals.cfg
    lines.append(f"`[low, high]`: {cfg.level:.0%} bootstrap interval over test clips ({cfg.n_boot} "
                 f"resamples, seed {cfg.seed}; suite means resample clips within each task); `n/a`: the "
                 "cell has no per-clip outputs or its metric cannot be resampled. See docs/eval.md.")
    lines.append("")
    return "\n".join(lines)


def plot_results(results: list[CellResult], path: str | Path, intervals: Intervals | None = None) -> Path:
    """Grouped bars of the primary metric (tasks x models), one panel per protocol, with
    bootstrap intervals as error bars where there are any, reference models hatched, each
    task's chance level as a dashed line across its group, and a failed cell as a red ``x``
    at zero. Uses matplotlib's Agg canvas directly (no pyplot, no global backend change)."""
    intervals = intervals or Intervals(None)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    protocols, models, tasks, suites, cells = _layout(results)
    references = _references(results)
    suite_names = list(dict.fromkeys(suites[t] for t in tasks))
    columns = tasks + [f"mean {s}" for s in suite_names]
    chance, chance_means = _chance_levels(results, tasks, suites, intervals)
    chance_row = [chance.get(t, math.nan) for t in tasks] + [  # a mean only over the same tasks as the bars'
        chance_means[s][0] if s in chance_means and chance_means[s][1] else math.nan for s in suite_names]
    metric_of = {r.task: r.primary.metric for r in results if r.primary is not None}
    labels = [f"{t}\n{_wrap_name(metric_of.get(t, ''))}" for t in tasks] + columns[len(tasks):]
    width = max(7.0, 0.55 * len(columns) * max(1, len(models)) ** 0.5 + 3.5)  # + room for the legend
    crowded = len(columns) > 8  # tick labels turned, and room made for them
    fig = Figure(figsize=(width, (1.6 if crowded else 0.8) + 3.2 * max(1, len(protocols))), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(protocols)), 1, squeeze=False, sharex=True)[:, 0]
    bar = 0.8 / max(1, len(models))
    x = np.arange(len(columns))
    for ax, protocol in zip(axes, protocols):
        failed_label = "failed"  # in the legend once
        for i, model in enumerate(models):
            means = _suite_means(cells, model, protocol, tasks, suites, intervals)
            values, bounds, failed = [], [], []
            for j, t in enumerate(tasks):
                r = cells.get((model, t, protocol))
                values.append(r.primary.value if r is not None and r.primary else math.nan)
                bounds.append(intervals.cell(r))
                if r is not None and not r.ok:
                    failed.append(j)
            values += [means[s][0] if s in means else math.nan for s in suite_names]
            bounds += [means[s][2] if s in means else None for s in suite_names]
            pos = x - 0.4 + bar * (i + 0.5)
            ref = model in references
            ax.bar(pos, np.nan_to_num(values, nan=0.0), bar, label=legend_label(model, references),
                   color=f"C{i}", hatch="//" if ref else None, edgecolor="white" if ref else None, linewidth=0)
            has = [j for j, b in enumerate(bounds) if b is not None and not math.isnan(values[j])]
            if has:
                v = np.array([values[j] for j in has])
                err = np.array([[v[k] - bounds[j][0], bounds[j][1] - v[k]] for k, j in enumerate(has)]).T
                ax.errorbar(pos[has], v, yerr=np.maximum(err, 0), fmt="none", ecolor="black",
                            elinewidth=0.8, capsize=2)
            if failed:
                ax.plot(pos[failed], np.zeros(len(failed)), "x", color="red", markersize=9, label=failed_label)
                failed_label = None
        drawn = [j for j, c in enumerate(chance_row) if not math.isnan(c)]
        if drawn:
            ax.hlines([chance_row[j] for j in drawn], x[drawn] - 0.45, x[drawn] + 0.45, colors="black",
                      linestyles="--", linewidth=1.2, zorder=4, label="chance (constant prediction)")
        ax.set_title(f"{protocol} protocol", fontsize=10, loc="left")
        ax.set_ylabel("test score")
        ax.set_ylim(0, max(1.0, float(np.nanmax([r.primary.value for r in results if r.primary] or [1.0]))) * 1.02)
        ax.grid(axis="y", alpha=0.3)
        ax.axvline(len(tasks) - 0.5, color="grey", linewidth=0.8, linestyle=":")
    axes[-1].set_xticks(x, labels, rotation=30 if crowded else 0, ha="right" if crowded else "center", fontsize=8)
    legend = {}  # one legend for every panel: the same models, plus marks some panels lack
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="outside right upper", fontsize=8, frameon=False)
    fig.suptitle(f"Primary metric per task (error bars: {intervals.cfg.level:.0%} bootstrap interval over "
                 "test clips)", fontsize=10, x=0.01, ha="left")  # left: clear of the legend at the upper right
    return write_atomically(path, lambda fh: fig.savefig(fh, format="png", dpi=110), mode="wb")


def write_report(out_dir: str | Path, plot: bool = True,
                 bootstrap: BootstrapConfig = BootstrapConfig()) -> dict[str, Path]:
    """Rebuild ``results.csv``, ``results.md`` (and ``results.png``) in ``out_dir``, with
    intervals from ``bootstrap``; each file is replaced atomically, so shards of one run
    (``--shard``) may rebuild them at the same time."""
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"results folder {out} does not exist; run "
                                f"'python -m eval_suites run MANIFEST --out {out}' first")
    results = collect_results(out)
    intervals = Intervals(out, bootstrap)
    paths = {"csv": write_csv(results, out / "results.csv", intervals.table(results))}
    md = out / "results.md"
    text = markdown_report(results, intervals)
    write_atomically(md, lambda fh: fh.write(text))
    paths["markdown"] = md
    if plot and results:
        paths["plot"] = plot_results(results, out / "results.png", intervals)
    return paths


def print_summary(results: list[CellResult], out_dir: str | Path) -> int:
    """Print the run's Markdown table and a count of its cells; return the number failed."""
    out = Path(out_dir)
    print((out / "results.md").read_text())
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} cell(s) ok, {failed} failed; "
          f"results in {out}/results.csv, results.md, results.png")
    return failed
