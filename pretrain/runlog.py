"""What a run writes besides checkpoints (main process only): run.log, log.csv, loss.png.

- `run.log`: config, git revision, skipped files, checkpoints, errors (also printed).
- `log.csv`: one row per logging step (step, lr, loss, the objective's metrics, clips/s, ...).
- `loss.png`: the loss curve, drawn from log.csv at the end (matplotlib, Agg backend).

Messages may hold file names that are not valid UTF-8 (Python keeps their bytes as lone
surrogates): they are written with those bytes as backslash escapes (`\\udcff`), never raising. A write
that fails (disk full, read-only folder) raises an OSError that names the file.
"""
from __future__ import annotations

import csv
import io
import os
import subprocess
import time
from pathlib import Path

from tqdm import tqdm

__all__ = ["RunLog", "git_revision", "plot_loss_curve", "printable"]


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
        message = printable(message)
        tqdm.write(message)
        _append(self.out / "run.log", f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n")

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
                _append(path, _csv_line(self._fields), mode="w")
        _append(path, _csv_line([values.get(k, "") for k in self._fields]))

    def drop_rows_after(self, step: int) -> None:
        """Remove log.csv rows of steps after `step` (a resumed run logs them again)."""
        path = self.out / "log.csv"
        if not (self.enabled and path.is_file()):
            return
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
        if len(kept) < len(rows):
            tmp = path.with_suffix(".csv.tmp")
            _append(tmp, "".join(_csv_line(r) for r in kept), mode="w")
            os.replace(tmp, path)  # atomic: a kill leaves the old or the new file


def printable(text: str) -> str:
    """`text` with lone surrogates (undecodable bytes of file names) as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _csv_line(values: list) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(values)
    return buf.getvalue()


def _append(path: Path, text: str, mode: str = "a") -> None:
    try:
        with open(path, mode, newline="", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise OSError(e.errno, f"cannot write the run log {path}: {e.strerror}") from e


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
