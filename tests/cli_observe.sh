#!/usr/bin/env bash
# The `cquant observe` contract: JSON on stdout, exit 0/1/2, one-line errors on stderr, nothing on
# stdout on failure. Expected numbers come from PyTorch 1.13 (tools/golden/gen_cli_fixtures.py makes
# the inputs; the values were printed by torch.ao.quantization.observer on the same files).
# usage: cli_observe.sh CQUANT REPO_ROOT TMPDIR
set -u
CQ=$1
ROOT=$2
TMP=$3/cli_observe
mkdir -p "$TMP"
D=$ROOT/tests/data/cli
E=$ROOT/examples/data
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# expect_json NAME "ARGS..." SUBSTRING...: exit 0, stdout contains every substring
expect_json() {
  local name=$1 args=$2
  shift 2
  local out
  out=$(eval "$CQ observe $args" 2>"$TMP/err")
  local rc=$?
  if [ $rc -ne 0 ]; then bad "$name: exit $rc: $(cat "$TMP/err")"; return; fi
  for want in "$@"; do
    case "$out" in
      *"$want"*) ok ;;
      *) bad "$name: output lacks '$want': $out" ;;
    esac
  done
}

# expect_fail NAME RC "ARGS..." SUBSTRING: exit RC, empty stdout, one stderr line containing SUBSTRING
expect_fail() {
  local name=$1 want_rc=$2 args=$3 want_msg=$4
  local out
  out=$(eval "$CQ observe $args" 2>"$TMP/err")
  local rc=$?
  local lines
  lines=$(wc -l <"$TMP/err")
  if [ $rc -ne "$want_rc" ]; then bad "$name: exit $rc, want $want_rc ($(cat "$TMP/err"))"; return; fi
  if [ -n "$out" ]; then bad "$name: stdout not empty: $out"; return; fi
  if [ "$lines" -ne 1 ]; then bad "$name: stderr has $lines lines: $(cat "$TMP/err")"; return; fi
  if ! grep -q -- "$want_msg" "$TMP/err"; then bad "$name: stderr lacks '$want_msg': $(cat "$TMP/err")"; return; fi
  ok
}

# The seed's example (PyTorch: 0.0112/124, 0.0101/139, 0.0100/106).
expect_json minmax "--observer minmax $E/seed_x0.npy $E/seed_x1.npy" \
  '"scale": [0.011247451417148113]' '"zero_point": [124]' \
  '"repr": "MinMaxObserver(min_val=-1.3974000215530396, max_val=1.4707000255584717)"'
expect_json moving_average "--observer moving_average_minmax $E/seed_x0.npy $E/seed_x1.npy" \
  '"scale": [0.010064372792840004]' '"zero_point": [139]' \
  'min_val=-1.395982027053833, max_val=1.1704330444335938'
expect_json histogram "--observer histogram $E/seed_x0.npy $E/seed_x1.npy" \
  '"scale": [0.009961657226085663]' '"zero_point": [106]' 'max_val=1.4879999160766602'
expect_json symmetric "--observer minmax --dtype qint8 --qscheme per_tensor_symmetric --reduce-range $E/seed_x0.npy $E/seed_x1.npy" \
  '"scale": [0.023160630837082863]' '"zero_point": [0]' '"quant_min": -64, "quant_max": 63'
expect_json per_channel "--observer per_channel_minmax --dtype qint8 --qscheme per_channel_symmetric $D/conv_weight.npy" \
  '"scale": [0.001054285909049213, 0.001973929116502404, 0.0015689540887251496, 0.0015626822132617235]' \
  '"zero_point": [0, 0, 0, 0]' \
  'PerChannelMinMaxObserver(min_val=tensor([-0.1344, -0.2517, -0.1547, -0.1992]), max_val=tensor([0.1340, 0.1061, 0.2000, 0.1439]))'
expect_json float64_input "--observer minmax $D/activations_f64.npy" '"scale": [0.020687030628323555]' '"zero_point": [59]'
expect_json uint8_input "--observer minmax $D/uint8.npy" '"scale": [0.04313725605607033]' '"zero_point": [0]'
# An empty batch is ignored; an observer with no data gives PyTorch's defaults and a warning.
expect_json empty_only "--observer minmax $D/empty.npy" '"scale": [1.0]' '"zero_point": [0]'
if "$CQ" observe --observer minmax "$D/empty.npy" 2>&1 >/dev/null | grep -q "warning"; then ok; else bad "no warning for an observer without data"; fi
expect_json empty_then_data "--observer minmax $D/empty.npy $E/seed_x0.npy $E/seed_x1.npy" '"zero_point": [124]'

# Bad input: exit 1, one line naming the file and the problem.
expect_fail nan 1 "--observer minmax $E/seed_x0.npy $D/nan.npy" "nan.npy: element 7 is NaN"
expect_fail inf 1 "--observer histogram $D/inf.npy" "inf.npy: element 4 is -Inf"
expect_fail truncated 1 "--observer minmax $D/truncated.npy" "truncated.npy"
expect_fail bad_magic 1 "--observer minmax $D/bad_magic.npy" "bad_magic.npy"
expect_fail not_npy 1 "--observer minmax $D/not_npy.npy" "not_npy.npy"
expect_fail huge_dims 1 "--observer minmax $D/huge_dims.npy" "huge_dims.npy"
expect_fail big_endian 1 "--observer minmax $D/big_endian.npy" "big_endian.npy"
expect_fail fortran 1 "--observer minmax $D/fortran.npy" "fortran.npy"
expect_fail complex 1 "--observer minmax $D/complex.npy" "complex.npy"
expect_fail missing_file 1 "--observer minmax $D/does_not_exist.npy" "does_not_exist.npy"
expect_fail bad_axis 1 "--observer per_channel_minmax --ch-axis 3 $E/seed_x0.npy" "ch_axis"
expect_fail channel_change 1 "--observer per_channel_minmax $E/seed_x0.npy $D/conv_weight.npy" "channels"
expect_fail symmetric_quint8_reduce 1 "--observer minmax --qscheme per_tensor_symmetric --reduce-range $E/seed_x0.npy" "reduce_range"
expect_fail range_without_zero 1 "--observer minmax --quant-min 1 --quant-max 255 $E/seed_x0.npy" "must include 0"
expect_fail range_too_wide 1 "--observer minmax --dtype qint8 --quant-min -200 --quant-max 100 $E/seed_x0.npy" "longer than"
expect_fail per_tensor_scheme_for_per_channel 1 "--observer per_channel_minmax --qscheme per_tensor_affine $E/seed_x0.npy" "qscheme"

# Usage errors: exit 2.
expect_fail no_observer 2 "$E/seed_x0.npy" "--observer"
expect_fail unknown_observer 2 "--observer fancy $E/seed_x0.npy" "unknown observer"
expect_fail unknown_option 2 "--observer minmax --frobnicate $E/seed_x0.npy" "unknown option"
expect_fail no_files 2 "--observer minmax" "no batch files"
expect_fail half_range 2 "--observer minmax --quant-min 0 $E/seed_x0.npy" "together"
expect_fail bad_dtype 2 "--observer minmax --dtype int3 $E/seed_x0.npy" "unknown dtype"
expect_fail bad_number 2 "--observer histogram --bins many $E/seed_x0.npy" "not an integer"
expect_fail bad_float 2 "--observer moving_average_minmax --averaging-constant nan $E/seed_x0.npy" "averaging_constant"
expect_fail missing_value 2 "--observer minmax --dtype" "needs a value"

# Top level.
"$CQ" --help >/dev/null && ok || bad "--help"
"$CQ" nonsense >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "unknown command should exit 2"
"$CQ" >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "no command should exit 2"

echo "cli_observe: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
