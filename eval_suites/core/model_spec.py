"""What names one HEAR model: its module, checkpoint and ``load_model`` options.

Its own module so that the embedding cache (which keys on it) and the manifest (which
parses it) both import it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """One HEAR model: ``module.load_model(checkpoint, **options)``."""

    name: str
    module: str
    checkpoint: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
