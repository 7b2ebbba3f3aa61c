#!/usr/bin/env bash
# Download into .whl/ the wheels the lent GPU machine lacks, for scripts/gpu-check.sh.
#
# The device machine (nvidia-h200: Python 3.12, torch, timm, onnx, onnxruntime, opencv, scipy,
# tqdm, pyyaml) has no smplx, and nothing can be fetched there. Run this here, in the repository
# root, then name .whl in the run's carry list (.whl/ is git-ignored). smplx is pure Python and
# needs only numpy and torch, which the machine has.
# Usage: scripts/fetch-device-wheels.sh [EXTRA_REQUIREMENT ...]   (default: smplx==0.1.28)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
requirements=("$@")
if [ ${#requirements[@]} -eq 0 ]; then requirements=("smplx==0.1.28"); fi
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl "${requirements[@]}"
ls -l .whl
