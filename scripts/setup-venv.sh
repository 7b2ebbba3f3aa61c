#!/usr/bin/env bash
# Create a virtual environment with fasthmr_ros and its dependencies.
# Usage: scripts/setup-venv.sh [VENV_DIR] [EXTRAS]   (defaults: .venv test)
# The default "test" extra is everything ("all") plus pytest and ruff, so the README's second
# command (the tests) runs in the environment its first command made.
set -euo pipefail
venv="${1:-.venv}"
extras="${2:-test}"
here="$(cd "$(dirname "$0")/.." && pwd)"

python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q --upgrade pip

# torch and torchvision must be a matching pair built by PyTorch (timm needs torchvision).
# Some machines offer a local CPU-only torch wheel through pip's configuration, which does not
# match PyPI's torchvision; --isolated makes pip take both from PyPI.
if ! python -c "import torch, torchvision" >/dev/null 2>&1; then
  python -m pip install -q --isolated "torch==2.13.0" "torchvision==0.28.0"
fi
python -m pip install -q -e "$here[$extras]"
python -c "import torch, torchvision, fasthmr_ros; print('fasthmr_ros', fasthmr_ros.__version__, \
'with torch', torch.__version__)"
