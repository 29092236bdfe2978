#!/usr/bin/env bash
# Installs the Debian packages cquant's build and tests need, when missing.
set -euo pipefail
packages=(cmake make gcc libc6-dev libcjson-dev libopenblas-dev zlib1g-dev libprotobuf-c-dev
          protobuf-c-compiler libonnx-dev)
# CQ_BENCH_DEPS=1 adds the anchors the benchmarks in bench/ compare against (never needed by tests).
if [ "${CQ_BENCH_DEPS:-0}" = 1 ]; then packages+=(libdnnl-dev libxnnpack-dev libpthreadpool-dev); fi
# CQ_VALGRIND_DEPS=1 adds valgrind for `make test-valgrind`.
if [ "${CQ_VALGRIND_DEPS:-0}" = 1 ]; then packages+=(valgrind); fi
# CQ_ARM_DEPS=1 adds what `make test-aarch64` needs: the AArch64 cross compiler, qemu-user, and the
# arm64 builds of the libraries from Debian multiarch (the arm64 architecture is added to dpkg
# first; protoc-c and onnx.proto are the host's).
if [ "${CQ_ARM_DEPS:-0}" = 1 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "adding the arm64 architecture to dpkg" >&2
    $SUDO dpkg --add-architecture arm64
    $SUDO apt-get update -qq
  fi
  packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libc6:arm64
             libcjson-dev:arm64 libopenblas-dev:arm64 zlib1g-dev:arm64 libprotobuf-c-dev:arm64)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
