#!/usr/bin/env bash
# The whole GPU check on a lent CUDA machine that has Python 3.12 and a CUDA torch already and no
# internet: install the wheels that travel with the repository, then run benchmarks/gpu.py
# (pretraining throughput, embedding speed and memory, the cuda-marked tests), within 8 minutes.
#
#   bash benchmarks/gpu_check.sh [gpu.py options, e.g. --store /data/prepared]
#
# Beforehand, on any machine with internet, from the repository root (wheels/ is gitignored,
# never commit it; --no-deps because nnAudio declares torch, which must not be downloaded):
#
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
#       -d wheels -r requirements/gpu.txt -r requirements/gpu-tests.txt
#
# requirements/gpu.txt (about 56 MB) is what gpu.py needs; requirements/gpu-tests.txt (about
# 47 MB more) is only for the cuda-marked tests: without it they are reported as not run.
# Environment: PYTHON (default python3), PIP_ARGS (extra pip arguments, e.g. --user).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

"$PY" - <<'EOF'
import sys
if sys.version_info < (3, 9):
    sys.exit(f"error: Python {sys.version.split()[0]} is too old; this project needs >= 3.9 (the wheels are for 3.12)")
try:
    import torch
except ImportError:
    sys.exit("error: torch is not installed; this check expects a machine with a CUDA torch already")
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
EOF

if [ ! -d wheels ]; then
    echo "note: no wheels/ folder; installing nothing (see the pip download command at the top of $0)"
else
    # shellcheck disable=SC2086
    "$PY" -m pip install --quiet --no-index --find-links wheels ${PIP_ARGS:-} -r requirements/gpu.txt
    # shellcheck disable=SC2086
    if ! "$PY" -m pip install --quiet --no-index --find-links wheels ${PIP_ARGS:-} -r requirements/gpu-tests.txt; then
        echo "note: the wheels of requirements/gpu-tests.txt are not all in wheels/; the cuda-marked tests will be reported as not run"
    fi
fi

exec timeout 470 "$PY" benchmarks/gpu.py "$@"
