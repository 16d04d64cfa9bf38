"""Deterministic split carving for datasets without an official split (or validation set).

Each function takes the items' labels (and optionally groups, e.g. a speaker or a
recording location) and returns the set of item indices that go to the carved split.
The draw is a function of the seed only (numpy ``default_rng``), never of the order in
which the file system lists files: callers sort their items first.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

__all__ = ["stratified_holdout", "per_label_fractions"]


def stratified_holdout(labels: Sequence[str], fraction: float, seed: int,
                       groups: Sequence[str] | None = None) -> set[int]:
    """Indices of about ``fraction`` of the items of every label, chosen at random.

    With ``groups``, whole groups are held out (all items of a group go to the same side),
    drawn per label by the group's majority label, so a group never straddles the split.
    Each label with at least two items (groups) keeps at least one on each side.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"expected 0 < fraction < 1, got {fraction}")
    if groups is not None and len(groups) != len(labels):
        raise ValueError(f"expected one group per item, got {len(groups)} groups for {len(labels)} items")
    rng = np.random.default_rng(seed)
    keys = list(groups) if groups is not None else [str(i) for i in range(len(labels))]
    members: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        members[key].append(i)
    by_label: dict[str, list[str]] = defaultdict(list)
    for key in sorted(members):
        votes = [labels[i] for i in members[key]]
        by_label[max(sorted(set(votes)), key=votes.count)].append(key)
    held: set[int] = set()
    for label in sorted(by_label):
        units = by_label[label]
        n = len(units)
        k = int(round(fraction * n))
        k = min(max(k, 1), n - 1) if n >= 2 else 0
        for j in rng.permutation(n)[:k]:
            held.update(members[units[j]])
    return held


def per_label_fractions(labels: Sequence[str], fractions: Sequence[tuple[str, float]],
                        seed: int) -> list[str]:
    """Assign every item a split name, ``fractions`` (name, share) per label.

    Within each label the items are shuffled (seed) and cut at the cumulative shares;
    with at least as many items as splits, every split gets at least one item.
    Returns the split name of each item, in input order.
    """
    total = sum(p for _, p in fractions)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"expected split shares that sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    out = [""] * len(labels)
    for label in sorted(by_label):
        idx = by_label[label]
        order = [idx[j] for j in rng.permutation(len(idx))]
        n = len(order)
        counts = [int(round(p * n)) for _, p in fractions]
        if n >= len(fractions):
            counts = [max(c, 1) for c in counts]
        # Give any surplus/deficit to the first (largest, usually train) split.
        counts[0] += n - sum(counts)
        pos = 0
        for (name, _), c in zip(fractions, counts):
            for i in order[pos:pos + c]:
                out[i] = name
            pos += c
    return out
