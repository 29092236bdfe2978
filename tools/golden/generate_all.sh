#!/bin/sh
# Regenerates every golden data set under tests/data/golden/ by running each
# tools/golden/gen_*.py with Debian's PyTorch 1.13 (python3-torch). Stops at the first failure.
# PYTHON overrides the interpreter (default /usr/bin/python3, where Debian installs torch).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-/usr/bin/python3}
"$python" -c 'import torch; print("torch", torch.__version__)'
found=0
for gen in "$here"/gen_*.py; do
  [ -e "$gen" ] || continue
  found=1
  echo "== $(basename "$gen")"
  "$python" "$gen"
done
if [ "$found" = 0 ]; then
  echo "generate_all.sh: no tools/golden/gen_*.py found" >&2
  exit 1
fi
