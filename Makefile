# The two commands of the README, plus helpers. Every target sets up .venv first
# (scripts/setup_env.sh: a few minutes the first time, instant after).
PY := .venv/bin/python

.PHONY: setup demo test test-fast bench mutation mini-lape clean-venv

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

mutation: setup  ## mutation testing of the modules that decide results, one at a time (about an hour; docs/testing.md)
	nice -n 10 $(PY) scripts/mutation.py

mini-lape: setup  ## the README's mini-LAPE tables: five methods, ablations, time-only crops (hours on 2 CPU cores)
	$(PY) -m studies.mini_lape --ablations slicer_no_kmix slicer_no_cluster slicer_no_entropy \
	    slicer_rrc_time_only --cache results/embeddings
	$(PY) -m studies.mini_lape --set augment.rrc.frequency=false --tag rrc_time_only \
	    --ablations slicer_queue128 --cache results/embeddings --out results/mini_lape_rrc_time_only

clean-venv:
	rm -rf .venv
