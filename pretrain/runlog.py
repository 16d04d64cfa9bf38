"""What a run writes besides checkpoints (main process only): run.log, log.csv, tensorboard/, loss.png.

- `run.log`: config, git revision, skipped files, checkpoints, errors (also printed).
- `log.csv`: one row per logging step (step, lr, loss, the objective's metrics, clips/s, ...).
- `tensorboard/`: the same rows as TensorBoard scalars, one curve per column, written as they
  are logged (`tensorboard --logdir runs/` watches a run live); only when asked for
  (`run.tensorboard`) and the `tensorboard` package is installed. Every start of a run
  (`open_tensorboard`) writes one new event file holding log.csv's rows so far (after a
  resume has dropped the rows a killed run logged past its checkpoint) and then deletes the
  run's earlier event files: the folder always holds each logged step once, with log.csv's
  value, in every reader (TensorBoard's Python `EventAccumulator` / `--load_fast=false`, its
  Rust data server), whatever sequence of kills, resumes and `run.tensorboard` on or off came
  before; no reader's purge of orphaned steps is relied on (the new file still starts with a
  SessionLog START at step 1, for a reader watching while the old files are deleted). With
  `run.tensorboard=false` the run's existing event files are rewritten the same way (up to
  the resume point) and no live rows are added.
- `loss.png`: the loss curve, drawn from log.csv at the end (matplotlib, Agg backend).

Every file goes through the run's record (`hear_slicer.written`): an existing file is
appended to or replaced only when the record proves the run wrote it.

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

from hear_slicer.written import WrittenFiles

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
    package is installed (`tensorboard_dir` is then that folder, else None), from
    `open_tensorboard` on. `written`: the run's record (default: a new one for `out`).
    """

    def __init__(self, out: Path, enabled: bool = True, tensorboard: bool = False,
                 written: WrittenFiles | None = None):
        self.out, self.enabled = out, enabled
        self.written = written or WrittenFiles(out, "the run")
        self._fields: list[str] | None = None
        self.tensorboard_dir = out / "tensorboard" if enabled and tensorboard and tensorboard_installed() else None
        self._events: ScalarEvents | None = None
        if enabled:
            out.mkdir(parents=True, exist_ok=True)

    def text(self, message: str) -> None:
        if not self.enabled:
            return
        message = printable(message)
        tqdm.write(message)
        self.written.append(self.out / "run.log", f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n".encode())

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
                self.written.append(path, _csv_line(self._fields).encode())
        self.written.append(path, _csv_line([values.get(k, "") for k in self._fields]).encode())
        if self._events is not None:
            self._events.write(int(values["step"]), {k: v for k, v in values.items() if k != "step"})

    def rows(self) -> list[dict[str, str]]:
        """log.csv's rows so far (empty when there is none)."""
        path = self.out / "log.csv"
        if not path.is_file():
            return []
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def drop_rows_after(self, step: int) -> None:
        """Remove log.csv rows of steps after `step` (a resumed run logs them again; `open_tensorboard` then
        writes the curves from what is left)."""
        if not self.enabled:
            return
        path = self.out / "log.csv"
        if not path.is_file():
            return
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
        if len(kept) < len(rows):  # atomic: a kill leaves the old or the new file, both recorded
            self.written.write(path, "".join(_csv_line(r) for r in kept).encode())

    def open_tensorboard(self) -> list[str]:
        """Make `tensorboard/` hold log.csv's rows once each, in one new event file, and (with
        `run.tensorboard`) keep it open for the rows to come; the run's older event files are
        deleted after the new one is written. Returns lines for run.log."""
        if not self.enabled or not tensorboard_installed():
            return []
        folder = self.out / "tensorboard"
        ours = set(self.written.recorded())
        present = sorted(p for p in folder.glob("events.out.tfevents.*") if p.is_file()) if folder.is_dir() else []
        old = [p for p in present if self.written.name(p) in ours]
        if self.tensorboard_dir is None and not old:
            return []
        events = ScalarEvents(folder, self.written, purge_earlier=bool(present))
        for row in self.rows():
            if row.get("step", "").isdigit():
                events.write(int(row["step"]), {k: float(v) for k, v in row.items() if k != "step" and v not in ("", None)})
        self.written.remove(old, f"replace the run's TensorBoard files in {folder}")
        notes = [f"tensorboard: {len(old)} earlier event file(s) rewritten as {events.path.name} from log.csv "
                 "(each logged step once)"] if old else []
        left = [p.name for p in present if p not in old]
        if left:
            notes.append(f"tensorboard: left {', '.join(left)} in {folder}: not written by this run (its record); "
                         "TensorBoard will show it with this run's curves")
        if self.tensorboard_dir is None:
            events.close()
        else:
            self._events = events
        return notes

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None


def tensorboard_installed() -> bool:
    """Whether the `tensorboard` package can be imported (it is optional)."""
    return importlib.util.find_spec("tensorboard") is not None


class ScalarEvents:
    """One TensorBoard event file in `log_dir`: named scalars per step, written through the run's record.

    Records are framed by tensorboard's own `RecordWriter` (into a buffer) and appended to
    the file at every `write`, so `tensorboard --logdir` shows them at once (tensorboard's
    `EventFileWriter`, and torch's `SummaryWriter` over it, would import TensorFlow where it
    is installed: seconds and log noise at every start). `purge_earlier`: the file starts with
    a SessionLog START at step 1, on which TensorBoard's Python reader drops every point of
    the files before it (used while those are being replaced by this one).
    """

    def __init__(self, log_dir: Path, written: WrittenFiles, purge_earlier: bool = False):
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary, self.written = Event, Summary, written
        self._buffer = io.BytesIO()
        self._records = RecordWriter(self._buffer)
        # TensorBoard's file name pattern, the time first to the nanosecond: its reader takes a folder's
        # files in name order, so this file comes after the ones it replaces
        seconds, nanoseconds = divmod(time.time_ns(), 10**9)
        self.path = log_dir / f"events.out.tfevents.{seconds:010d}.{nanoseconds:09d}.{socket.gethostname()}.{os.getpid()}"
        self._put(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_earlier:
            self._put(Event(wall_time=time.time(), step=1, session_log=SessionLog(status=SessionLog.START)))

    def write(self, step: int, scalars: dict[str, float]) -> None:
        values = [self._summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
        self._put(self._event(wall_time=time.time(), step=step, summary=self._summary(value=values)))

    def _put(self, event) -> None:
        self._records.write(event.SerializeToString())
        data = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        try:
            self.written.append(self.path, data)
        except OSError as e:
            raise OSError(e.errno, f"cannot write the TensorBoard log {self.path}: {e.strerror}") from e

    def close(self) -> None:
        pass  # every record is on disk once `write` returns


def printable(text: str) -> str:
    """`text` with lone surrogates (undecodable bytes of file names) as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _csv_line(values: list) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(values)
    return buf.getvalue()


def plot_loss_curve(csv_path: Path, png_path: Path, write=None) -> Path | None:
    """Plot loss (and its parts) against step from log.csv; None when there is nothing to plot.

    `write(path, bytes)` writes the PNG (the run's record); default: a plain write."""
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
    buf = io.BytesIO()
    fig.savefig(buf, dpi=120, format="png")
    if write is not None:
        write(png_path, buf.getvalue())
    else:
        png_path.write_bytes(buf.getvalue())
    return png_path
