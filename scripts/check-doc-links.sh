#!/usr/bin/env bash
# check-doc-links.sh — fails when the project's Markdown points outside the repository or at a
# file that does not exist, so the docs keep standing on their own (CTest `docs.links`).
#
# Checked in docs/*.md and every README*.md (or the FILEs given):
#   1. Markdown links `[text](target)` and reference definitions `[id]: target` (outside code
#      spans and fenced blocks): a relative target must resolve, from the file's folder, to a
#      file or folder inside ROOT. URLs (scheme:) and in-page anchors (#...) are not checked.
#   2. Any mention of the sibling `../shared` folder or of `shared/docs/` (reference material
#      that is not part of the repository) is an error, in code spans too.
#   3. Repository paths mentioned in text or code spans — `docs/cli.md`, `moe/router.h`,
#      `parallelism.md` — must exist: a path starting with a top-level source folder is taken
#      from ROOT; a bare `NAME.md` from the file's folder, ROOT or docs/. A path naming a build
#      product or a family (`bench/alltoall_bench`, `moe/distributed.*`) passes when some file
#      starts with it; templated paths (`{`, `<`) are skipped.
# Usage: scripts/check-doc-links.sh [ROOT [FILE...]]   (ROOT defaults to the repository)
# Exit 0 when everything resolves; 1 with one "FILE:LINE: problem" line per error.
set -uo pipefail

root=$(realpath "${1:-$(dirname "$0")/..}")
shift || true
cd "$root" || exit 2

files=()
if (($#)); then
  files=("$@")
else
  for f in docs/*.md; do [[ -e $f ]] && files+=("$f"); done
  while IFS= read -r f; do files+=("${f#./}"); done < <(
    find . \( -name .git -o -name 'build*' -o -name data-cache -o -name runs -o -name node_modules \) -prune \
      -o -type f -name 'README*.md' -print | sort)
fi

errors=0
report() {
  echo "$1:$2: $3" >&2
  errors=$((errors + 1))
}

# inside_root PATH: true when PATH (absolute, normalised) is ROOT or below it.
inside_root() { [[ $1 == "$root" || $1 == "$root"/* ]]; }

# exists_or_prefix PATH: a file or folder, or the prefix of one (build products, foo.*).
exists_or_prefix() {
  [[ -e $1 ]] && return 0
  local stem=${1%\*}
  compgen -G "${stem}*" > /dev/null
}

# Prints the file with fenced code blocks and inline code spans blanked (line numbers kept).
strip_code() {
  awk '/^[[:space:]]*(```|~~~)/ { fence = !fence; print ""; next }
       fence { print ""; next }
       { gsub(/`[^`]*`/, ""); print }' "$1"
}

top='(?:core|autograd|parallel|moe|data|checkpoint|launch|tests|bench|docs|scripts|configs)'

for f in "${files[@]}"; do
  if [[ ! -f $f ]]; then
    report "$f" 0 "no such file to check"
    continue
  fi
  dir=$(dirname "$f")

  # 2. References to the reference material outside the repository.
  while IFS=: read -r line text; do
    text=${text%[.,;:]}
    report "$f" "$line" "refers outside the repository: $text"
  done < <(grep -noP '(?:\.\./)+shared[^\s`)]*|(?<![\w.-])shared/(?:docs|STYLE)[^\s`)]*' "$f")

  # 1. Markdown links and reference definitions.
  while IFS=: read -r line target; do
    target=${target#*](}
    target=${target%)}
    target=${target%% *}                      # drop a "title"
    [[ -z $target || $target == \#* || $target =~ ^[A-Za-z][A-Za-z0-9+.-]*: ]] && continue
    target=${target%%#*}
    base=$dir
    [[ $target == /* ]] && base=$root          # /path = from the repository root
    resolved=$(realpath -m "$base/$target")
    if ! inside_root "$resolved"; then
      report "$f" "$line" "link leaves the repository: ($target)"
    elif [[ ! -e $resolved ]]; then
      report "$f" "$line" "link to a missing file: ($target)"
    fi
  done < <(strip_code "$f" | grep -noE '\]\([^)]*\)|^ {0,3}\[[^]]+\]: *[^ ]+' |
           sed -E 's/^([0-9]+):\[[^]]+\]: */\1:](/')

  # 3. Repository paths mentioned in text.
  while IFS=: read -r line path; do
    [[ $path == *[\{\<]* ]] && continue
    resolved=$(realpath -m "$root/$path")
    exists_or_prefix "$resolved" || report "$f" "$line" "mentions a missing file: $path"
  done < <(grep -noP "(?<![\w./-])$top/[\w./*{<>-]*[\w*/]" "$f")
  while IFS=: read -r line name; do
    if [[ ! -e $dir/$name && ! -e $root/$name && ! -e $root/docs/$name ]]; then
      report "$f" "$line" "mentions a missing file: $name"
    fi
  done < <(grep -noP '(?<![\w./-])[\w-]+\.md(?![\w])' "$f")
done

if ((errors)); then
  echo "check-doc-links: $errors problem(s) in ${#files[@]} file(s)" >&2
  exit 1
fi
echo "check-doc-links: ${#files[@]} files, every link and path resolves inside the repository"
