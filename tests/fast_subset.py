"""Parametrisations whose first value runs in ``make test-fast`` and the rest only in ``make test``
(marked ``slow``): for tests repeated per objective, where one objective exercises the code path."""
from __future__ import annotations

import pytest


def first_fast(values) -> list:
    """`values` with every value after the first marked ``slow``."""
    values = list(values)
    return values[:1] + [pytest.param(v, marks=pytest.mark.slow) for v in values[1:]]
