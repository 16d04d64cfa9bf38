# The two commands of the README, plus helpers. Every target sets up .venv first
# (scripts/setup_env.sh: a few minutes the first time, instant after).
PY := .venv/bin/python

.PHONY: setup demo test test-fast bench study mini-lape mutation clean-venv

setup:
	@bash scripts/setup_env.sh

demo: setup  ## the main job: the offline demo on the default model
	$(PY) -m eval_suites.demo

test: setup  ## the whole test suite (what CI runs): one worker per core, one test file per worker at a time
	$(PY) -m pytest -q -n auto --dist loadfile --durations=20

test-fast: setup  ## unit tests only, skipping the end-to-end runs of external tools
	$(PY) -m pytest -q -m "not slow" -n auto --dist loadfile

bench: setup
	$(PY) benchmarks/embed.py

mutation: setup  ## mutation testing of the modules that decide results, one at a time (hours on a busy 2-core machine; docs/testing.md)
	nice -n 10 $(PY) scripts/mutation.py

study: setup  ## the README's study: 5 methods x 2 pretraining seeds, 2 references, 5 SLICER ablations on the study preset (many hours on 2 CPU cores; rerun to resume; results in studies/results/study)
	$(PY) -m studies.mini_lape --preset study --ablations --runs runs/study --out studies/results/study

mini-lape: study

clean-venv:
	rm -rf .venv
