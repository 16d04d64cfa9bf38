"""Studies that use several rooms: pretrain a model (:mod:`pretrain`), then evaluate it
(:mod:`eval_suites`). Nothing under ``hear_slicer``, ``pretrain`` or ``eval_suites``
imports this package."""
