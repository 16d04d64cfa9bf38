"""Speed of the bootstrap intervals (eval_suites.core.intervals) against a plain Python loop.

One cell of M clips, n_boot resamples: accuracy, an event F-measure from per-file counts and
macro mAP over C labels; the loop draws each resample and recomputes the metric on it with
numpy (accuracy, F) or sklearn (mAP). Prints seconds and the loop/vectorised ratio.

    python benchmarks/intervals.py [--clips 5000] [--n-boot 1000] [--labels 10]
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.metrics import average_precision_score

from eval_suites.core.intervals import BootstrapConfig, CellOutputs, FoldOutputs, bootstrap_cell


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=5000)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--labels", type=int, default=10)
    args = ap.parse_args()
    m, b, c = args.clips, args.n_boot, args.labels
    rng = np.random.default_rng(0)
    true = rng.integers(0, c, m)
    scores = rng.random((m, c))
    scores[np.arange(m), true] += rng.random(m)
    targets = np.eye(c, dtype=np.uint8)[true]
    counts = np.stack([rng.integers(0, 4, m), rng.integers(0, 5, m), rng.integers(0, 5, m)], 1)
    ids = np.array([f"c{i}" for i in range(m)])
    scene = CellOutputs((FoldOutputs(ids, targets, scores),))
    events = CellOutputs((FoldOutputs(ids, counts={"event_onset_200ms_fms": counts}),))
    cfg = BootstrapConfig(n_boot=b)
    def draws():  # the same resamples, drawn one at a time as a loop would
        rng = np.random.default_rng(0)
        return (rng.integers(0, m, size=m) for _ in range(b))
    correct = scores.argmax(1) == true

    def loop_acc():
        return [correct[i].mean() for i in draws()]

    def loop_f():
        out = []
        for i in draws():
            tp, s, r = counts[i].sum(0)
            out.append(2 * tp / (s + r))
        return out

    def loop_map():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [average_precision_score(targets[i], scores[i], average="macro") for _, i in zip(range(b // 10), draws())]

    print(f"{m} clips, {b} resamples, {c} labels (best of 3; mAP loop timed on {b // 10} resamples x 10)")
    for name, vec, loop, scale in (
            ("top1_acc", lambda: bootstrap_cell(scene, "top1_acc", cfg, "t"), loop_acc, 1),
            ("event F (counts)", lambda: bootstrap_cell(events, "event_onset_200ms_fms", cfg, "t"), loop_f, 1),
            ("mAP", lambda: bootstrap_cell(scene, "mAP", cfg, "t"), loop_map, 10)):
        tv = timed(vec)
        tl = timed(loop, repeats=1) * scale
        print(f"  {name:18s} vectorised {tv:7.3f} s   loop {tl:7.2f} s   ratio {tl / tv:6.1f}x")


if __name__ == "__main__":
    main()
