#!/usr/bin/env bash
# Runs each libFuzzer harness for a bounded time: `make fuzz` calls it after building.
# usage: fuzz/run.sh BUILD_DIR SECONDS TARGET...
#
# Each target starts from its seed corpus fuzz/corpus/TARGET (read only) and keeps what it finds in
# BUILD_DIR/corpus/TARGET, so repeated runs continue where the last one stopped. A crash, leak,
# sanitizer report or contract violation is written to BUILD_DIR/crashes/TARGET/ and fails the run;
# a reproducer belongs in tests/data/fuzz_regressions/TARGET/ (replayed by test_fuzz_regressions).
# Prints one summary line per target with its executions. FUZZ_ARGS adds libFuzzer options; a long
# run that should continue past crashes uses FUZZ_ARGS="-fork=1 -ignore_crashes=1" (and, to step
# over bugs already reported, UBSAN_OPTIONS=...:suppressions=FILE and CQ_FUZZ_SKIP, see
# fuzz/fuzz_common.h).
set -u
if [ $# -lt 3 ]; then
  echo "usage: $0 BUILD_DIR SECONDS TARGET..." >&2
  exit 2
fi
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
case "$seconds" in
  '' | *[!0-9]*)
    echo "fuzz/run.sh: FUZZ_SECONDS must be a whole number of seconds, not '$seconds'" >&2
    exit 2
    ;;
esac
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
summary=()
for t in "$@"; do
  bin=$build/fuzz_$t
  if [ ! -x "$bin" ]; then
    echo "fuzz/run.sh: $bin is missing (run make fuzz-build)" >&2
    exit 2
  fi
  work=$build/corpus/$t
  crashes=$build/crashes/$t
  log=$build/fuzz_$t.log
  # a harness without seeds of its own starts from its format's: onnx_run from onnx
  seeds=$here/corpus/$t
  [ -d "$seeds" ] || seeds=$here/corpus/${t%%_*}
  mkdir -p "$work" "$crashes"
  dict=()
  if [ -f "$here/$t.dict" ]; then dict=("-dict=$here/$t.dict"); fi
  echo "fuzz_$t: ${seconds}s, log in $log"
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$crashes/" "${dict[@]}" ${FUZZ_ARGS:-} "$work" "$seeds" \
    >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  if [ -z "$execs" ]; then # -fork=N prints no final stats; its status lines start with #EXECS:
    execs=$(sed -n 's/^#\([0-9]*\):.*/\1/p' "$log" | tail -n 1)
    [ -n "$execs" ] && rate=$((execs / (seconds > 0 ? seconds : 1)))
  fi
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  if [ $rc -ne 0 ]; then
    failed=1
    summary+=("fuzz_$t: FAILED (exit $rc) after ${execs:-?} executions; see $log and $crashes/")
    grep -m 5 -E 'ERROR|runtime error|contract violation|SUMMARY' "$log" >&2
  else
    summary+=("fuzz_$t: ${execs:-?} executions (${rate:-?}/s), ${cov:-cov: ?}, no crash")
  fi
done
printf '%s\n' "${summary[@]}"
exit $failed
