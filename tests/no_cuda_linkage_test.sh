#!/usr/bin/env bash
# no_cuda_linkage_test.sh — only the CUDA plugin may link the CUDA libraries.
#
#   tests/no_cuda_linkage_test.sh PLUGIN|- EXECUTABLE...
# Every EXECUTABLE (the cmoe binary, every test and bench binary of the build) must have no
# DT_NEEDED entry for libcudart, libcublas, libcublasLt, libnccl or libcuda, so CPU commands
# start without loading them and run where they are missing. PLUGIN (build/lib/libcmoe_cuda.so,
# or - when the build has none) must need libcudart and libcublas, must not need any library of
# cmoe's host side (absl, MPI, oneDNN, protobuf: it is self-contained behind its C ABI) and must
# export exactly one function, cmoe_cuda_plugin_api.
set -euo pipefail
plugin=$1
shift
cuda_re='^(libcudart|libcublas|libcublasLt|libnccl|libcuda)\.so'
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
fail=0
for exe in "$@"; do
  if ! readelf -h "$exe" >/dev/null 2>&1; then
    echo "FAIL: $exe is missing or not an ELF file (build everything first)"
    fail=1
    continue
  fi
  bad=$(needed "$exe" | grep -E "$cuda_re" || true)
  if [[ -n $bad ]]; then
    echo "FAIL: $exe needs $(echo $bad)"
    fail=1
  fi
done
echo "checked $# executables for CUDA libraries in DT_NEEDED"
if [[ $plugin != - ]]; then
  deps=$(needed "$plugin")
  for want in libcudart libcublas; do
    grep -qE "^$want\.so" <<<"$deps" || { echo "FAIL: $plugin does not need $want: $(echo $deps)"; fail=1; }
  done
  host=$(grep -E '^(libabsl|libmpi|libdnnl|libprotobuf|libgomp)' <<<"$deps" || true)
  [[ -z $host ]] || { echo "FAIL: $plugin needs host-side libraries: $(echo $host)"; fail=1; }
  exported=$(nm -D --defined-only "$plugin" | awk '$2 ~ /^[TWDBVRiu]$/ {print $3}' | sort)
  if [[ $exported != cmoe_cuda_plugin_api ]]; then
    echo "FAIL: $plugin must export only cmoe_cuda_plugin_api, exports: $(echo $exported)"
    fail=1
  fi
  echo "plugin $plugin needs: $(echo $deps)"
fi
exit $fail
