#!/usr/bin/env bash
# doc_links_test.sh — the doc-link checker catches what it must (CTest `docs.links_checker`):
# run on a scratch repository, it passes good links and fails, naming the file and line, on a
# link or mention leaving the repository (../shared, shared/docs) and on a missing file.
# Usage: doc_links_test.sh CHECKER
set -uo pipefail
checker=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/repo/docs" "$tmp/repo/moe" "$tmp/repo/bench" "$tmp/shared/docs"
touch "$tmp/repo/moe/router.h" "$tmp/repo/bench/alltoall_bench.cpp" "$tmp/shared/docs/formats.md"
echo "# target" > "$tmp/repo/docs/target.md"
cat > "$tmp/repo/docs/good.md" <<'EOF'
# good
[target](target.md), [anchor](target.md#section), [up](../docs/target.md), [web](https://example.com/x.md),
[here](#local), `moe/router.h`, docs/target.md, `bench/alltoall_bench`, `moe/router.*`,
`moe/model.{h,cpp}` is templated, and target.md by name.
```
[not a link](inside/a/code/block.md)
```
[ref]: target.md
EOF

fails=0
expect() {  # expect WANT_RC PATTERN LINE_TEXT...: checks the checker on docs/case.md
  local want=$1 pattern=$2
  shift 2
  printf '%s\n' "$@" > "$tmp/repo/docs/case.md"
  local out rc
  out=$("$checker" "$tmp/repo" docs/good.md docs/case.md 2>&1)
  rc=$?
  if [[ $rc -ne $want ]] || ! grep -qE -- "$pattern" <<< "$out"; then
    echo "FAIL: for '$*' expected exit $want and /$pattern/, got exit $rc:" >&2
    echo "$out" >&2
    fails=$((fails + 1))
  fi
}

expect 0 "every link and path resolves" "fine: [t](target.md)"
expect 1 "docs/case.md:1: link leaves the repository" "[formats](../../shared/docs/formats.md)"
expect 1 "docs/case.md:2: refers outside the repository" "ok" "see \`../shared/docs/formats.md\`"
expect 1 "refers outside the repository: shared/docs/x.md" "from shared/docs/x.md"
expect 1 "docs/case.md:1: link to a missing file: \(data.md\)" "[data](data.md)"
expect 1 "link to a missing file: \(missing.md\)" "[r]: missing.md"
expect 1 "mentions a missing file: docs/formats.md" "Formats: \`docs/formats.md\`."
expect 1 "mentions a missing file: moe/nothing.h" "in moe/nothing.h"
expect 1 "mentions a missing file: gone.md" "see gone.md"
rm -f "$tmp/repo/docs/case.md"
out=$("$checker" "$tmp/repo" docs/case.md 2>&1)
if [[ $? -ne 1 ]] || ! grep -q "no such file to check" <<< "$out"; then
  echo "FAIL: a missing FILE argument is not reported: $out" >&2
  fails=$((fails + 1))
fi

if ((fails)); then
  echo "doc_links_test: $fails case(s) failed" >&2
  exit 1
fi
echo "doc_links_test: all cases behave"
