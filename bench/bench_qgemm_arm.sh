#!/usr/bin/env bash
# Instruction counts of the AArch64 quantized GEMM kernels under emulation: the speed figure
# available without ARM hardware. For each shape and kernel set (scalar, neon, neondot) it runs
# `cquant bench --op linear` (qnnpack engine, one thread) under qemu-aarch64 with one guest
# instruction per translation block and every block execution logged (-singlestep -d nochain,exec),
# so the log has one line per executed instruction. Two runs that differ only in their repetition
# count cancel start-up, packing and data generation: (count(R2) - count(R1)) / (R2 - R1) is the
# instructions of one GEMM call (quantized linear: GEMM + requantization).
# usage: bench/bench_qgemm_arm.sh [BUILD_DIR] [M,K,N ...]   (BUILD_DIR from `make test-aarch64`)
set -euo pipefail
build=${1:-build-aarch64}
shift || true
shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=(1,512,256 16,256,64 64,512,64 33,300,47)
tool=$build/cquant
[ -x "$tool" ] || { echo "bench_qgemm_arm: $tool not found (run make test-aarch64 first)" >&2; exit 1; }
command -v qemu-aarch64 >/dev/null || { echo "bench_qgemm_arm: qemu-aarch64 not found" >&2; exit 1; }
r1=1
r2=3

count() { # ISA SHAPE REPS -> executed guest instructions of the whole process
  CQ_ISA=$1 qemu-aarch64 -cpu max -singlestep -d nochain,exec \
    "$tool" bench --op linear --engine qnnpack --threads 1 --min-ms 0 --shape "$2" --reps "$3" \
    2>&1 >/dev/null | grep -c '^Trace'
}

printf '%-12s %14s %14s %14s %9s %9s\n' "M,K,N" scalar neon neondot "s/neon" "s/dot"
for shape in "${shapes[@]}"; do
  declare -A per=()
  for isa in scalar neon neondot; do
    used=$(CQ_ISA=$isa qemu-aarch64 -cpu max "$tool" bench --op linear --engine qnnpack --threads 1 \
      --min-ms 0 --shape "$shape" --reps 1 | sed -n 's/.*"isa": "\([a-z0-9]*\)".*/\1/p')
    [ "$used" = "$isa" ] || { echo "bench_qgemm_arm: asked for $isa, ran '$used'" >&2; exit 1; }
    a=$(count "$isa" "$shape" $r1)
    b=$(count "$isa" "$shape" $r2)
    per[$isa]=$(( (b - a) / (r2 - r1) ))
  done
  awk -v s="$shape" -v a="${per[scalar]}" -v b="${per[neon]}" -v c="${per[neondot]}" \
    'BEGIN { printf "%-12s %14d %14d %14d %9.2f %9.2f\n", s, a, b, c, a / b, a / c }'
  unset per
done
