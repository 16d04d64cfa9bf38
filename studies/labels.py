"""The words a figure shows for the studies' code names (models, groups, tasks).

Tables keep the code names (they are the keys of the committed CSVs); figures are read by
people who never saw the code, so every legend, tick and title goes through :func:`label`.
A name without an entry is shown as it is, underscores turned into spaces.
"""
from __future__ import annotations

__all__ = ["LABELS", "label"]

LABELS: dict[str, str] = {
    # methods (studies.mini_lape.METHODS) and the long runs of studies.learning_curves
    "slicer": "SLICER",
    "byol_a": "BYOL-A",
    "delores_s": "DeLoRes-S",
    "delores_m": "DeLoRes-M",
    "cola": "COLA",
    "slicer_rrc_time_only": "SLICER, time-only crops",
    "slicer_full600": "SLICER trained to completion, 600 steps",
    "slicer_full1500": "SLICER trained to completion, 1,500 steps",
    "slicer_full600_fp32": "SLICER trained to completion, 600 steps, fp32",
    # the recorded study's groups (studies.recorded)
    "slicer_byol_a_crop": "SLICER, BYOL-A's crop",
    "slicer_time_only": "SLICER, time-only crop",
    "slicer_mild_freq": "SLICER, mild frequency zoom",
    "previous_default": "previous default's recipe (600 steps, demo corpus)",
    "shipped_before": "default shipped before the study (SLICER, time-only, 6,000 steps, 1 run)",
    # SLICER's ablations (studies.mini_lape.ABLATIONS)
    "slicer_no_kmix": "SLICER without k-mix",
    "slicer_no_cluster": "SLICER without the cluster loss",
    "slicer_no_entropy": "SLICER without the entropy term",
    "slicer_no_split_bn": "SLICER without split BatchNorm",
    # references (studies.mini_lape.REFERENCES)
    "random_init": "random init (same encoder, untrained)",
    "logmel_stats": "log-mel statistics (mean, std per band)",
    "chance": "chance (best constant prediction)",
    # the study tasks (eval_suites/manifests/study.yaml) and the demo's
    "nsynth_family": "NSynth family",
    "nsynth_pitch": "NSynth pitch",
    "real_sounds": "recorded sounds",
    "real_instruments": "recorded instruments",
    "mean": "mean over tasks",
}
"""Code name -> what a figure shows."""


def label(name: str) -> str:
    """The readable name of ``name`` (a model, group, task or reference)."""
    return LABELS.get(name, name.replace("_", " "))
