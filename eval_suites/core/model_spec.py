"""What names one HEAR model: its module, checkpoint and ``load_model`` options.

Its own module so that the embedding cache (which keys on it) and the manifest (which
parses it) both import it without importing each other.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ModelSpec", "module_name_problem"]

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class ModelSpec:
    """One HEAR model: ``module.load_model(checkpoint, **options)``."""

    name: str
    module: str
    checkpoint: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


def module_name_problem(module: Any) -> str | None:
    """Why ``module`` is not an absolute module name (dotted identifiers, e.g. ``hear_slicer``),
    or None when it is one. A manifest's ``module`` and ``eval_suites embed MODULE`` are checked
    with it: a relative name (``.foo``) has no package to be relative to, and a name with ``/``
    or ``..`` would also name a folder outside the embeddings folder."""
    if isinstance(module, str) and _MODULE_NAME.fullmatch(module):
        return None
    relative = isinstance(module, str) and module.startswith(".")
    return (f"expected an importable module name such as 'hear_slicer' (dotted identifiers"
            f"{', not relative' if relative else ''}), got {module!r}")
