#!/usr/bin/env bash
# `cmoe checkpoint inspect|verify|reshard` through the binary, on a checkpoint a short `cmoe
# train` wrote.
#  - inspect (text, --tensors, --json) reports the manifest's step, counters, layout, tensor
#    count and bytes, which must equal the sum of the tensors' nbytes and fit in the shard file;
#  - verify accepts the fresh checkpoint (by step directory and by checkpoints root);
#  - verify refuses, exit 1, with the message naming what is wrong: a flipped byte (CRC-32C,
#    tensor, file, offset), a truncated shard (the tensor and "truncated"), a deleted
#    manifest.pb, a deleted shard file, and a root whose `latest` names a missing directory;
#  - one changed manifest byte (a counter) is refused by verify, inspect, export, reshard and a
#    resume; an empty or unreadable manifest by inspect; manifest.txt disagreeing, a renamed step
#    directory and a `latest` whose CRC is not its manifest's by verify (issue #15);
#  - a save that fails part-way (file-size limit) leaves no .tmp-step_N;
#  - reshard writes the (1,2,2) layout's two shard files (expert rows split, every weight equal
#    to the source's when read back through `cmoe export`), verify accepts it, a deleted shard
#    of it is refused naming the file; reshard refuses non-parallel keys, a layout whose ep
#    does not divide dp, and an existing destination step.
# Usage: checkpoint_cli_test.sh CMOE MAKE_DATASET CONFIG
set -euo pipefail
cmoe=$1 make_dataset=$2 config=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$make_dataset" "$work/data" 512 200 11
"$cmoe" train --config "$config" --set data.prefix="$work/data" --set train.steps=3 --set checkpoint.interval=3 \
  --set train.eval_interval=3 --run-dir "$work/run" > "$work/train.log"
root="$work/run/checkpoints"
[ "$(head -n1 "$root/latest")" = step_00000003 ] || fail "latest is not step_00000003: $(head -n1 "$root/latest")"
ck="$root/step_00000003"

# inspect: text with --tensors.
"$cmoe" checkpoint inspect "$root" --tensors > "$work/inspect.txt"
grep -q "^format_version 3 | step 3 | tokens_seen 384 | seed 1234$" "$work/inspect.txt" \
  || { cat "$work/inspect.txt"; fail "inspect: wrong header line (tiny: 3 steps x 4 x 32 tokens)"; }
grep -q "^counter data.consumed_samples = 12$" "$work/inspect.txt" || fail "inspect: consumed_samples counter"
grep -Eq "^manifest_crc32c [0-9a-f]{8} \(checked\)$" "$work/inspect.txt" || fail "inspect: manifest_crc32c line"
# latest: the step directory's name, then its manifest's CRC (the one inspect shows).
[ "$(sed -n 2p "$root/latest")" = "manifest_crc32c $(sed -En 's/^manifest_crc32c ([0-9a-f]{8}) .*/\1/p' "$work/inspect.txt")" ] \
  || fail "latest's second line: $(sed -n 2p "$root/latest")"
grep -q "model: vocab 512, d_model 64, 2 layers, 4 heads, ffn_hidden 128, seq_len 32 | moe CARTESIAN" \
  "$work/inspect.txt" || fail "inspect: model summary"
grep -q "^written by pp 1 x dp 1 x ep 1: 1 files (shard_pp000_ep000.bin)$" "$work/inspect.txt" || fail "inspect: layout line"
grep -Eq "^  embed.weight +f32 +\(512, 64\) +rows 0:512 +131072 bytes  shard_pp000_ep000.bin@[0-9]+$" "$work/inspect.txt" \
  || fail "inspect --tensors: embed.weight row"

# inspect --json: the total equals the sum of entries, every tensor fits in tensors.bin, and
# every weight has both AdamW moments.
"$cmoe" checkpoint inspect "$ck" --json > "$work/inspect.json"
/usr/bin/python3 - "$work/inspect.json" "$ck/shard_pp000_ep000.bin" <<'EOF'
import json, math, os, sys
j = json.load(open(sys.argv[1]))
size = os.path.getsize(sys.argv[2])
assert j["format_version"] == 3 and j["step"] == 3 and j["seed"] == 1234, j
assert len(j["manifest_crc32c"]) == 8, j["manifest_crc32c"]
assert j["layout"] == {"pp": 1, "dp": 1, "ep": 1} and j["files"] == ["shard_pp000_ep000.bin"], j["files"]
assert j["num_entries"] == j["num_tensors"], "one rank: one entry per tensor"
assert j["counters"]["data.consumed_samples"] == 12, j["counters"]
assert j["num_tensors"] == len(j["tensors"]) > 0
assert j["total_bytes"] == sum(t["nbytes"] for t in j["tensors"])
for t in j["tensors"]:
    assert t["nbytes"] == 4 * math.prod(t["shape"]) and t["rows"] == [0, t["shape"][0]], t
    assert t["offset"] % 64 == 0 and t["offset"] + t["nbytes"] <= size, t
names = {t["name"] for t in j["tensors"]}
weights = [n for n in names if not n.startswith("optim.")]
for n in weights:
    assert "optim.exp_avg." + n in names and "optim.exp_avg_sq." + n in names, n
assert j["weight_params"] == sum(math.prod(t["shape"]) for t in j["tensors"] if t["name"] in weights)
assert j["model"]["moe"] == {"kind": "CARTESIAN", "interval": 2, "num_experts": 4, "top_k": 2, "shared_expert": True}
print(f"inspect --json: {j['num_tensors']} tensors, {j['total_bytes']} bytes, {j['weight_params']} params")
EOF
n=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["num_tensors"])' "$work/inspect.json")
b=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total_bytes"])' "$work/inspect.json")

# verify OK, through the root and the step directory.
"$cmoe" checkpoint verify "$root" > "$work/ok1.txt"
grep -q "^OK: $n tensors, $b bytes verified" "$work/ok1.txt" || { cat "$work/ok1.txt"; fail "verify (root)"; }
"$cmoe" checkpoint verify "$ck" > "$work/ok2.txt"
grep -q "^OK: $n tensors, $b bytes verified" "$work/ok2.txt" || { cat "$work/ok2.txt"; fail "verify (step dir)"; }

# expect_fail NAME DIR PATTERN...: verify exits 1 and its message matches every pattern.
expect_fail() {
  local name=$1 dir=$2 rc=0
  shift 2
  "$cmoe" checkpoint verify "$dir" > "$work/$name.log" 2>&1 || rc=$?
  [ "$rc" = 1 ] || { cat "$work/$name.log"; fail "$name: verify exited $rc, expected 1"; }
  for p in "$@"; do
    grep -Eq -- "$p" "$work/$name.log" || { cat "$work/$name.log"; fail "$name: message lacks /$p/"; }
  done
  echo "$name: $(cat "$work/$name.log")"
}
fresh() { rm -rf "$work/c"; cp -r "$ck" "$work/c"; }

# A flipped byte inside embed.weight (131072 bytes).
eoff=$(/usr/bin/python3 -c 'import json,sys; print([t for t in json.load(open(sys.argv[1]))["tensors"] if t["name"] == "embed.weight"][0]["offset"])' "$work/inspect.json")
fresh
printf '\xff' | dd of="$work/c/shard_pp000_ep000.bin" bs=1 seek=$((eoff + 1000)) conv=notrunc status=none
expect_fail flipped "$work/c" "c/shard_pp000_ep000.bin tensor embed.weight at offset $eoff: CRC-32C [0-9a-f]{8}, manifest says [0-9a-f]{8}"

# A flipped byte in the last tensor: found there, not earlier.
fresh
last=$(/usr/bin/python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tensors"][-1]; print(t["name"], t["offset"], t["nbytes"])' "$work/inspect.json")
read -r lname loff lbytes <<< "$last"
printf '\x01' | dd of="$work/c/shard_pp000_ep000.bin" bs=1 seek=$((loff + lbytes - 1)) conv=notrunc status=none
expect_fail flipped_last "$work/c" "tensor ${lname//./\\.} at offset $loff: CRC-32C"

# The shard truncated in the middle of the last tensor.
fresh
truncate -s $((loff + lbytes / 2)) "$work/c/shard_pp000_ep000.bin"
expect_fail truncated "$work/c" "tensor ${lname//./\\.}: needs bytes \[$loff, $((loff + lbytes))\) but the file has $((loff + lbytes / 2)) bytes \(truncated\?\)"

# manifest.pb deleted.
fresh
rm "$work/c/manifest.pb"
expect_fail no_manifest "$work/c" "c/manifest.pb: missing"

# manifest.pb damaged (cut short): not parseable.
fresh
truncate -s 10 "$work/c/manifest.pb"
expect_fail bad_manifest "$work/c" "c/manifest.pb: not a valid checkpoint manifest \(10 bytes\)"

# Issue #15 item 1: one changed byte of manifest.pb (the consumed-samples counter 12 -> 16, which
# once resumed on shifted data without a word) is refused by every reader, naming the file.
fresh
/usr/bin/python3 - "$work/c/manifest.pb" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
at = b.index(b"data.consumed_samples") + len("data.consumed_samples")
at = b.index(bytes([0x10, 12]), at)  # Counter.value: tag of field 2 (varint), then 12
b[at + 1] = 16
open(p, "wb").write(b)
EOF
crc_msg="c/manifest.pb: CRC-32C of the manifest is [0-9a-f]{8}, its manifest_crc32c says [0-9a-f]{8} \(the manifest is damaged\)"
expect_fail manifest_counter "$work/c" "$crc_msg"
# expect_refused NAME PATTERN CMD...: CMD exits 1 and its message matches.
expect_refused() {
  local name=$1 pattern=$2 rc=0
  shift 2
  "$@" > "$work/$name.log" 2>&1 || rc=$?
  [ "$rc" = 1 ] || { cat "$work/$name.log"; fail "$name: exited $rc, expected 1"; }
  grep -Eq -- "$pattern" "$work/$name.log" || { cat "$work/$name.log"; fail "$name: message lacks /$pattern/"; }
  echo "$name: $(head -n1 "$work/$name.log")"
}
expect_refused inspect_counter "$crc_msg" "$cmoe" checkpoint inspect "$work/c"
expect_refused export_counter "$crc_msg" "$cmoe" export --checkpoint "$work/c" --out "$work/x.safetensors"
expect_refused reshard_counter "$crc_msg" "$cmoe" checkpoint reshard "$work/c" --out "$work/rsx" --set parallel.dp=2
[ ! -e "$work/x.safetensors" ] || fail "export wrote from a damaged manifest"
rm -rf "$work/run_bad" && cp -r "$work/run" "$work/run_bad" && cp "$work/c/manifest.pb" "$work/run_bad/checkpoints/step_00000003/"
rc=0
"$cmoe" train --config "$config" --set data.prefix="$work/data" --set train.steps=6 --set checkpoint.interval=3 \
  --set train.eval_interval=3 --run-dir "$work/run_bad" > "$work/resume_counter.log" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -Eq "run_bad/checkpoints/step_00000003/manifest.pb: CRC-32C of the manifest" "$work/resume_counter.log" \
  || { cat "$work/resume_counter.log"; fail "resume from a damaged manifest: exit $rc"; }
echo "resume_counter: $(grep -m1 CRC-32C "$work/resume_counter.log")"

# Issue #15 item 3: an empty manifest.pb is an error naming it, never a default model.
fresh
: > "$work/c/manifest.pb"
expect_refused inspect_empty "c/manifest.pb: empty \(0 bytes\)" "$cmoe" checkpoint inspect "$work/c"
expect_fail verify_empty "$work/c" "c/manifest.pb: empty \(0 bytes\)"
fresh
rm "$work/c/manifest.pb" && mkdir "$work/c/manifest.pb"
expect_refused inspect_unreadable "c/manifest.pb: not a regular file" "$cmoe" checkpoint inspect "$work/c"

# manifest.txt edited so that it disagrees with manifest.pb: verify says so.
fresh
sed -i 's/value: 12$/value: 16/' "$work/c/manifest.txt"
expect_fail manifest_txt "$work/c" "c/manifest.txt: disagrees with manifest.pb, which is what loads"

# A step directory whose manifest is of another step (renamed), and a root whose latest names
# its step with another manifest's CRC.
rm -rf "$work/root3" && mkdir -p "$work/root3" && cp -r "$ck" "$work/root3/step_00000009"
expect_fail renamed_step "$work/root3/step_00000009" "the manifest is of step 3 but its directory is step_00000009"
rm -rf "$work/root3/step_00000009" && cp -r "$ck" "$work/root3/step_00000003"
printf 'step_00000003\nmanifest_crc32c 0badc0de\n' > "$work/root3/latest"
expect_fail latest_crc "$work/root3" "root3/latest: names step_00000003 with manifest_crc32c 0badc0de but .*has [0-9a-f]{8}"

# The shard file deleted.
fresh
rm "$work/c/shard_pp000_ep000.bin"
expect_fail no_data "$work/c" "missing checkpoint file .*c/shard_pp000_ep000.bin \(tensor "

# A root whose latest names a directory that is not there.
mkdir "$work/root2"
echo step_00000099 > "$work/root2/latest"
expect_fail dangling_latest "$work/root2" "root2/step_00000099/manifest.pb: missing"

# reshard for (1,2,2): two shard files, expert rows split between them, same weights when exported.
"$cmoe" checkpoint reshard "$root" --out "$work/rs/checkpoints" --set parallel.dp=2 --set parallel.ep=2 > "$work/rs.log" \
  || { cat "$work/rs.log"; fail "reshard"; }
grep -q "for pp 1 x dp 2 x ep 2: .*rs/checkpoints/step_00000003$" "$work/rs.log" || { cat "$work/rs.log"; fail "reshard message"; }
[ "$(cd "$work/rs/checkpoints/step_00000003" && ls shard_*.bin | tr '\n' ' ')" = "shard_pp000_ep000.bin shard_pp000_ep001.bin " ] \
  || fail "reshard files: $(ls "$work/rs/checkpoints/step_00000003")"
"$cmoe" checkpoint verify "$work/rs/checkpoints" > "$work/rs_ok.txt" || { cat "$work/rs_ok.txt"; fail "verify resharded"; }
grep -q "^OK: $n tensors, $b bytes verified" "$work/rs_ok.txt" || { cat "$work/rs_ok.txt"; fail "verify resharded: counts"; }
"$cmoe" checkpoint inspect "$work/rs/checkpoints" --json > "$work/rs.json"
/usr/bin/python3 - "$work/rs.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["layout"] == {"pp": 1, "dp": 2, "ep": 2}, j["layout"]
experts = [t for t in j["tensors"] if t["name"] == "layers.0.moeA.experts.w1"]
assert sorted((t["file"], t["rows"][0], t["rows"][1]) for t in experts) == \
    [("shard_pp000_ep000.bin", 0, 2), ("shard_pp000_ep001.bin", 2, 4)], experts
assert j["num_entries"] > j["num_tensors"]
EOF
"$cmoe" export --checkpoint "$root" --out "$work/a.safetensors" > /dev/null
"$cmoe" export --checkpoint "$work/rs/checkpoints" --out "$work/b.safetensors" > /dev/null
/usr/bin/python3 - "$work/a.safetensors" "$work/b.safetensors" <<'EOF'
import json, struct, sys
def load(p):
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    h.pop("__metadata__", None)
    return {k: raw[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), "resharded weights differ"
EOF
rm -rf "$work/c" && cp -r "$work/rs/checkpoints/step_00000003" "$work/c" && rm "$work/c/shard_pp000_ep001.bin"
expect_fail no_shard "$work/c" "missing checkpoint file .*c/shard_pp000_ep001.bin \(tensor "
rc=0; "$cmoe" checkpoint reshard "$root" --out "$work/rs/checkpoints" --set parallel.dp=2 > "$work/rs2.log" 2>&1 || rc=$?
{ [ "$rc" = 1 ] && grep -q "step_00000003 exists; not overwriting it" "$work/rs2.log"; } || { cat "$work/rs2.log"; fail "reshard over an existing step"; }
rc=0; "$cmoe" checkpoint reshard "$root" --out "$work/rs3" --set train.lr=1 > "$work/rs3.log" 2>&1 || rc=$?
{ [ "$rc" = 2 ] && grep -q "only parallel.pp, parallel.dp and parallel.ep can change" "$work/rs3.log"; } || fail "reshard --set train.lr"
rc=0; "$cmoe" checkpoint reshard "$root" --out "$work/rs4" --set parallel.dp=3 --set parallel.ep=2 > "$work/rs4.log" 2>&1 || rc=$?
{ [ "$rc" = 1 ] && grep -q "ep" "$work/rs4.log"; } || { cat "$work/rs4.log"; fail "reshard with ep not dividing dp"; }
[ -z "$(ls "$work/rs4" 2>/dev/null)" ] || fail "reshard wrote into $work/rs4 for a bad layout: $(ls "$work/rs4")"
echo "reshard: (1,2,2) files written, verified, weights equal; bad requests refused"

# Issue #15 item 6: a save that fails part-way (a file-size limit standing in for a full disk)
# ends the run with the error and leaves no .tmp-step_N directory behind.
rc=0
( ulimit -f 256; trap '' XFSZ; exec "$cmoe" train --config "$config" --set data.prefix="$work/data" --set train.steps=2 \
    --set checkpoint.interval=2 --set train.eval_interval=1000 --run-dir "$work/full" ) > "$work/full.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$work/full.log"; fail "save under a 256 KiB file-size limit: exit $rc, expected 1"; }
grep -q "File too large" "$work/full.log" || { cat "$work/full.log"; fail "failed save: no error message"; }
leftover=$(cd "$work/full/checkpoints" && ls -A)
[ -z "$leftover" ] || fail "failed save left behind: $leftover"
echo "failed save: $(grep -m1 "File too large" "$work/full.log"); nothing left behind"

# Usage errors exit 2.
rc=0; "$cmoe" checkpoint verify > /dev/null 2>&1 || rc=$?; [ "$rc" = 2 ] || fail "verify without DIR exited $rc"
rc=0; "$cmoe" checkpoint frob "$ck" > /dev/null 2>&1 || rc=$?; [ "$rc" = 2 ] || fail "unknown subcommand exited $rc"
echo "checkpoint cli: inspect, verify and reshard OK on $n tensors / $b bytes; 15 kinds of damage refused"
