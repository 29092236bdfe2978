#!/usr/bin/env bash
# The bad-input table: malformed files, odd paths, out-of-range options and stray arguments, across
# every command (observe, bench, demo, the top level). Each row asserts exit status 1 (2 for a usage
# error), nothing on stdout, exactly one line on stderr that starts with "cquant" and names the
# problem, and that no file appeared, in the working folder or next to the inputs. Complements
# tests/cli_observe.sh (which covers the first bad .npy files and usage errors) without repeating
# its cases.
# usage: cli_bad_inputs.sh CQUANT REPO_ROOT TMPDIR
set -u
CQ=$1
ROOT=$2
TMP=$3/cli_bad_inputs
rm -rf "$TMP"
mkdir -p "$TMP/in" "$TMP/cwd"
IN=$TMP/in
X=$ROOT/examples/data/seed_x0.npy
N=$ROOT/tests/data/npy
C=$ROOT/tests/data/cli
passed=0
failed=0
rows=0

bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# mk_npy FILE DESCR SHAPE_REPR DATA_PRINTF_FORMAT: a version 1.0 .npy file with the given header
# fields (written as given, so they may be invalid) and raw data.
mk_npy() {
  local file=$1 descr=$2 shape=$3 data=$4
  local h="{'descr': $descr, 'fortran_order': False, 'shape': $shape, }"
  local pad=$(( (64 - (10 + ${#h} + 1) % 64) % 64 ))
  h="$h$(printf '%*s' "$pad" '')"
  local len=$(( ${#h} + 1 ))
  # shellcheck disable=SC2059
  { printf '\223NUMPY\001\000'; printf "\\$(printf '%03o' $((len % 256)))\\$(printf '%03o' $((len / 256)))";
    printf '%s\n' "$h"; printf "$data"; } >"$file"
}

# The folders that must stay unchanged by a failing command.
snapshot() { ls -A "$TMP/cwd" "$IN"; }

# row NAME WANT_RC MESSAGE_SUBSTRING ARGS...: runs cquant ARGS in an empty working folder.
row() {
  local name=$1 want_rc=$2 want_msg=$3
  shift 3
  rows=$((rows + 1))
  local before after rc lines
  before=$(snapshot)
  (cd "$TMP/cwd" && exec "$CQ" "$@") >"$TMP/out" 2>"$TMP/err" </dev/null
  rc=$?
  after=$(snapshot)
  lines=$(wc -l <"$TMP/err")
  if [ "$rc" -ne "$want_rc" ]; then
    bad "$name: exit $rc, want $want_rc: $(head -c 600 "$TMP/err")"
  elif [ -s "$TMP/out" ]; then
    bad "$name: stdout not empty: $(head -c 300 "$TMP/out")"
  elif [ "$lines" -ne 1 ] || [ "$(tail -c 1 "$TMP/err" | od -An -c | tr -d ' ')" != '\n' ]; then
    bad "$name: stderr is not exactly one line ($lines newlines): $(head -c 600 "$TMP/err")"
  elif ! grep -q '^cquant' "$TMP/err"; then
    bad "$name: message does not start with 'cquant': $(cat "$TMP/err")"
  elif ! grep -qF -- "$want_msg" "$TMP/err"; then
    bad "$name: message lacks '$want_msg': $(cat "$TMP/err")"
  elif [ "$before" != "$after" ]; then
    bad "$name: files appeared: $(diff <(echo "$before") <(echo "$after") | grep '^>' | tr '\n' ' ')"
  else
    passed=$((passed + 1))
  fi
  rm -rf "$TMP/cwd" && mkdir "$TMP/cwd"
}

# ---- inputs -------------------------------------------------------------------------------------
: >"$IN/empty.npy"
mkdir "$IN/a_directory.npy"
head -c 20 "$X" >"$IN/header_cut.npy"
cp "$X" "$IN/header_length_ffff.npy"
printf '\377\377' | dd of="$IN/header_length_ffff.npy" bs=1 seek=8 conv=notrunc 2>/dev/null
cp "$X" "$IN/version_9.npy"
printf '\011' | dd of="$IN/version_9.npy" bs=1 seek=6 conv=notrunc 2>/dev/null
cp "$X" "$IN/trailing_byte.npy"
printf 'x' >>"$IN/trailing_byte.npy"
head -c 150 "$X" >"$IN/data_cut.npy"
ln -s loop "$IN/loop"
mk_npy "$IN/f8_nan.npy" "'<f8'" "(2,)" '\000\000\000\000\000\000\360\077\000\000\000\000\000\000\370\177'
mk_npy "$IN/f8_beyond_f32.npy" "'<f8'" "(1,)" '\234\165\210\074\344\067\176\124' # about 1e99
mk_npy "$IN/negative_dim.npy" "'<f4'" "(-1,)" ''
mk_npy "$IN/shape_not_tuple.npy" "'<f4'" "3" '\000\000\000\000\000\000\000\000\000\000\000\000'
mk_npy "$IN/descr_not_string.npy" "4" "(1,)" '\000\000\000\000'
mk_npy "$IN/shape_float.npy" "'<f4'" "(1.5,)" '\000\000\000\000'
mk_npy "$IN/i4_two.npy" "'<i4'" "(2,)" '\001\000\000\000\002\000\000\000'
printf '\223NUMPY\001\000\010\000{}     \n' >"$IN/empty_dict.npy"
printf '\223NUMPY\001\000\020\000not a dict     \n' >"$IN/not_a_dict.npy"
long=$(printf 'n%.0s' $(seq 1 300))
mk_npy "$IN/f4_huge_shape.npy" "'<f4'" "(4000000000,)" '\000\000\200\077' # 16 GB promised, 4 bytes
printf '\223NUMPY\002\000\001' >"$IN/v2_preamble_cut.npy"
mkfifo "$IN/fifo_junk" "$IN/fifo_cut" "$IN/fifo_endless" "$IN/fifo_huge" "$IN/fifo_v2_cut" 2>/dev/null
have_fifo=$([ -p "$IN/fifo_junk" ] && echo 1 || echo 0)

# ---- top level and demo: usage errors (2) -------------------------------------------------------
row empty_command 2 "unknown command ''" ""
row command_wrong_case 2 "unknown command 'OBSERVE'" OBSERVE
row option_as_command 2 "unknown command '--frobnicate'" --frobnicate
row demo_extra_argument 2 "unknown argument 'extra'" demo extra
row demo_unknown_option 2 "unknown argument '--frobnicate'" demo --frobnicate
row demo_help_plus_junk 2 "unknown argument 'junk'" demo junk --help

# ---- observe: files that are not .npy batches (1) -----------------------------------------------
row empty_file 1 "empty.npy: truncated: 0 bytes" observe --observer minmax "$IN/empty.npy"
row directory 1 "a_directory.npy: is a directory" observe --observer minmax "$IN/a_directory.npy"
row dev_null 1 "/dev/null: truncated: 0 bytes" observe --observer minmax /dev/null
row not_a_directory 1 "Not a directory" observe --observer minmax "$X/batch.npy"
row name_too_long 1 "File name too long" observe --observer minmax "$IN/$long/$long.npy"
row symlink_loop 1 "Too many levels of symbolic links" observe --observer minmax "$IN/loop"
row header_cut 1 "header_cut.npy: truncated" observe --observer minmax "$IN/header_cut.npy"
row header_length_lies 1 "header length 65535" observe --observer minmax "$IN/header_length_ffff.npy"
row version_9 1 "version 9.0" observe --observer minmax "$IN/version_9.npy"
row data_cut 1 "data_cut.npy: truncated" observe --observer histogram "$IN/data_cut.npy"
row trailing_after_good_batch 1 "trailing_byte.npy: 1 trailing bytes" \
  observe --observer minmax "$X" "$IN/trailing_byte.npy"
row empty_dict 1 "empty_dict.npy" observe --observer minmax "$IN/empty_dict.npy"
row header_not_a_dict 1 "not_a_dict.npy" observe --observer minmax "$IN/not_a_dict.npy"
row descr_not_string 1 "descr_not_string.npy" observe --observer minmax "$IN/descr_not_string.npy"
row negative_dimension 1 "negative_dim.npy" observe --observer minmax "$IN/negative_dim.npy"
row shape_not_tuple 1 "shape_not_tuple.npy" observe --observer minmax "$IN/shape_not_tuple.npy"
row shape_float 1 "shape_float.npy" observe --observer minmax "$IN/shape_float.npy"
row dtype_bool 1 "'|b1' is not supported" observe --observer minmax "$N/reject_bool_3.npy"
row dtype_f2 1 "'<f2' is not supported" observe --observer minmax "$N/reject_f2_3.npy"
row dtype_object 1 "object dtype" observe --observer minmax "$N/reject_object_3.npy"
row dtype_structured 1 "structured dtype" observe --observer minmax "$N/reject_structured_2.npy"
row nine_dimensions 1 "9 dimensions" observe --observer minmax "$N/reject_9d.npy"
row f8_nan 1 "f8_nan.npy: element 1 is NaN" observe --observer histogram "$IN/f8_nan.npy"
row f8_beyond_float32 1 "f8_beyond_f32.npy: element 0 is" observe --observer minmax "$IN/f8_beyond_f32.npy"
row scalar_per_channel 1 "at least 2 dimensions" observe --observer per_channel_minmax "$N/f8_scalar.npy"
row ma_per_channel_channels_change 1 "channels" \
  observe --observer moving_average_per_channel_minmax "$X" "$C/conv_weight.npy"
row int_batch_then_bad 1 "bool" observe --observer minmax "$IN/i4_two.npy" "$N/reject_bool_3.npy"
if [ "$have_fifo" = 1 ]; then
  printf 'junk' >"$IN/fifo_junk" &
  writer=$!
  row fifo_not_npy 1 "fifo_junk: not a .npy file" observe --observer minmax "$IN/fifo_junk"
  kill "$writer" 2>/dev/null
  wait "$writer" 2>/dev/null
  head -c 100 "$X" >"$IN/fifo_cut" &
  writer=$!
  row fifo_truncated 1 "fifo_cut: truncated" observe --observer minmax "$IN/fifo_cut"
  kill "$writer" 2>/dev/null
  wait "$writer" 2>/dev/null
  # A stream is checked as it arrives and read no further than its header promises: a good batch
  # followed by endless zeros fails at the first byte past the data.
  cat "$X" /dev/zero >"$IN/fifo_endless" 2>/dev/null &
  writer=$!
  row fifo_never_ends 1 "fifo_endless: trailing bytes" observe --observer minmax "$IN/fifo_endless"
  kill "$writer" 2>/dev/null
  wait "$writer" 2>/dev/null
  cat "$IN/f4_huge_shape.npy" >"$IN/fifo_huge" &
  writer=$!
  row fifo_promises_16gb 1 "fifo_huge: truncated: header says shape (4000000000,) float32" \
    observe --observer minmax "$IN/fifo_huge"
  kill "$writer" 2>/dev/null
  wait "$writer" 2>/dev/null
  cat "$IN/v2_preamble_cut.npy" >"$IN/fifo_v2_cut" &
  writer=$!
  row fifo_v2_preamble_cut 1 "12-byte version 2 preamble" observe --observer minmax "$IN/fifo_v2_cut"
  kill "$writer" 2>/dev/null
  wait "$writer" 2>/dev/null
fi
row dev_zero 1 "/dev/zero: not a .npy file" observe --observer minmax /dev/zero
row huge_shape_file 1 "f4_huge_shape.npy: truncated" observe --observer minmax "$IN/f4_huge_shape.npy"
if [ "$(id -u)" -ne 0 ]; then # root reads anything
  cp "$X" "$IN/unreadable.npy"
  chmod 000 "$IN/unreadable.npy"
  row unreadable 1 "Permission denied" observe --observer minmax "$IN/unreadable.npy"
fi

# ---- observe: option values ---------------------------------------------------------------------
# Values that do not parse or do not fit the option's type are usage errors (2); values that parse
# but break the observer constructor's rules are bad input (1), as in tests/cli_observe.sh.
row bins_huge 2 "bins" observe --observer histogram --bins 99999999999999999999 "$X"
row bins_over_int 2 "bins: 2147483648 is outside" observe --observer histogram --bins 2147483648 "$X"
row bins_negative 2 "bins: -5 is outside" observe --observer histogram --bins -5 "$X"
row bins_zero 1 "bins 0 must be in" observe --observer histogram --bins 0 "$X"
row bins_too_many 1 "bins 1000000000 must be in" observe --observer histogram --bins 1000000000 "$X"
row upsample_zero 1 "upsample_rate 0 must be in" observe --observer histogram --upsample-rate 0 "$X"
row upsample_huge 1 "upsample_rate 1000000000" observe --observer histogram --upsample-rate 1000000000 "$X"
row upsample_negative 2 "upsample_rate: -1" observe --observer histogram --upsample-rate -1 "$X"
row ch_axis_huge 2 "ch_axis" observe --observer per_channel_minmax --ch-axis 99999999999 "$X"
row ch_axis_very_negative 2 "ch_axis" observe --observer per_channel_minmax --ch-axis -9 "$X"
row quant_min_huge 2 "quant_min" observe --observer minmax --quant-min 99999999999999999999 --quant-max 1 "$X"
row quant_max_int64_max 2 "quant_max" observe --observer minmax --quant-min 0 --quant-max 9223372036854775807 "$X"
row eps_negative 1 "eps -1" observe --observer minmax --eps -1 "$X"
row eps_inf 2 "eps: inf is not finite" observe --observer minmax --eps inf "$X"
row eps_overflows 2 "eps: 1e999 is not finite" observe --observer minmax --eps 1e999 "$X"
row eps_nan 2 "eps: nan" observe --observer minmax --eps nan "$X"
row averaging_constant_2 1 "averaging_constant 2" observe --observer moving_average_minmax --averaging-constant 2 "$X"
row percentile_over_100 1 "percentile 101" observe --observer percentile --percentile 101 "$X"
row percentile_negative 1 "percentile -1" observe --observer percentile --percentile -1 "$X"
row percentile_nan 2 "percentile: nan" observe --observer percentile --percentile nan "$X"
row stride_zero 1 "stride 0" observe --observer mse --stride 0 "$X"
row stride_negative 2 "stride: -3" observe --observer mse --stride -3 "$X"
row start_bin_beyond_bins 1 "start_bin 5000" observe --observer entropy --start-bin 5000 "$X"
row start_bin_negative 2 "start_bin: -1" observe --observer entropy --start-bin -1 "$X"
row observer_empty_name 2 "unknown observer ''" observe --observer "" "$X"
row observer_without_value 2 "--observer needs a value" observe --observer
row qscheme_unknown 2 "unknown qscheme 'bogus'" observe --observer minmax --qscheme bogus "$X"
row option_eats_flag 2 "'--reduce-range' is not an integer" observe --observer minmax --bins --reduce-range "$X"
row placeholder_has_no_qparams 1 "PlaceholderObserver does not compute" observe --observer placeholder "$X"
row noop_has_no_qparams 1 "NoopObserver does not compute" observe --observer noop "$X"
row observe_without_observer 2 "--observer NAME is required" observe "$X"
row observe_without_batches 2 "no batch files given" observe --observer minmax
row dtype_unknown 2 "unknown dtype 'bogus'" observe --observer minmax --dtype bogus "$X"
row entropy_one_bin 1 "needs bins >= 2" observe --observer entropy --bins 1 "$X"
row minmax_per_channel_qscheme 1 "does not support qscheme per_channel_affine" \
  observe --observer minmax --qscheme per_channel_affine "$X"

# ---- bench: options (2) and shapes no operator accepts (1) --------------------------------------
row bench_without_op 2 "--op is required" bench
row bench_unknown_op 2 "unknown --op 'matmul'" bench --op matmul --shape 1,2,3
row bench_linear_without_shape 2 "--shape M,K,N" bench --op linear
row bench_linear_two_sizes 2 "--shape M,K,N" bench --op linear --shape 1,2
row bench_linear_zero_size 2 "--shape M,K,N" bench --op linear --shape 0,2,3
row bench_linear_size_not_number 2 "--shape M,K,N" bench --op linear --shape 1,x,3
row bench_conv_short_shape 2 "--shape N,C,H,W,OC,KH,KW" bench --op conv2d --shape 1,2,3
row bench_conv_stride_zero 2 "--shape N,C,H,W,OC,KH,KW" bench --op conv2d --shape 1,3,8,8,4,3,3,0,0,1
row bench_threads_zero 2 "--threads must be 1..1024" bench --op linear --shape 1,2,3 --threads 0
row bench_threads_too_many 2 "--threads must be 1..1024" bench --op linear --shape 1,2,3 --threads 100000
row bench_reps_zero 2 "--reps must be" bench --op linear --shape 1,2,3 --reps 0
row bench_min_ms_negative 2 "--min-ms must be" bench --op linear --shape 1,2,3 --min-ms -1
row bench_engine_unknown 2 "unknown engine 'bogus'" bench --op linear --shape 1,2,3 --engine bogus
row bench_layout_unknown 2 "--layout must be nchw or nhwc" bench --op linear --shape 1,2,3 --layout bogus
row bench_extra_argument 2 "unexpected argument 'extra'" bench --op linear --shape 1,2,3 extra
row bench_conv_kernel_too_big 1 "9x9 kernel does not fit the 8x8 input" bench --op conv2d --shape 1,3,8,8,4,9,9
row bench_conv_groups_mismatch 1 "must be divisible by groups 2" bench --op conv2d --shape 1,3,8,8,4,3,3,1,0,2
row bench_linear_too_large 1 "shape too large" bench --op linear --shape 99999999,99999999,99999999

# ---- demo: option values (2) ----------------------------------------------------------------------
row demo_threads_zero 2 "--threads must be an integer in [1, 1024], got '0'" demo --threads 0
row demo_threads_not_number 2 "got 'x'" demo --threads x
row demo_threads_without_value 2 "--threads needs a value" demo --threads
row demo_model_unknown 2 "--model must be cnn or lstm, got 'resnet'" demo --model resnet
row demo_test_images_negative 2 "--test-images must be an integer" demo --test-images -1
row demo_test_images_huge 2 "got '99999999999999999999'" demo --test-images 99999999999999999999
row demo_calib_images_zero 2 "--calib-images must be an integer" demo --calib-images 0
row demo_qat_steps_negative 2 "--qat-steps must be an integer" demo --qat-steps -5
row demo_reps_zero 2 "--reps must be an integer" demo --reps 0
row demo_report_without_value 2 "--report needs a value" demo --report

# ---- demo: missing inputs (1): checked before anything is printed ---------------------------------
row demo_data_missing 1 "cannot read /nonexistent/t10k-images-idx3-ubyte.gz" demo --data /nonexistent --quick
row demo_models_missing 1 "cannot read /nonexistent/demo_cnn.safetensors" demo --models /nonexistent --model cnn

echo "cli_bad_inputs: $rows rows, $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -eq "$rows" ]
