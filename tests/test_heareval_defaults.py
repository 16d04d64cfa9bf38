"""studies.heareval_defaults: the choice is made on validation scores, never on test, and
every candidate pins heareval's grid to one point of settings the manifest accepts."""
from __future__ import annotations

import itertools

import pandas as pd

from eval_suites.core.protocols.heareval import HearevalConfig
from studies.heareval_defaults import CANDIDATES, MODELS, markdown


def test_choice_follows_validation_not_test():
    better_valid, better_test = list(CANDIDATES)[:2]
    rows = []
    for cand, model, task in itertools.product((better_valid, better_test), [m.name for m in MODELS], ["a", "b"]):
        valid, test = (0.8, 0.5) if cand == better_valid else (0.6, 0.9)
        rows.append(dict(candidate=cand, model=model, task=task, valid=valid, test=test, status="ok"))
    rows.append(dict(candidate=better_test, model="slicer", task="c", valid=0.99, test=0.99, status="failed"))
    text, chosen = markdown(pd.DataFrame(rows), ["a", "b"])
    assert chosen == better_valid
    assert f"| {better_valid} (chosen) |" in text and "| 0.800 | 0.500 |" in text
    assert "1 cell(s) not ok" in text  # a failed cell is named, not averaged


def test_candidates_are_valid_settings_of_one_grid_point():
    for name, setting in CANDIDATES.items():
        cfg = HearevalConfig(**setting)  # validated as a manifest's would be
        assert cfg.grid_points == 1, name


def test_shipped_small_manifests_carry_the_chosen_candidate():
    """demo.yaml and study.yaml use the candidate marked chosen in the committed table."""
    import re
    from pathlib import Path

    from eval_suites.core.manifest import load_manifest

    root = Path(__file__).resolve().parents[1]
    table = (root / "studies/results/heareval_defaults/table.md").read_text()
    chosen, = re.findall(r"^\| (\S+) \(chosen\) \|", table, flags=re.M)
    for name in ("demo.yaml", "study.yaml"):
        manifest = load_manifest(root / "eval_suites/manifests" / name)
        assert manifest.heareval == HearevalConfig(**CANDIDATES[chosen]), name
