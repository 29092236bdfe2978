#!/usr/bin/env bash
# `cquant demo --json` on the shipped Fashion-MNIST subset and the committed weights: every model
# has every row, the numbers are sane, every int8 row is within 0.5 accuracy point of float and QAT
# within 0.2; then bad inputs fail with exit 1 or 2 and one line on stderr.
# Runs a reduced workload (--quick: 3 latency repetitions) on all 2,000 test images.
# usage: cli_demo.sh CQUANT REPO_ROOT TMPDIR
set -u
CQ=$1
ROOT=$2
TMP=$3/cli_demo
mkdir -p "$TMP"
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# ---- the JSON of a run -------------------------------------------------------------------------

out=$("$CQ" demo --json --quick --data "$ROOT/data/fashion-mnist" --models "$ROOT/models" \
  2>"$TMP/err")
rc=$?
if [ $rc -ne 0 ]; then
  bad "demo --json: exit $rc: $(cat "$TMP/err")"
elif [ -s "$TMP/err" ]; then
  bad "demo --json wrote to stderr (not a terminal): $(cat "$TMP/err")"
else
  ok
fi
echo "$out" >"$TMP/demo.json"

case "$out" in
  '{"observer_example": {"matches_seed": true,'*) ok ;;
  *) bad "observer example missing or not matching the seed: ${out:0:200}" ;;
esac
case "$out" in
  *'"test_images": 2000, "calibration_images": 1000, "qat_images": 4000, "qat_steps": 100'*) ok ;;
  *) bad "workload fields missing: ${out:0:400}" ;;
esac

variants="float dynamic static_minmax_per_tensor static_minmax_per_channel static_histogram_per_tensor static_histogram_per_channel qat"
for model in cnn lstm; do
  # The model's rows: from "MODEL": {"summary": ... up to the closing bracket of "rows".
  rows=$(printf '%s' "$out" | grep -o "\"$model\": {\"summary\": [^]]*]")
  if [ -z "$rows" ]; then
    bad "$model: no rows"
    continue
  fi
  # One line per row: variant accuracy size latency1 latency16
  table=$(printf '%s' "$rows" | grep -o '{"variant": [^}]*}[^}]*}[^}]*}' | sed -E \
    's/.*"variant": "([^"]*)".*"accuracy": ([^,]*), "size_bytes": ([0-9]*), "latency_ms": \{"batch1": ([^,]*), "batch16": ([^}]*)\}.*/\1 \2 \3 \4 \5/')
  got=$(printf '%s\n' "$table" | awk '{print $1}' | tr '\n' ' ')
  if [ "$got" = "$variants " ]; then ok; else bad "$model: rows '$got', expected '$variants '"; fi
  # Sanity and the accuracy bars, in awk (floating point).
  verdict=$(printf '%s\n' "$table" | awk -v model="$model" '
    $1 == "float" { fa = $2; fsize = $3 }
    { acc[$1] = $2; size[$1] = $3
      if (!($2 > 0.5 && $2 <= 1)) print model " " $1 ": accuracy " $2 " not in (0.5, 1]"
      if (!($3 > 1000)) print model " " $1 ": size " $3 " bytes"
      if (!($4 > 0 && $5 > 0)) print model " " $1 ": latency " $4 " / " $5 " ms" }
    END {
      for (v in acc) {
        if (v == "float") continue
        bar = (v == "qat") ? 0.002 : 0.005
        if (acc[v] < fa - bar - 1e-9) print model " " v ": accuracy " acc[v] " more than " bar * 100 " point below float " fa
        if (!(size[v] < fsize)) print model " " v ": " size[v] " bytes, not smaller than float " fsize
      }
    }')
  if [ -z "$verdict" ]; then ok; else bad "$verdict"; fi
done

# ---- the table -----------------------------------------------------------------------------------

table=$("$CQ" demo --quick --model cnn --qat-steps 1 --reps 1 --test-images 100 \
  --data "$ROOT/data/fashion-mnist" --models "$ROOT/models" 2>"$TMP/err")
rc=$?
if [ $rc -eq 0 ]; then ok; else bad "demo (table): exit $rc: $(cat "$TMP/err")"; fi
for want in "matches the seed" "CNN: (Conv-BN-ReLU-MaxPool) x2" "static histogram per-channel" \
  "1 thread"; do
  case "$table" in
    *"$want"*) ok ;;
    *) bad "table lacks '$want'" ;;
  esac
done
case "$table" in
  *"LSTM row classifier"*) bad "--model cnn printed the LSTM" ;;
  *) ok ;;
esac

# ---- bad inputs ----------------------------------------------------------------------------------

# expect_fail NAME RC SUBSTRING ARGS...: exit RC, nothing on stdout after the observer example,
# exactly one stderr line containing SUBSTRING
expect_fail() {
  local name=$1 want_rc=$2 want_msg=$3
  shift 3
  "$CQ" demo --json "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  local lines
  lines=$(wc -l <"$TMP/err")
  if [ $rc -ne "$want_rc" ]; then
    bad "$name: exit $rc, expected $want_rc: $(cat "$TMP/err")"
  elif [ -s "$TMP/out" ]; then
    bad "$name: wrote to stdout: $(head -c 200 "$TMP/out")"
  elif [ "$lines" -ne 1 ]; then
    bad "$name: $lines lines on stderr: $(cat "$TMP/err")"
  elif ! grep -q -- "$want_msg" "$TMP/err"; then
    bad "$name: stderr lacks '$want_msg': $(cat "$TMP/err")"
  else
    ok
  fi
}

expect_fail "unknown option" 2 "unknown argument '--bogus'" --bogus 1
expect_fail "threads 0" 2 "--threads must be an integer" --threads 0
expect_fail "model name" 2 "--model must be cnn or lstm" --model resnet
expect_fail "missing value" 2 "--reps needs a value" --reps
expect_fail "missing data" 1 "$TMP/nowhere/t10k-images-idx3-ubyte.gz" --data "$TMP/nowhere"
expect_fail "missing weights" 1 "$TMP/nowhere/demo_cnn.safetensors" \
  --data "$ROOT/data/fashion-mnist" --models "$TMP/nowhere" --qat-steps 1 --reps 1

# Crafted IDX files (plain, uncompressed: the reader takes both).
byte() { printf "\\x$(printf %02x "$1")"; } # one byte of value 0..255
idx_images() { # N: uint8 [N, 28, 28] images of zeros
  printf '\x00\x00\x08\x03\x00\x00\x00'
  byte "$1"
  printf '\x00\x00\x00\x1c\x00\x00\x00\x1c'
  head -c $(($1 * 784)) /dev/zero
}
idx_labels() { # LABEL...: uint8 [N] labels
  printf '\x00\x00\x08\x01\x00\x00\x00'
  byte $#
  for l in "$@"; do byte "$l"; done
}
mkdir -p "$TMP/badlabel" "$TMP/count" "$TMP/shape"
idx_images 20 >"$TMP/badlabel/t10k-images-idx3-ubyte.gz"
idx_labels 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 12 >"$TMP/badlabel/t10k-labels-idx1-ubyte.gz"
expect_fail "label out of range" 1 "label 12 of image 19 is not a class 0..9" \
  --data "$TMP/badlabel"
idx_images 20 >"$TMP/count/t10k-images-idx3-ubyte.gz"
idx_labels 1 2 3 >"$TMP/count/t10k-labels-idx1-ubyte.gz"
expect_fail "label count" 1 "expected uint8 labels \[20\] to match the images" --data "$TMP/count"
printf '\x00\x00\x08\x02\x00\x00\x00\x04\x00\x00\x00\x04' >"$TMP/shape/t10k-images-idx3-ubyte.gz"
head -c 16 /dev/zero >>"$TMP/shape/t10k-images-idx3-ubyte.gz"
idx_labels 1 2 3 4 >"$TMP/shape/t10k-labels-idx1-ubyte.gz"
expect_fail "image shape" 1 "expected uint8 images \[N, 28, 28\], found uint8 \[4, 4\]" \
  --data "$TMP/shape"
idx_images 8 >"$TMP/shape/t10k-images-idx3-ubyte.gz"
idx_labels 1 2 3 4 5 6 7 8 >"$TMP/shape/t10k-labels-idx1-ubyte.gz"
expect_fail "too few test images" 1 "8 test images, the batch-16 latency needs 16" \
  --data "$TMP/shape"

echo "cli_demo: $passed checks passed, $failed failed"
[ $failed -eq 0 ]
