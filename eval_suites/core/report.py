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
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from eval_suites.core.results import CellResult, collect_results, write_csv

__all__ = ["larger_is_better", "markdown_report", "plot_results", "write_report", "print_summary"]


def _layout(results: list[CellResult]):
    """(protocols, models, tasks sorted by suite, {task: suite}, {(m, t, p): result})."""
    protocols = sorted({r.protocol for r in results}, key=lambda p: (p != "linear", p))
    models = list(dict.fromkeys(r.model for r in results))
    suites = {r.task: r.suite for r in results}
    tasks = sorted(suites, key=lambda t: (suites[t], t))
    cells = {(r.model, r.task, r.protocol): r for r in results}
    return protocols, models, tasks, suites, cells


def _fmt(r: CellResult | None) -> str:
    if r is None:
        return "–"
    if not r.ok:
        return "FAILED"
    m = r.primary
    if m is None:
        return "–"
    return f"{m.value:.3f} ± {m.std:.3f}" if m.std is not None else f"{m.value:.3f}"


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


def _suite_means(cells, model: str, protocol: str, tasks: list[str], suites: dict
                 ) -> dict[str, tuple[float, bool]]:
    """{suite: (mean of the larger-is-better primary metrics, complete?)}."""
    out = {}
    for suite in dict.fromkeys(suites[t] for t in tasks):
        members = [t for t in tasks if suites[t] == suite]
        vals = [cells[(model, t, protocol)].primary.value for t in members
                if (model, t, protocol) in cells and cells[(model, t, protocol)].primary
                and larger_is_better(cells[(model, t, protocol)].primary.metric)]
        if vals:
            out[suite] = (float(np.mean(vals)), len(vals) == len(members))
    return out


def markdown_report(results: list[CellResult]) -> str:
    """Markdown tables (one per protocol, models x tasks, with per-suite means)."""
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
    for protocol in protocols:
        lines += [f"## Protocol `{protocol}`", ""]
        header = ["model"] + tasks + [f"mean {s}" for s in suite_names]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * len(header)) + "|")
        incomplete = False
        for model in models:
            row = [model] + [_fmt(cells.get((model, t, protocol))) for t in tasks]
            means = _suite_means(cells, model, protocol, tasks, suites)
            for s in suite_names:
                if s in means:
                    v, complete = means[s]
                    row.append(f"{v:.3f}" + ("" if complete else "*"))
                    incomplete |= not complete
                else:
                    row.append("–")
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
            lines.append("`*` mean over the finished tasks only; error-rate tasks are never "
                         "averaged with accuracies.")
            lines.append("")
    return "\n".join(lines)


def plot_results(results: list[CellResult], path: str | Path) -> Path:
    """Grouped bars of the primary metric (tasks x models), one panel per protocol;
    a failed cell is drawn as a red ``x`` at zero. Uses matplotlib's Agg canvas
    directly (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    protocols, models, tasks, suites, cells = _layout(results)
    suite_names = list(dict.fromkeys(suites[t] for t in tasks))
    columns = tasks + [f"mean {s}" for s in suite_names]
    width = max(6.0, 0.6 * len(columns) * max(1, len(models)) ** 0.5 + 2)
    fig = Figure(figsize=(width, 3.2 * max(1, len(protocols))), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(protocols)), 1, squeeze=False)[:, 0]
    bar = 0.8 / max(1, len(models))
    x = np.arange(len(columns))
    for ax, protocol in zip(axes, protocols):
        for i, model in enumerate(models):
            means = _suite_means(cells, model, protocol, tasks, suites)
            values, failed = [], []
            for j, t in enumerate(tasks):
                r = cells.get((model, t, protocol))
                values.append(r.primary.value if r is not None and r.primary else math.nan)
                if r is not None and not r.ok:
                    failed.append(j)
            values += [means[s][0] if s in means else math.nan for s in suite_names]
            pos = x - 0.4 + bar * (i + 0.5)
            ax.bar(pos, np.nan_to_num(values, nan=0.0), bar, label=model, color=f"C{i}")
            if failed:
                ax.plot(pos[failed], np.zeros(len(failed)), "x", color="red", markersize=9)
        ax.set_title(f"protocol: {protocol} (primary metric per task; red x = failed)")
        ax.set_xticks(x, columns, rotation=30, ha="right", fontsize=8)
        ax.axvline(len(tasks) - 0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.legend(fontsize=8, loc="best")
    fig.savefig(path, dpi=110)
    return Path(path)


def write_report(out_dir: str | Path, plot: bool = True) -> dict[str, Path]:
    """Rebuild ``results.csv``, ``results.md`` (and ``results.png``) in ``out_dir``."""
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"results folder {out} does not exist; run "
                                f"'python -m eval_suites run MANIFEST --out {out}' first")
    results = collect_results(out)
    paths = {"csv": write_csv(results, out / "results.csv")}
    md = out / "results.md"
    md.write_text(markdown_report(results))
    paths["markdown"] = md
    if plot and results:
        paths["plot"] = plot_results(results, out / "results.png")
    return paths


def print_summary(results: list[CellResult], out_dir: str | Path) -> int:
    """Print the run's Markdown table and a count of its cells; return the number failed."""
    out = Path(out_dir)
    print((out / "results.md").read_text())
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} cell(s) ok, {failed} failed; "
          f"results in {out}/results.csv, results.md, results.png")
    return failed
