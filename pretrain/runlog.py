"""What a run writes besides checkpoints (main process only): run.log, log.csv, loss.png.

- `run.log`: config, git revision, skipped files, checkpoints, errors (also printed).
- `log.csv`: one row per logging step (step, lr, loss, the objective's metrics, clips/s, ...).
- `loss.png`: the loss curve, drawn from log.csv at the end (matplotlib, Agg backend).
"""
from __future__ import annotations

import csv
import subprocess
import time
from pathlib import Path

from tqdm import tqdm

__all__ = ["RunLog", "git_revision", "plot_loss_curve"]


def git_revision() -> str:
    """The code's git revision (with '-dirty' for uncommitted changes), or 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class RunLog:
    """Text and CSV logs in `out`; a no-op on non-main processes (`enabled=False`)."""

    def __init__(self, out: Path, enabled: bool = True):
        self.out, self.enabled = out, enabled
        self._fields: list[str] | None = None
        if enabled:
            out.mkdir(parents=True, exist_ok=True)

    def text(self, message: str) -> None:
        if not self.enabled:
            return
        tqdm.write(message)
        with open(self.out / "run.log", "a") as f:
            f.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n")

    def row(self, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        path = self.out / "log.csv"
        if self._fields is None:
            if path.is_file() and path.stat().st_size:
                with open(path, newline="") as f:
                    self._fields = next(csv.reader(f))
            else:
                self._fields = list(values)
                with open(path, "w", newline="") as f:
                    csv.writer(f).writerow(self._fields)
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, self._fields, extrasaction="ignore").writerow(values)


def plot_loss_curve(csv_path: Path, png_path: Path) -> Path | None:
    """Plot loss (and its parts) against step from log.csv; None when there is nothing to plot."""
    import pandas as pd
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    if not csv_path.is_file():
        return None
    df = pd.read_csv(csv_path)
    if df.empty or "loss" not in df:
        return None
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for col in [c for c in df.columns if c == "loss" or c.startswith("loss_")]:
        ax.plot(df["step"], df[col], label=col, lw=1.5 if col == "loss" else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    return png_path
