#!/usr/bin/env bash
# The GPU check of issue 14, as ONE prepared command for the lent device machine.
#
# Runs the product's own `fasthmr bench` (torch engine, CUDA-synchronised stage timings after a
# warm-up; median / p90 / p99; output change vs the eager fp32 run in mm, vertices and joints)
# for the random-weights ViT-H teacher, the MobileNetV3-L student and, when this checkout's
# bench has --merge-plans, the merged teachers; at batches 1 and 8, fp32 / fp16 / bf16, with
# CUDA graphs off and on. Writes gpu-check.json, gpu-check.md and gpu-check.log to the output
# folder ($OUT on the device machine). Every run is attempted even if one fails; the exit
# status is non-zero if any failed or a check of the issue failed.
#
# On the device machine (carry .whl, made by scripts/fetch-device-wheels.sh):
#   bash scripts/gpu-check.sh
# Here, on CPU, with small models (what test/test_gpu_check.py runs):
#   bash scripts/gpu-check.sh --device cpu --teacher small --student mobilenetv3_small_050 \
#     --iterations 2 --warmup 1 --out /tmp/gpu-check
#
# Options (environment variables in brackets):
#   --device cuda|cpu     [FASTHMR_GPU_CHECK_DEVICE]   default cuda
#   --out DIR             [OUT]                        default out/gpu-check
#   --teacher MODEL       [FASTHMR_GPU_CHECK_TEACHER]  default teacher (ViT-H, random weights)
#   --student MODEL       [FASTHMR_GPU_CHECK_STUDENT]  default mobilenetv3_large_100
#   --merge-plans LIST    [FASTHMR_MERGE_PLANS]        default config/merge_plans/*.json
#   --no-merged           no merged-teacher run even if bench has --merge-plans
#   --batches LIST        default 1,8
#   --precisions LIST     default fp32,fp16,bf16
#   --cuda-graphs LIST    default off,on (off first: the speed-up baseline is eager fp32 b1)
#   --warmup N            default 10
#   --iterations N        default 50
set -uo pipefail
cd "$(dirname "$0")/.."

device="${FASTHMR_GPU_CHECK_DEVICE:-cuda}"
out_dir="${OUT:-out/gpu-check}"
teacher="${FASTHMR_GPU_CHECK_TEACHER:-teacher}"
student="${FASTHMR_GPU_CHECK_STUDENT:-mobilenetv3_large_100}"
merge_plans="${FASTHMR_MERGE_PLANS:-}"
merged=1
batches="1,8"
precisions="fp32,fp16,bf16"
graphs="off,on"
warmup=10
iterations=50
python="${PYTHON:-python3}"

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --out) out_dir="$2"; shift 2 ;;
    --teacher) teacher="$2"; shift 2 ;;
    --student) student="$2"; shift 2 ;;
    --merge-plans) merge_plans="$2"; shift 2 ;;
    --no-merged) merged=0; shift ;;
    --batches) batches="$2"; shift 2 ;;
    --precisions) precisions="$2"; shift 2 ;;
    --cuda-graphs) graphs="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --iterations) iterations="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu-check: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

mkdir -p "$out_dir" || exit 2
log="$out_dir/gpu-check.log"
: >"$log"
exec > >(tee -a "$log") 2>&1
runs="$(mktemp -d)"
trap 'rm -rf "$runs"' EXIT
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10

echo "== gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) device=$device out=$out_dir"
# Wheels carried in .whl (smplx is not on the device machine), installed beside the system's.
if compgen -G ".whl/*.whl" >/dev/null; then
  echo "== installing carried wheels: $(ls .whl)"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/fasthmr-site .whl/*.whl || { echo "gpu-check: wheel install failed"; exit 2; }
  export PYTHONPATH="/tmp/fasthmr-site${PYTHONPATH:+:$PYTHONPATH}"
fi
# This checkout's package, not an installed copy.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$python" - "$device" <<'EOF' || exit 2
import importlib.util
import sys

import torch

device = sys.argv[1]
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("gpu-check: --device cuda but torch sees no GPU; use --device cpu here")
    print("gpu", torch.cuda.get_device_name(0))
missing = [m for m in ("smplx", "timm", "cv2", "scipy", "yaml", "tqdm")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu-check: missing Python packages {missing}; for smplx run "
             "scripts/fetch-device-wheels.sh here and carry .whl")
EOF
command -v nvidia-smi >/dev/null && [ "${device#cuda}" != "$device" ] && \
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv

# Stages whose parts the device machine may lack are left out rather than failing the run.
extra=(--detector none)
"$python" -c "import rosbags" 2>/dev/null || {
  echo "note: rosbags missing: the serialize stage is left out"; extra+=(--no-serialize); }

failed=()
bench() {
  local name="$1"; shift
  echo "== bench $name: $*"
  if ! "$python" -m fasthmr_ros bench --device "$device" --engines torch \
      --batches "$batches" --precisions "$precisions" --cuda-graphs "$graphs" \
      --warmup "$warmup" --iterations "$iterations" "${extra[@]}" \
      --json "$runs/$name.json" --markdown "$runs/$name.md" "$@"; then
    echo "gpu-check: bench $name FAILED"
    failed+=("$name")
  fi
}

bench teacher --models "$teacher"
bench student --models "$student"
if [ "$merged" = 0 ]; then
  echo "note: --no-merged: no merged-teacher run"
elif "$python" -m fasthmr_ros bench --help 2>/dev/null | grep -q -- "--merge-plans"; then
  if [ -z "$merge_plans" ]; then
    merge_plans="$(ls config/merge_plans/*.json 2>/dev/null | paste -sd, -)"
  fi
  if [ -n "$merge_plans" ]; then
    bench merged --models "$teacher" --merge-plans "none,$merge_plans"
  else
    echo "note: bench has --merge-plans but no plan files were found: no merged run"
  fi
else
  echo "note: this checkout's bench has no --merge-plans: no merged-teacher run"
fi

echo "== report"
report_args=(--runs "$runs" --out "$out_dir" --order teacher,student,merged)
for name in "${failed[@]}"; do report_args+=(--failed "$name"); done
"$python" scripts/gpu_check_report.py "${report_args[@]}"
status=$?
echo "== done (exit $status): $out_dir/gpu-check.md, gpu-check.json, gpu-check.log"
exit $status
