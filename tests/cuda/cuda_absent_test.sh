#!/usr/bin/env bash
# cuda_absent_test.sh — the cmoe binary runs CPU commands where the CUDA backend cannot load,
# and `cmoe info` says why there is no GPU.
#
#   tests/cuda/cuda_absent_test.sh MODE CMOE SOURCE_DIR PLUGIN_BUILT FAKE_PLUGIN_DIR
# MODE absent: the binary copied to a directory without lib/libcmoe_cuda.so (a build with the
#   CUDA backend left out at run time), then pointed at a plugin whose library is missing.
# MODE hidden: the real build, in a private mount namespace where every directory holding
#   libcudart, libcublas(Lt) or libnccl is covered by an empty tmpfs (a node without the CUDA
#   toolkit). Exits 77 (skipped, saying why) when the build has no plugin or the machine does
#   not allow an unprivileged mount namespace.
set -euo pipefail
mode=$1 cmoe=$2 src=$3 plugin_built=$4 fakes=$5
tok=$src/tests/data/gpt2_subset.tokenizer.json
text=$src/tests/data/tokenizer_corpus.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The CPU commands give the same answers as the build's own binary, and info names the reason.
# $1: the binary to run, $2: an ERE the `cuda:` line of `cmoe info` must match.
check_cpu_commands() {
  local bin=$1 want=$2
  "$bin" version | grep -q '^cmoe ' || fail "$bin version"
  "$bin" tokenizer encode --tokenizer "$tok" --input "$text" > "$work/ids.txt" ||
    fail "$bin tokenizer encode"
  cmp -s "$work/ids.txt" "$work/ids.want" || fail "$bin tokenizer encode: other ids than the build's binary"
  "$bin" info > "$work/info.txt" || fail "$bin info exited non-zero"
  local line
  line=$(grep '^cuda: ' "$work/info.txt") || fail "$bin info printed no cuda: line"
  echo "$line"
  grep -Eq "$want" <<<"$line" || fail "cuda line does not match /$want/"
}
"$cmoe" tokenizer encode --tokenizer "$tok" --input "$text" > "$work/ids.want"

case $mode in
  absent)
    mkdir -p "$work/prefix/bin"
    cp "$cmoe" "$work/prefix/bin/cmoe"
    if [[ $plugin_built == 1 ]]; then
      want="^cuda: not available \\($work/prefix/lib/libcmoe_cuda.so: cannot open shared object file.*\\(set CMOE_CUDA_PLUGIN"
    else
      want='^cuda: not built \(nvcc was not found at configure time\)$'
    fi
    check_cpu_commands "$work/prefix/bin/cmoe" "$want"
    # A plugin that is there but needs a library the loader cannot find: the library is named.
    CMOE_CUDA_PLUGIN=$fakes/libfake_cuda_plugin_missing_dep.so check_cpu_commands "$work/prefix/bin/cmoe" \
      "^cuda: not available \\(.*libfake_cuda_plugin_missing_dep.so: libcmoe_fake_dep.so: cannot open shared object file"
    ;;
  hidden)
    [[ $plugin_built == 1 ]] || { echo "skipped: this build has no CUDA plugin"; exit 77; }
    plugin=$(dirname "$cmoe")/../lib/libcmoe_cuda.so
    # Every directory the loader could find a CUDA library in: its cache and the plugin's RUNPATH.
    dirs=$( { ldconfig -p | sed -nE 's/.*(libcudart|libcublas|libcublasLt|libnccl)\.so.* => (.*)/\2/p'
              readelf -d "$plugin" | sed -nE 's/.*(RUNPATH|RPATH).*\[(.*)\]/\2/p' | tr ':' '\n'
              for l in cudart cublas cublasLt nccl; do ls /usr/local/cuda/lib*/lib$l.so* 2>/dev/null || true; done
            } | while read -r p; do
              [[ -e $p ]] || continue
              [[ -d $p ]] && readlink -f "$p" || dirname "$(readlink -f "$p")"
            done | sort -u)
    [[ -n $dirs ]] || fail "found no directory holding the CUDA libraries, though the plugin was built"
    echo "hiding: $(echo $dirs)"
    if ! unshare --mount --map-root-user true 2>"$work/unshare.err"; then
      echo "skipped: no private mount namespace here ($(head -1 "$work/unshare.err"))"
      exit 77
    fi
    export -f check_cpu_commands fail
    export work tok text
    unshare --mount --map-root-user bash -c '
      set -euo pipefail
      for d in '"$(echo $dirs)"'; do mount -t tmpfs cmoe-hidden "$d"; done
      if ls '"$(echo $dirs)"' | grep -q "\.so"; then echo "FAIL: the CUDA libraries are still visible"; exit 1; fi
      check_cpu_commands "'"$cmoe"'" \
        "^cuda: not available \\(.*libcmoe_cuda.so: lib(cudart|cublas|cublasLt|nccl)\\.so[.0-9]*: cannot open shared object file"
    '
    ;;
  *) fail "unknown mode $mode" ;;
esac
echo "ok"
