"""Range checks of config values, declared next to the fields they check.

A config dataclass lists its checks in a class attribute, one `Check` per field:

    @dataclass
    class MixupConfig:
        memory: int = 2048
        alpha: float = 0.4
        CHECKS: ClassVar[dict[str, Check]] = {"memory": at_least(1), "alpha": between(0, 1)}

`pretrain.config` runs them on every value that enters (YAML, `--set`, a checkpoint's
config), after the type check and before any work starts; a failure is one line naming the
key, the value and what is allowed (`augment.mixup.alpha must be in [0, 1], got 3.0`). Every
float must also be finite. Checks that relate several keys are `Relation`s, listed in
`pretrain.config.RELATIONS`. Adding a key: give it a check in its dataclass's `CHECKS`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Check", "Relation", "at_least", "above", "between", "each", "ordered_pair", "matches", "non_empty",
           "field_errors"]


@dataclass(frozen=True)
class Check:
    """A test of one value and the words that say what it allows (after "must be")."""

    allowed: str
    test: Callable[[Any], bool]

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False


@dataclass(frozen=True)
class Relation:
    """A test of several keys together; `test` receives the whole config."""

    keys: tuple[str, ...]
    allowed: str
    test: Callable[[Any], bool]


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def at_least(low: float) -> Check:
    return Check(f">= {_num(low)}", lambda v: v >= low)


def above(low: float) -> Check:
    return Check(f"> {_num(low)}", lambda v: v > low)


def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    """low <= v <= high; `*_open` excludes that end."""
    text = f"in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    return Check(text, lambda v: (v > low if low_open else v >= low) and (v < high if high_open else v <= high))


def each(check: Check) -> Check:
    return Check(f"a list of values {check.allowed}", lambda v: all(check(x) for x in v))


def ordered_pair(check: Check) -> Check:
    """(low, high) with low <= high, both passing `check`."""
    return Check(f"a pair [low, high] with low <= high, both {check.allowed}",
                 lambda v: len(v) == 2 and check(v[0]) and check(v[1]) and v[0] <= v[1])


def matches(pattern: str, allowed: str) -> Check:
    return Check(allowed, lambda v: re.fullmatch(pattern, v) is not None)


def non_empty(what: str = "non-empty") -> Check:
    return Check(what, lambda v: len(v) > 0)


def field_errors(cls: type, values: dict[str, Any], prefix: str,
                 extra: dict[str, Check] | None = None) -> list[str]:
    """Messages for the values of `cls`'s fields (already type-checked) that fail a check."""
    checks = {**getattr(cls, "CHECKS", {}), **(extra or {})}
    errors = []
    for name, value in values.items():
        key = f"{prefix}.{name}".lstrip(".")
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(f"{key} must be a finite number, got {value!r}")
        elif isinstance(value, (list, tuple)) and any(isinstance(v, float) and not math.isfinite(v) for v in value):
            errors.append(f"{key} must hold finite numbers, got {value!r}")
        elif name in checks and not checks[name](value):
            errors.append(f"{key} must be {checks[name].allowed}, got {value!r}")
    return errors
