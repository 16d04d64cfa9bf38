"""Time to build the tiny demo tasks, and the cost of a second (no-op) build of the demo data.

    python benchmarks/build_tasks.py

Prints wall seconds of each build of tiny tasks (espeak-ng, fluidsynth) and the ratio of a
second `build_demo(..., "tiny")` (which finds everything built) to the first. These were
wall-clock limits in the tests (20 s and 5 s); timings belong here, where a busy machine
changes a printed figure instead of failing a test.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from eval_suites.synthetic import demo_tasks
from eval_suites.synthetic.demo_data import build_demo


def timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = [
            ("keywords, 36 clips", demo_tasks.build_keyword_task, dict(clips_per_word_per_split=3)),
            ("instruments, 36 clips", demo_tasks.build_instrument_task, dict(clips_per_class_per_split=3)),
            ("events, 12 clips x 4 s", demo_tasks.build_event_task, dict(n_clips_per_split=4)),
        ]
        total = 0.0
        for name, fn, kwargs in cases:
            seconds = timed(fn, root / "tasks", **kwargs)
            total += seconds
            print(f"tiny task {name:24s} {seconds:7.2f} s")
        print(f"tiny tasks, all three             {total:7.2f} s (the old test limit: 20 s)")
        first = timed(build_demo, root / "demo", "tiny", workers=2, progress=False)
        second = timed(build_demo, root / "demo", "tiny", workers=2, progress=False)
        print(f"demo data 'tiny': first build {first:.2f} s, second (no-op) {second:.3f} s, "
              f"ratio {second / first:.4f}")


if __name__ == "__main__":
    main()
