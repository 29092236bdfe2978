#!/bin/sh
# Runs an AArch64 program under qemu-user: the test emulator of cross builds
# (cmake/aarch64-linux-gnu.cmake). CQ_QEMU_CPU names the emulated CPU model (default: max, which
# has the ARMv8.2 dot product; cortex-a53 has NEON only), so one build tests both kernel sets.
# The guest's dynamic loader and C library are those of Debian's libc6:arm64 (multiarch) at their
# usual paths; qemu's own QEMU_LD_PREFIX may name another root.
exec qemu-aarch64 -cpu "${CQ_QEMU_CPU:-max}" "$@"
