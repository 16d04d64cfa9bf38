"""The README's recorded-study numbers are the committed results': every `x [lo, hi]` it quotes
in its recorded-audio section is a row of `studies/results/recorded/test_recorded.csv` (a model's
mean test score) or of `differences_<suite>.csv` (a paired difference), to the third decimal. A
number copied from an older report, or typed by hand, fails here."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "studies" / "results" / "recorded"
TRIPLE = re.compile(r"([+-]?\d+\.\d{3})\s+\[\s*([+-]?\d+\.\d{3}),\s+([+-]?\d+\.\d{3})\s*\]")
"""`x [lo, hi]`, a line break anywhere between its parts (the README wraps its lines)."""


def _key(*values) -> tuple[str, ...]:
    return tuple(f"{float(v):.3f}".replace("-0.000", "0.000") for v in values)


def quoted(text: str) -> list[tuple[str, ...]]:
    return [_key(*m) for m in TRIPLE.findall(text)]


def recorded_section(readme: str) -> str:
    start = readme.index("**On recorded audio")
    end = readme.index("\n**", start + 1)
    return readme[start:end]


def measured(results: Path) -> set[tuple[str, ...]]:
    known = set()
    for path in results.glob("test_*.csv"):
        t = pd.read_csv(path)
        known |= {_key(m, lo, hi) for m, lo, hi in zip(t["mean"], t.ci_low, t.ci_high)}
    for path in results.glob("differences_*.csv"):
        d = pd.read_csv(path)
        known |= {_key(x, lo, hi) for x, lo, hi in zip(d["diff"], d.ci_low, d.ci_high)}
    return known


def test_every_interval_the_readme_quotes_from_the_recorded_study_is_in_its_results():
    section = recorded_section((REPO / "README.md").read_text())
    numbers = quoted(section)
    assert len(numbers) >= 5  # the section quotes the study (the check below is not vacuous)
    missing = [n for n in numbers if n not in measured(RESULTS)]
    assert not missing, f"README numbers not in {RESULTS.relative_to(REPO)}: {missing}"


def test_a_number_not_in_the_results_is_caught(tmp_path):
    pd.DataFrame([dict(model="a", task="mean", mean=0.7481, std=0, count=3, ci_low=0.7302, ci_high=0.7644, runs=1)]
                 ).to_csv(tmp_path / "test_recorded.csv", index=False)
    pd.DataFrame([dict(model="a", task="mean", diff=-0.0004, ci_low=-0.014, ci_high=0.017, excludes_zero=False,
                       reference="r")]).to_csv(tmp_path / "differences_recorded.csv", index=False)
    known = measured(tmp_path)
    text = ("**On recorded audio** 0.748 [0.730, 0.764] and +0.000 [-0.014,\n  +0.017], then 0.749 [0.730, 0.764]"
            "\n**next")
    assert [n in known for n in quoted(recorded_section(text))] == [True, True, False]
