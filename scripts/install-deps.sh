#!/usr/bin/env bash
# Installs cmoe's Debian 12 build and test dependencies, and the packages the mini-Pile is
# drawn from: everything the main job and the test suite need, so neither installs anything
# later. Idempotent: packages already present are skipped, and apt-get runs only when
# something is missing.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config git
  libopenmpi-dev openmpi-bin
  libprotobuf-dev protobuf-compiler
  libabsl-dev
  libgtest-dev libgmock-dev googletest
  libbenchmark-dev
  libdnnl-dev ocl-icd-opencl-dev opencl-c-headers opencl-clhpp-headers
  libzstd-dev
  zlib1g-dev  # PNG images in TensorBoard event files (moe/train/png.cpp)
  libicu-dev
  python3 python3-torch python3-numpy  # the PyTorch cross-check test and bench/torch_peer.py
  python3-protobuf  # the TensorBoard event-file test decodes the events with the .proto files
  python3-matplotlib  # scripts/study.py plots
  libopenblas0-openmp  # an optimised BLAS for PyTorch's f32 matmuls (Debian's default is the reference BLAS)
  # The embedded mini-Pile's text (scripts/build-mini-pile.sh, the main job and e2e.mini_pile):
  bible-kjv fortunes python3.11-doc dict-gcide zstd
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
