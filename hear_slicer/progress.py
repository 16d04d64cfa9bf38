"""Progress that reads well on a terminal and in a log file.

On a terminal (the stream is a TTY) a tqdm bar, redrawn in place. Anywhere else (a log
file, a pipe, a batch job's output) no bar and no carriage return, only whole lines:

- `done(text)`: one line per finished unit of work (an evaluation cell, a task's
  embeddings, a checkpoint) with the count, the elapsed time and an ETA; these lines are
  printed even when the bar is turned off (`--no-progress`, `run.progress=false`);
- `update(n)`: a heartbeat line at most once per `heartbeat_s` (a minute) for long loops
  (training steps, embedding batches, probe epochs), with the count, the rate and an ETA;
  a loop shorter than that prints none;
- `close(text)`: a closing line with the total time, e.g. a task's embeddings.

    progress = Progress(total=len(cells), desc="cells", unit="cell")
    for cell in cells:
        ...
        progress.done(f"{cell}: ok")
    progress.close()

Used by the trainer (`pretrain`), the evaluation runner, embedding and the probes
(`eval_suites`); it lives in `hear_slicer`, the one package all of them may import.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from tqdm import tqdm

__all__ = ["Progress", "duration"]


def duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '2 h 05 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """Counts `unit`s of work towards `total` (None: unknown) and reports them on `stream`
    (default: sys.stderr, read when the object is made, so pytest's capture applies).

    enabled: False hides the bar and the heartbeat lines, never the `done`/`close` lines.
    initial: units finished before this process started (a resumed run): counted, but the
      rate and the ETA use only the units done here.
    leave: keep the terminal bar on screen once closed (False for loops nested in others).
    clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", *, enabled: bool = True, initial: int = 0,
                 leave: bool = True, stream: TextIO | None = None, heartbeat_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._start_n = initial
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _is_tty(self.stream)
        self.heartbeats = enabled and not self.tty
        self.heartbeat_s, self.clock = heartbeat_s, clock
        self._start = self._last_line = clock()
        self.postfix: dict[str, object] = {}
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave, file=self.stream,
                        dynamic_ncols=True, disable=not (enabled and self.tty))

    # ------------------------------------------------------------------ counting
    def update(self, n: int = 1) -> None:
        """`n` more units done; in a log, a heartbeat line if the last line is `heartbeat_s` old."""
        self.n += n
        self.bar.update(n)
        if self.heartbeats and self.clock() - self._last_line >= self.heartbeat_s:
            self._line(f"{self.desc}: {self.status()}")

    def done(self, text: str, n: int = 1) -> None:
        """`n` more units done, and a line saying which: `[desc k/total] text (elapsed, ETA)`."""
        self.n += n
        self.bar.update(n)
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        eta = self.eta()
        timing = duration(self.elapsed()) + (f", ETA {duration(eta)}" if eta is not None and eta > 0 else "")
        self._line(f"[{self.desc} {count}] {text} ({timing})")

    def set_postfix(self, **values: object) -> None:
        """Values shown after the count (the bar's postfix; appended to heartbeat lines)."""
        self.postfix = values
        self.bar.set_postfix(values)

    def set_description(self, desc: str) -> None:
        self.desc = desc
        self.bar.set_description(desc)

    def close(self, text: str | None = None) -> None:
        """Close the bar; with `text`, a last line `desc: text in <elapsed>`."""
        self.bar.close()
        if text is not None:
            self._line(f"{self.desc}: {text} in {duration(self.elapsed())}")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    # ------------------------------------------------------------------ reading
    def elapsed(self) -> float:
        return self.clock() - self._start

    def eta(self) -> float | None:
        """Seconds left at the rate of this process so far; None when unknown."""
        done_here, elapsed = self.n - self._start_n, self.elapsed()
        if self.total is None or done_here <= 0 or elapsed <= 0:
            return None
        return (self.total - self.n) * elapsed / done_here

    def status(self) -> str:
        """'1200/20000 steps (6 %), 3.2 steps/s, ETA 1 h 27 min; loss=4.1'."""
        parts = [f"{self.n}/{self.total} {self.unit}s ({100 * self.n / self.total:.0f} %)"
                 if self.total else f"{self.n} {self.unit}s"]
        elapsed = self.elapsed()
        if elapsed > 0 and self.n > self._start_n:
            rate = (self.n - self._start_n) / elapsed
            parts.append(f"{rate:.3g} {self.unit}s/s" if rate >= 1 else f"{1 / rate:.3g} s/{self.unit}")
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {duration(eta)}")
        text = ", ".join(parts)
        if self.postfix:
            text += "; " + " ".join(f"{k}={v}" for k, v in self.postfix.items())
        return text

    # ------------------------------------------------------------------ writing
    def write(self, text: str) -> None:
        """A line of text that leaves the bar intact."""
        self._line(text)

    def _line(self, text: str) -> None:
        self._last_line = self.clock()
        if self.tty:
            tqdm.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()
