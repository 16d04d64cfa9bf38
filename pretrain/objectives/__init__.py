"""Registry of pretraining objectives: config `objective.name` -> the class implementing it.

Entries are "module:Class" strings imported on first use, so a method whose module is
missing or broken fails with a clear message only when it is selected.
"""
from __future__ import annotations

import importlib

from .base import NoParams, Objective, ObjectiveOutput

__all__ = ["OBJECTIVES", "objective_class", "Objective", "ObjectiveOutput", "NoParams"]

OBJECTIVES: dict[str, str] = {
    "slicer": "pretrain.objectives.slicer:Slicer",
    "byol_a": "pretrain.objectives.byol_a:ByolA",
    "delores_s": "pretrain.objectives.delores_s:DeLoResS",
    "delores_m": "pretrain.objectives.delores_m:DeLoResM",
    "cola": "pretrain.objectives.cola:Cola",
}


def objective_class(name: str) -> type[Objective]:
    """The Objective subclass registered as `name`."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(sorted(OBJECTIVES))}")
    module_name, class_name = OBJECTIVES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"objective {name!r} is registered but {module_name} cannot be imported: {e}") from e
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise ValueError(f"{OBJECTIVES[name]} is not an Objective subclass; fix pretrain.objectives.OBJECTIVES")
    return cls
