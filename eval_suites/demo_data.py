"""Old entry point, kept as an alias: ``python -m eval_suites.demo_data`` runs
``python -m eval_suites.synthetic.demo_data`` (the code lives in :mod:`eval_suites.synthetic`)."""
import runpy

if __name__ == "__main__":
    runpy.run_module("eval_suites.synthetic.demo_data", run_name="__main__", alter_sys=True)
