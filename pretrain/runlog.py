"""What a run writes besides checkpoints (main process only): run.log, log.csv, tensorboard/, loss.png.

- `run.log`: config, git revision, skipped files, checkpoints, errors (also printed).
- `log.csv`: one row per logging step (step, lr, loss, the objective's metrics, clips/s, ...).
- `tensorboard/`: the same rows as TensorBoard scalars, one curve per column, written as they
  are logged (`tensorboard --logdir runs/` watches a run live); only when asked for
  (`run.tensorboard`) and the `tensorboard` package is installed. A resumed run appends to
  the same curves: the rows logged after its checkpoint, before a kill, are dropped from
  log.csv and from the curves alike (`drop_rows_after`).
- `loss.png`: the loss curve, drawn from log.csv at the end (matplotlib, Agg backend).

Messages may hold file names that are not valid UTF-8 (Python keeps their bytes as lone
surrogates): they are written with those bytes as backslash escapes (`\\udcff`), never raising. A write
that fails (disk full, read-only folder) raises an OSError that names the file.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import os
import socket
import subprocess
import time
from pathlib import Path

from tqdm import tqdm

__all__ = ["RunLog", "ScalarEvents", "tensorboard_installed", "git_revision", "plot_loss_curve", "printable"]


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
    """Text, CSV and TensorBoard logs in `out`; a no-op on non-main processes (`enabled=False`).

    `tensorboard`: also write every row as TensorBoard scalars into `out/tensorboard`, if the
    package is installed (`tensorboard_dir` is then that folder, else None).
    """

    def __init__(self, out: Path, enabled: bool = True, tensorboard: bool = False):
        self.out, self.enabled = out, enabled
        self._fields: list[str] | None = None
        self.tensorboard_dir = out / "tensorboard" if enabled and tensorboard and tensorboard_installed() else None
        self._events: ScalarEvents | None = None
        self._resumed_at: int | None = None
        if enabled:
            out.mkdir(parents=True, exist_ok=True)

    def text(self, message: str) -> None:
        if not self.enabled:
            return
        message = printable(message)
        tqdm.write(message)
        _append(self.out / "run.log", f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n")

    def row(self, values: dict[str, float]) -> None:
        """One logging step's values; `values["step"]` is the step."""
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
        if self.tensorboard_dir is not None:
            if self._events is None:  # opened on the first row: a resume has said where it resumes by then
                self._events = ScalarEvents(self.tensorboard_dir, purge_after=self._resumed_at)
            self._events.write(int(values["step"]), {k: v for k, v in values.items() if k != "step"})

    def drop_rows_after(self, step: int) -> None:
        """Remove log.csv rows (and TensorBoard points) of steps after `step` (a resumed run logs them again)."""
        if not self.enabled:
            return
        self._resumed_at = step
        path = self.out / "log.csv"
        if not path.is_file():
            return
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
        if len(kept) < len(rows):
            tmp = path.with_suffix(".csv.tmp")
            _append(tmp, "".join(_csv_line(r) for r in kept), mode="w")
            os.replace(tmp, path)  # atomic: a kill leaves the old or the new file

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None


def tensorboard_installed() -> bool:
    """Whether the `tensorboard` package can be imported (it is optional)."""
    return importlib.util.find_spec("tensorboard") is not None


class ScalarEvents:
    """One process's TensorBoard event file in `log_dir`: named scalars per step.

    Records are framed by tensorboard's own `RecordWriter` over a plain file and flushed at
    every `write`, so `tensorboard --logdir` shows them at once (tensorboard's
    `EventFileWriter`, and torch's `SummaryWriter` over it, would import TensorFlow where it
    is installed: seconds and log noise at every start). `purge_after`: a resumed run's
    checkpoint step. The file then starts with a SessionLog START at the next step, on which
    TensorBoard's reader drops the points of that step and later ones from the files before
    it (those a killed run logged after its checkpoint), as `SummaryWriter(purge_step=)` does.
    """

    def __init__(self, log_dir: Path, purge_after: int | None = None):
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = Event, Summary
        log_dir.mkdir(parents=True, exist_ok=True)
        # TensorBoard's file name pattern, the time first to the nanosecond: its reader takes a folder's
        # files in name order, so a resumed run's file comes after the files it continues
        seconds, nanoseconds = divmod(time.time_ns(), 10**9)
        self.path = log_dir / f"events.out.tfevents.{seconds:010d}.{nanoseconds:09d}.{socket.gethostname()}.{os.getpid()}"
        try:
            self._records = RecordWriter(open(self.path, "wb"))
        except OSError as e:
            raise OSError(e.errno, f"cannot write the TensorBoard log {self.path}: {e.strerror}") from e
        self._put(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_after is not None:
            self._put(Event(wall_time=time.time(), step=purge_after + 1,
                            session_log=SessionLog(status=SessionLog.START)))

    def write(self, step: int, scalars: dict[str, float]) -> None:
        values = [self._summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
        self._put(self._event(wall_time=time.time(), step=step, summary=self._summary(value=values)))

    def _put(self, event) -> None:
        try:
            self._records.write(event.SerializeToString())
            self._records.flush()
        except OSError as e:
            raise OSError(e.errno, f"cannot write the TensorBoard log {self.path}: {e.strerror}") from e

    def close(self) -> None:
        self._records.close()


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
        label = "loss (optimised: the objective's weighted total)" if col == "loss" else col
        ax.plot(df["step"], df[col], label=label, lw=1.5 if col == "loss" else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{csv_path.parent.name}: training loss per logged step ({csv_path.name})", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    return png_path
