#!/usr/bin/env bash
# Installs dependencies (idempotent) and builds cmoe into build/ (Release; CUDA where nvcc
# exists). Usage: scripts/build.sh [--asan] [extra cmake args...]
#   --asan   build the ASan+UBSan configuration into build-asan/ instead
set -euo pipefail
cd "$(dirname "$0")/.."

dir=build
args=(-DCMAKE_BUILD_TYPE=Release)
if [[ ${1:-} == --asan ]]; then
  shift
  dir=build-asan
  args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMOE_SANITIZE=ON -DCMOE_CUDA=OFF)
fi

bash scripts/install-deps.sh
# nvcc is not on PATH in every shell; CMake finds it through CUDACXX.
if [[ -z ${CUDACXX:-} && -x /usr/local/cuda/bin/nvcc ]] && ! command -v nvcc >/dev/null; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
jobs=$(nproc)
cmake -S . -B "$dir" -G Ninja "${args[@]}" "$@" >/dev/null
ninja -C "$dir" -j "$jobs"
