#!/usr/bin/env bash
# Creates (or updates) the project's environment in .venv: torch pinned to the
# local CPU build, the project in editable mode, and the HEAR 2021 tools
# installed the only way they install on Python 3.11 (see ../shared/RECIPE.md and
# requirements/*.txt). Idempotent: a stamp file records what was installed, and a
# second run with unchanged requirements returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

# System audio tools used by tests and the demo data (real third-party audio).
missing=()
for tool in espeak-ng flite fluidsynth sox; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || missing+=(fluid-soundfont-gm)
# Real recordings for the `study` demo preset (eval_suites/synthetic/recordings.py).
[ -d /usr/share/sonic-pi/samples ] || missing+=(sonic-pi-samples)
[ -d /usr/share/midi/freepats/Tone_000 ] || missing+=(freepats)
if [ ${#missing[@]} -gt 0 ]; then
  pkgs="espeak-ng flite fluidsynth fluid-soundfont-gm sox libsndfile1 sonic-pi-samples freepats"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing system packages: $pkgs"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  else
    echo "[setup] missing system tools: ${missing[*]}." >&2
    echo "[setup] install them with: sudo apt-get install $pkgs" >&2
    exit 1
  fi
fi

stamp="$VENV/.hear-slicer-setup"
want=$(cat setup.cfg requirements/*.txt scripts/setup_env.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
echo "[setup] installing into $VENV (first run takes a few minutes)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=23,<24.1" "setuptools>=77,<81" wheel  # pip 24.1+ rejects pytorch-lightning 1.6.5 metadata
# torch first, then pin exactly the build that got installed (here the local
# 2.13.0+cpu wheel) in every later pip call.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==${TORCH_VERSION:-2.13.0}"
fi
torch_version=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
constraints="$VENV/constraints.txt"
{ echo "torch==$torch_version"; grep -v '^torch==' requirements/constraints.txt; } > "$constraints"
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$constraints")
"${pip[@]}" -e ".[dev]"
"${pip[@]}" -r requirements/hear.txt
"${pip[@]}" --no-deps --ignore-requires-python -r requirements/hear-nodeps.txt
"$VENV/bin/python" - <<'PY'
import importlib
for name in ("torch", "nnAudio", "hearvalidator", "heareval", "pytorch_lightning", "tensorflow"):
    importlib.import_module(name)
import torch
print(f"[setup] ok: torch {torch.__version__}")
PY
echo "$want" > "$stamp"
