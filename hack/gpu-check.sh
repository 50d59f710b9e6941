#!/bin/sh
# Run runnerd-gpu-setup's discovery on a machine with a real NVIDIA GPU and check it against what
# nvidia-smi reports (GPUs, device nodes, driver version, the libraries nvidia-smi loads, CUDA).
# Needs only python3 and this repository; prints a PASS/FAIL report (also to $OUT/gpu-check.txt,
# with the CDI spec as $OUT/nvidia.yaml, when $OUT is set). Exit 0 pass, 1 fail, 2 no GPU.
#
#   sh hack/gpu-check.sh
set -eu
repo="$(cd "$(dirname "$0")/.." && pwd)"
PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
if command -v timeout >/dev/null 2>&1; then
  exec timeout 60 python3 -m runnerd.gpu.check "$@"
fi
exec python3 -m runnerd.gpu.check "$@"
