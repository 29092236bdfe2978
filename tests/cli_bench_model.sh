#!/usr/bin/env bash
# `cquant bench MODEL.onnx --input X.npy [--against OTHER.onnx]`: the JSON it prints and its errors.
# Timings are not checked (tests never assert on time), only that they are there and positive.
# usage: cli_bench_model.sh CQUANT REPO_ROOT TMPDIR
set -u
CQ=$1
ROOT=$2
TMP=$3/cli_bench_model
rm -rf "$TMP"
mkdir -p "$TMP"
D=$ROOT/tests/data/cli_onnx
failed=0
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

"$CQ" quantize "$D/cnn.onnx" -o "$TMP/q.onnx" --mode static --calib "$D/cnn_x.npy" >/dev/null \
  2>"$TMP/err" || bad "quantize: $(cat "$TMP/err")"
out=$("$CQ" bench "$TMP/q.onnx" --input "$D/cnn_in.npy" --against "$D/cnn.onnx" --reps 3 \
  --min-ms 1 2>"$TMP/err")
rc=$?
[ $rc -eq 0 ] || bad "bench: exit $rc: $(cat "$TMP/err")"
for key in '"median_ms": ' '"against_median_ms": ' '"speedup": ' '"input_shape": [8, 3, 8, 8]'; do
  case "$out" in *"$key"*) ;; *) bad "bench output lacks $key: $out" ;; esac
done
case "$out" in *'"median_ms": 0,'* | *'"median_ms": -'*) bad "median not positive: $out" ;; esac

# --profile: one entry per node of the quantized graph, in order, with its type and time
out=$("$CQ" bench "$TMP/q.onnx" --input "$D/cnn_in.npy" --profile --reps 1 --min-ms 1 \
  2>"$TMP/err")
rc=$?
[ $rc -eq 0 ] || bad "bench --profile: exit $rc: $(cat "$TMP/err")"
for key in '"profile": {"runs": ' '"nodes_ms": ' '"type": "QuantizedConvReLU2d"' '"ms": '; do
  case "$out" in *"$key"*) ;; *) bad "bench --profile output lacks $key: $out" ;; esac
done
case "$out" in *'"ms": -'*) bad "a node time is negative: $out" ;; esac

# errors: exit status, one line on stderr, nothing on stdout
expect_fail() {
  local want_rc=$1 name=$2
  shift 2
  local out rc lines
  out=$("$CQ" "$@" 2>"$TMP/err")
  rc=$?
  lines=$(wc -l <"$TMP/err")
  [ $rc -eq "$want_rc" ] || bad "$name: exit $rc, want $want_rc"
  [ -z "$out" ] || bad "$name: stdout not empty: $out"
  [ "$lines" -eq 1 ] || bad "$name: $lines lines on stderr: $(cat "$TMP/err")"
}
expect_fail 2 "no --input" bench "$D/cnn.onnx"
expect_fail 2 "bad --reps" bench "$D/cnn.onnx" --input "$D/cnn_in.npy" --reps 0
expect_fail 1 "garbage model" bench "$D/garbage.onnx" --input "$D/cnn_in.npy"
expect_fail 1 "missing input file" bench "$D/cnn.onnx" --input "$TMP/none.npy"
expect_fail 1 "input of the wrong shape" bench "$D/cnn.onnx" --input "$D/mlp_x.npy"
expect_fail 1 "bad --against" bench "$D/cnn.onnx" --input "$D/cnn_in.npy" --against "$D/truncated.onnx"

if [ $failed -ne 0 ]; then
  echo "cli_bench_model: $failed failed" >&2
  exit 1
fi
echo "cli_bench_model: ok"
