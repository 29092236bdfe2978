#!/usr/bin/env bash
# The ONNX commands: quantize (static / dynamic / qat, --report), run, eval, compare, info, and
# their bad-input table. Models and data come from tools/golden/gen_cli_onnx.py (PyTorch 1.13,
# torch.onnx.export opset 13); expected outputs and accuracies were computed by PyTorch on them.
# usage: cli_onnx.sh CQUANT REPO_ROOT TMPDIR
set -u
CQ=$1
ROOT=$2
TMP=$3/cli_onnx
rm -rf "$TMP"
mkdir -p "$TMP/out"
D=$ROOT/tests/data/cli_onnx
O=$TMP/out
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# expect_ok NAME ARGS... ; then the substrings to find in stdout are in WANT (array)
expect_ok() {
  local name=$1
  shift
  local out rc
  out=$("$CQ" "$@" 2>"$TMP/err")
  rc=$?
  if [ $rc -ne 0 ]; then bad "$name: exit $rc: $(cat "$TMP/err")"; return; fi
  if [ -s "$TMP/err" ]; then bad "$name: stderr not empty (not a terminal): $(cat "$TMP/err")"; return; fi
  for want in "${WANT[@]}"; do
    case "$out" in
      *"$want"*) ok ;;
      *) bad "$name: output lacks '$want': $(printf '%s' "$out" | head -c 800)" ;;
    esac
  done
}

# The float32 values of a .npy file, one per line (little-endian v1 header).
npy_values() {
  local hlen
  hlen=$(od -An -j 8 -N 2 -t u2 "$1" | tr -d ' ')
  od -An -v -j $((10 + hlen)) -t f4 "$1" | tr -s ' ' '\n' | grep -v '^$'
}

# max_abs_diff A.npy B.npy
max_abs_diff() {
  paste <(npy_values "$1") <(npy_values "$2") |
    awk 'BEGIN{m=0} {if (NF != 2) {m = 1e30; exit} d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d}
         END{if (NR == 0) m = 1e30; printf "%.9g\n", m}'
}

# ---- info ---------------------------------------------------------------------------------------
WANT=("GraphModule(" "(conv3): Conv2d(8, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
      "(fc): Linear(in_features=512, out_features=4, bias=True)")
expect_ok info "info" "$D/cnn.onnx"
WANT=('"nodes": 3' '"op_counts": {"Linear": 2, "ReLU": 1}' '"parameters": 676' '"input_shape": [null, 16]')
expect_ok info_json "info" "$D/mlp.onnx" --json

# ---- run: PyTorch's float outputs ---------------------------------------------------------------
WANT=('"shape": [8, 4]' '"dtype": "float32"')
expect_ok run_cnn run "$D/cnn.onnx" "$D/cnn_in.npy" -o "$O/cnn_y.npy"
diff=$(max_abs_diff "$O/cnn_y.npy" "$D/cnn_out.npy")
if awk -v d="$diff" 'BEGIN{exit !(d <= 1e-5)}'; then ok; else bad "run cnn: max |y - torch| = $diff"; fi
WANT=('"shape": [64, 4]')
expect_ok run_mlp run "$D/mlp.onnx" "$D/mlp_x.npy" -o "$O/mlp_y.npy"
diff=$(max_abs_diff "$O/mlp_y.npy" "$D/mlp_out.npy")
if awk -v d="$diff" 'BEGIN{exit !(d <= 1e-5)}'; then ok; else bad "run mlp: max |y - torch| = $diff"; fi

# several outputs: OUT_0.npy, OUT_1.npy (relu and sigmoid of 4 rows)
WANT=("\"path\": \"$O/two_0.npy\", \"shape\": [4, 16]" "\"path\": \"$O/two_1.npy\"")
expect_ok run_two_outputs run "$D/two_outputs.onnx" "$D/two_outputs_x.npy" -o "$O/two.npy"
diff=$(max_abs_diff "$O/two_1.npy" "$D/two_outputs_1.npy")
if awk -v d="$diff" 'BEGIN{exit !(d <= 1e-6)}'; then ok; else bad "run two outputs: sigmoid off by $diff"; fi

# ---- eval: the float model is right on 48 of 64 rows (labels of any integer dtype) ---------------
WANT=('"accuracy": 0.75' '"correct": 48, "count": 64')
expect_ok eval_i64 eval "$D/mlp.onnx" --input "$D/mlp_x.npy" --labels "$D/mlp_labels.npy"
expect_ok eval_u8 eval "$D/mlp.onnx" --input "$D/mlp_x.npy" --labels "$D/mlp_labels_u8.npy" --batch-size 5

# ---- quantize static + compare: the bad layer comes first ---------------------------------------
WANT=('"mode": "static"' '"backend": "x86"' '"quantized_nodes": 5, "float_nodes": 0'
      '"size_bytes": {"float": ' "\"report\": \"$O/report.html\"")
expect_ok quantize_static quantize "$D/cnn.onnx" -o "$O/cnn_q.onnx" --mode static \
  --calib "$D/cnn_x.npy" --report "$O/report.html"
WANT=('{"layers": [{"name": "conv3", "type": "QuantizedConvReLU2d"' '"output_sqnr_db": ')
expect_ok compare_names_conv3 compare "$D/cnn.onnx" "$O/cnn_q.onnx" --input "$D/cnn_in.npy"
# every other layer is at least 20 dB better than conv3
out=$("$CQ" compare "$D/cnn.onnx" "$O/cnn_q.onnx" --input "$D/cnn_in.npy" 2>/dev/null)
sq=$(printf '%s' "$out" | grep -o '"sqnr_db": [-0-9.e]*' | awk '{print $2}')
if [ "$(printf '%s\n' "$sq" | wc -l)" -eq 4 ] &&
   printf '%s\n' "$sq" | awk 'NR == 1 {w = $1} NR > 1 && $1 < w + 20 {exit 1}'; then ok
else bad "compare: conv3 is not clearly the worst layer: $out"; fi
WANT=("layer" "conv3" "output SQNR:")
expect_ok compare_table compare "$D/cnn.onnx" "$O/cnn_q.onnx" --input "$D/cnn_in.npy" --table
WANT=('"outputs": [{"path": ')
expect_ok run_quantized run "$O/cnn_q.onnx" "$D/cnn_in.npy" -o "$O/cnn_qy.npy"
diff=$(max_abs_diff "$O/cnn_qy.npy" "$D/cnn_out.npy")
if awk -v d="$diff" 'BEGIN{exit !(d < 0.5)}'; then ok; else bad "quantized cnn far from float: $diff"; fi
WANT=("QuantizedConvReLU2d(8, 8, kernel_size=(3, 3)" "QuantizedLinear(in_features=512, out_features=4")
expect_ok info_quantized info "$O/cnn_q.onnx"
# per-tensor weights, another observer and backend: still conv3 first
WANT=('"backend": "qnnpack"')
expect_ok quantize_qnnpack quantize "$D/cnn.onnx" -o "$O/cnn_qt.onnx" --mode static \
  --calib "$D/cnn_x.npy" --backend qnnpack --per-tensor --observer minmax --batch-size 10
WANT=('{"layers": [{"name": "conv3"')
expect_ok compare_per_tensor compare "$D/cnn.onnx" "$O/cnn_qt.onnx" --input "$D/cnn_in.npy"
# --exclude: conv3 stays float
WANT=('"quantized_nodes": ')
expect_ok quantize_exclude quantize "$D/cnn.onnx" -o "$O/cnn_ex.onnx" --mode static \
  --calib "$D/cnn_x.npy" --exclude conv3
WANT=("(conv3): Conv2d(8, 8")
expect_ok info_excluded info "$O/cnn_ex.onnx"

# ---- the report: self-contained, one histogram per quantized layer ------------------------------
R=$O/report.html
if [ -s "$R" ]; then ok; else bad "report.html missing"; fi
if [ "$(grep -c '<svg' "$R")" -eq 4 ]; then ok; else bad "report: $(grep -c '<svg' "$R") histograms, want 4"; fi
if grep -qiE '<script|<link|<img|src=|url\(|https?://[^"]*"[^>]*>' <(grep -v 'xmlns="http://www.w3.org/2000/svg"' "$R"); then
  bad "report refers to external resources or scripts"
else ok; fi
for want in 'class="worst"><td><a href="#layer2">conv3' 'class="range"' 'class="clip"' 'clipping range'; do
  if grep -qF "$want" "$R"; then ok; else bad "report lacks '$want'"; fi
done

# ---- dynamic and QAT ----------------------------------------------------------------------------
WANT=('"mode": "dynamic"' '"quantized_nodes": 2, "float_nodes": 1')
expect_ok quantize_dynamic quantize "$D/mlp.onnx" -o "$O/mlp_dyn.onnx" --mode dynamic
WANT=('"type": "DynamicQuantizedLinear"')
expect_ok compare_dynamic compare "$D/mlp.onnx" "$O/mlp_dyn.onnx" --input "$D/mlp_x.npy"
WANT=('"accuracy": ')
expect_ok eval_dynamic eval "$O/mlp_dyn.onnx" --input "$D/mlp_x.npy" --labels "$D/mlp_labels.npy"
WANT=('"mode": "qat"' '"optimizer": "sgd_momentum_0.9"' '"epochs": 2' '"final_loss": ')
expect_ok quantize_qat quantize "$D/mlp.onnx" -o "$O/mlp_qat.onnx" --mode qat --calib "$D/mlp_x.npy" \
  --labels "$D/mlp_labels.npy" --epochs 2 --optimizer sgd --lr 0.001 --batch-size 16
WANT=("QuantizedLinearReLU(in_features=16, out_features=32")
expect_ok info_qat info "$O/mlp_qat.onnx"

# ---- bad input: exit status, nothing on stdout, one line naming the problem, no file left -------
rows=0
# row NAME RC MESSAGE ARGS... (the command must leave $O/bad.* absent)
row() {
  local name=$1 want_rc=$2 want_msg=$3
  shift 3
  rows=$((rows + 1))
  "$CQ" "$@" >"$TMP/out.txt" 2>"$TMP/err"
  local rc=$? lines
  lines=$(wc -l <"$TMP/err")
  if [ $rc -ne "$want_rc" ]; then bad "$name: exit $rc, want $want_rc: $(cat "$TMP/err")"
  elif [ -s "$TMP/out.txt" ]; then bad "$name: stdout not empty: $(head -c 300 "$TMP/out.txt")"
  elif [ "$lines" -ne 1 ]; then bad "$name: stderr has $lines lines: $(cat "$TMP/err")"
  elif ! grep -qF -- "$want_msg" "$TMP/err"; then bad "$name: stderr lacks '$want_msg': $(cat "$TMP/err")"
  elif ls "$O"/bad* >/dev/null 2>&1; then bad "$name: left $(ls "$O"/bad*)"; rm -f "$O"/bad*
  else ok; fi
}
Q=(quantize "$D/cnn.onnx" -o "$O/bad.onnx")
row truncated_onnx 1 "truncated.onnx" info "$D/truncated.onnx"
row garbage_onnx 1 "garbage.onnx" run "$D/garbage.onnx" "$D/cnn_in.npy" -o "$O/bad.npy"
row unknown_op 1 "node det_node (Det): operator not supported" info "$D/unknown_op.onnx"
row missing_init 1 "node fc_gemm (Gemm): input 1 'fc.weight' is not defined" info "$D/missing_init.onnx"
row shape_mismatch 1 "node fc_gemm (Gemm)" info "$D/shape_mismatch.onnx"
row missing_model 1 "nosuch.onnx" info "$D/nosuch.onnx"
row truncated_quantize 1 "truncated.onnx" quantize "$D/truncated.onnx" -o "$O/bad.onnx" --mode dynamic
row input_shape 1 "node 'conv1'" run "$D/cnn.onnx" "$D/cnn_x_4ch.npy" -o "$O/bad.npy"
row calib_shape 1 "calibration batch 0" "${Q[@]}" --mode static --calib "$D/cnn_x_4ch.npy"
row calib_nan 1 "cnn_x_nan.npy: calibration batch 1" "${Q[@]}" --mode static --calib "$D/cnn_x_nan.npy"
row calib_nan_report 1 "is NaN" "${Q[@]}" --mode static --calib "$D/cnn_x_nan.npy" --report "$O/bad.html"
row calib_missing 1 "nosuch.npy" "${Q[@]}" --mode static --calib "$D/nosuch.npy"
row calib_not_npy 1 "cnn.onnx" "${Q[@]}" --mode static --calib "$D/cnn.onnx"
row unwritable_out 1 "/nonexistent-dir/q.onnx" quantize "$D/cnn.onnx" -o /nonexistent-dir/q.onnx --mode static --calib "$D/cnn_x.npy" --report "$O/bad.html"
row unwritable_report 1 "/nonexistent-dir/r.html" "${Q[@]}" --mode static --calib "$D/cnn_x.npy" --report /nonexistent-dir/r.html
row exclude_unknown 1 "exclude 'nosuch' matches no node" "${Q[@]}" --mode static --calib "$D/cnn_x.npy" --exclude nosuch
row qat_labels_count 1 "60 labels for 64 input rows" "${Q[@]}" --mode qat --calib "$D/cnn_x.npy" --labels "$D/mlp_labels_short.npy"
row qat_input_shape 1 "epoch 1, batch 0: GraphModule node 'conv1'" "${Q[@]}" --mode qat --calib "$D/mlp_x.npy" --labels "$D/mlp_labels.npy"
row labels_float 1 "labels must be integer class indices, got dtype float32" eval "$D/mlp.onnx" --input "$D/mlp_x.npy" --labels "$D/mlp_labels_float.npy"
row labels_count 1 "60 labels for 64 input rows" eval "$D/mlp.onnx" --input "$D/mlp_x.npy" --labels "$D/mlp_labels_short.npy"
row eval_input_shape 1 "node 'fc1'" eval "$D/mlp.onnx" --input "$D/cnn_x.npy" --labels "$D/mlp_labels.npy"
row run_unwritable 1 "/nonexistent-dir/y.npy" run "$D/cnn.onnx" "$D/cnn_in.npy" -o /nonexistent-dir/y.npy
row compare_mismatch 1 "quantized model" compare "$D/cnn.onnx" "$O/mlp_dyn.onnx" --input "$D/cnn_in.npy"
row compare_float_only 1 "no quantized layer" compare "$D/cnn.onnx" "$D/cnn.onnx" --input "$D/cnn_in.npy"
row dynamic_without_linear 1 "dynamic" quantize "$D/cnn.onnx" -o "$O/bad.onnx" --mode dynamic --exclude fc
row requantize_static 1 "the model is already quantized" quantize "$O/cnn_q.onnx" -o "$O/bad.onnx" --mode static --calib "$D/cnn_x.npy"
row requantize_dynamic 1 "the model is already quantized" quantize "$O/mlp_dyn.onnx" -o "$O/bad.onnx" --mode dynamic
# usage errors
row usage_no_mode 2 "--mode static|dynamic|qat is required" quantize "$D/cnn.onnx" -o "$O/bad.onnx"
row usage_bad_mode 2 "--mode must be static, dynamic or qat" "${Q[@]}" --mode fast
row usage_static_calib 2 "--mode static needs --calib" "${Q[@]}" --mode static
row usage_qat_labels 2 "--mode qat needs --calib X.npy and --labels Y.npy" "${Q[@]}" --mode qat --calib "$D/cnn_x.npy"
row usage_observer 2 "unknown observer 'bogus'" "${Q[@]}" --mode static --calib "$D/cnn_x.npy" --observer bogus
row usage_observer_dynamic 2 "--observer applies to --mode static only" "${Q[@]}" --mode dynamic --observer minmax
row usage_backend 2 "--backend must be" "${Q[@]}" --mode dynamic --backend tpu
row usage_batch 2 "--batch-size needs a positive integer" "${Q[@]}" --mode static --calib "$D/cnn_x.npy" --batch-size 0
row usage_no_output 2 "-o OUT.onnx is required" quantize "$D/cnn.onnx" --mode dynamic
row usage_unknown_option 2 "unknown option '--fast'" run "$D/cnn.onnx" "$D/cnn_in.npy" -o "$O/bad.npy" --fast
row usage_run_args 2 "MODEL.onnx and INPUT.npy are required" run "$D/cnn.onnx"
row usage_eval_labels 2 "--input X.npy and --labels Y.npy are required" eval "$D/mlp.onnx" --input "$D/mlp_x.npy"
row usage_compare_input 2 "--input X.npy is required" compare "$D/cnn.onnx" "$O/cnn_q.onnx"
row usage_info_extra 2 "unexpected argument" info "$D/cnn.onnx" "$D/mlp.onnx"
row usage_lr 2 "--lr needs a positive number" "${Q[@]}" --mode qat --calib "$D/cnn_x.npy" --labels "$D/mlp_labels.npy" --lr -1

echo "cli_onnx: $passed checks passed, $failed failed ($rows bad-input rows)"
[ "$failed" -eq 0 ]
