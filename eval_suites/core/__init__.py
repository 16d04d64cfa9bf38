"""The evaluation core: manifest, embedding cache, protocols, runner, results and report.

It reads HEAR task folders (:mod:`eval_suites.hear_format`) and any HEAR 2021 module; it
never imports the task sources that write those folders or the trainer.
"""
