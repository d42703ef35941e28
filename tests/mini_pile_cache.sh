#!/usr/bin/env bash
# mini_pile_cache.sh — the embedded mini-Pile for the tests, built once and shared by every test
# and both CTest suites (Release and ASan+UBSan) of a test run.
#
# The cache entry is CACHE_ROOT/<key>, key = SHA-256 of everything the build reads: the build
# scripts (scripts/build-mini-pile.sh, scripts/mini_pile.py), the sources of the code that
# tokenizes and writes the datasets (data/, core/, launch/) and the installed versions of the
# Debian packages the text comes from. The build is deterministic, so an entry equals what a
# fresh build from the same inputs gives; changing any input makes a new key, built from scratch
# into CACHE_ROOT/<key>.partial and renamed into place when complete (older keys are deleted).
# Concurrent callers serialise on CACHE_ROOT/.lock; the first builds, the others reuse.
# Prints the entry's path as its last line of stdout; the build's log goes to stderr.
# Usage: mini_pile_cache.sh CMOE SOURCE_DIR CACHE_ROOT
set -euo pipefail
cmoe=$(realpath "$1") src=$(realpath "$2") root=$3
mkdir -p "$root"
root=$(realpath "$root")
key=$(
  cd "$src"
  {
    find scripts/build-mini-pile.sh scripts/mini_pile.py data core launch -type f \
      \( -name '*.sh' -o -name '*.py' -o -name '*.h' -o -name '*.cpp' -o -name '*.proto' -o -name '*.txt' \) \
      -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    dpkg-query -W bible-kjv fortunes python3.11-doc dict-gcide zstd 2>/dev/null || true
  } | sha256sum | cut -c1-16
)
entry=$root/$key
exec 9> "$root/.lock"
flock 9
if [[ ! -s $entry/train_text_document.idx || ! -s $entry/val_text_document.idx ]]; then
  echo "mini_pile_cache: building $entry" >&2
  rm -rf "$entry.partial"
  CMOE_BIN=$cmoe "$src/scripts/build-mini-pile.sh" "$entry.partial" >&2
  for old in "$root"/*; do
    [[ -d $old && $old != "$entry.partial" ]] && rm -rf "$old"
  done
  mv "$entry.partial" "$entry"
else
  echo "mini_pile_cache: reusing $entry" >&2
fi
echo "$entry"
