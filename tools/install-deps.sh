#!/usr/bin/env bash
# Installs the Debian packages cquant's build and tests need, when missing.
set -euo pipefail
packages=(cmake make gcc libc6-dev libcjson-dev libopenblas-dev zlib1g-dev libprotobuf-c-dev
          protobuf-c-compiler libonnx-dev)
# CQ_BENCH_DEPS=1 adds the anchors the benchmarks in bench/ compare against (never needed by tests).
if [ "${CQ_BENCH_DEPS:-0}" = 1 ]; then packages+=(libdnnl-dev); fi
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
