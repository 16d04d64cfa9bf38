"""Old entry point, kept as an alias: ``python -m eval_suites.mini_lape`` runs
``python -m studies.mini_lape``.

The study pretrains and evaluates, so it lives above both rooms (``studies/``); this file
only forwards the command line and imports nothing from it (``eval_suites`` never
imports ``pretrain``).
"""
import runpy

if __name__ == "__main__":
    runpy.run_module("studies.mini_lape", run_name="__main__", alter_sys=True)
