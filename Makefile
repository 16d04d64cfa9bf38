# The two commands of the README, plus helpers. Every target sets up .venv first
# (scripts/setup_env.sh: a few minutes the first time, instant after).
PY := .venv/bin/python

.PHONY: setup demo test test-fast bench clean-venv

setup:
	@bash scripts/setup_env.sh

demo: setup  ## the main job: the offline demo on the default model
	$(PY) -m eval_suites.demo

test: setup  ## the whole test suite (what CI runs)
	$(PY) -m pytest -q

test-fast: setup  ## unit tests only, skipping the end-to-end runs of external tools
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/embed.py

clean-venv:
	rm -rf .venv
