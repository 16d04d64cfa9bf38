"""LAPE's 11 downstream datasets -> HEAR task folders (one converter per dataset).

``eval_suites.lape.tasks.TASKS`` lists the converters; ``eval_suites.lape.cli`` holds the
``prepare lape`` command. See docs/lape.md for the table of tasks.
"""
from eval_suites.lape.cli import add_prepare_parser, prepare, prepare_manifest

__all__ = ["add_prepare_parser", "prepare", "prepare_manifest"]
