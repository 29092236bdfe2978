#!/usr/bin/env bash
# Runs bench_qgemm (cquant's quantized linear vs oneDNN's u8s8->u8 matmul, same process) on the
# issue's shapes with 1 and 2 threads and prints its JSON. Usage:
#   bench/run_qgemm.sh [PATH/TO/bench_qgemm] [extra bench_qgemm options...]
# (`cmake --build BUILD --target bench` calls it with the built binary.) Not part of `make test`.
set -euo pipefail
bin=${1:-build/bench_qgemm}
shift || true
if [ ! -x "$bin" ]; then
  echo "run_qgemm.sh: $bin not found; build first (make, or cmake --build BUILD)" >&2
  exit 1
fi
exec "$bin" "$@"
