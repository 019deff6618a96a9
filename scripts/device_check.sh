#!/usr/bin/env bash
# The device check in one call (docs/performance.md): install what the device image lacks,
# then time all 17 paper tasks on synthetic data (scripts/device_check.py), within 8 minutes.
#
# Here, with network, once per session (wheels for the device's Python 3.12, x86-64):
#   scripts/device_check.sh --fetch-wheels        # fills .whl/ (git-ignored via .git/info/exclude)
# On the device machine (the `device` tool's run, carrying .whl):
#   bash scripts/device_check.sh                  # writes device_check.json/.md into $OUT
# Extra arguments go to device_check.py (e.g. --tasks A,B --steps 100 --budget-s 300).
set -uo pipefail
cd "$(dirname "$0")/.."

# What the device image (KINDS.md: jax, optax, flax, pandas, pyarrow, typer, rich, msgpack,
# filelock, scikit-learn, huggingface-hub ...) does not hold but celo-bench imports.
WHEELS="pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5"

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl $WHEELS
  exit $?
fi

if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
python3 -c "import celo_bench.suite, celo_bench.engine, celo_bench.calibration" || {
  echo "celo-bench does not import on this machine: fetch the missing wheels with scripts/device_check.sh --fetch-wheels and carry .whl" >&2
  exit 3
}
OUT_DIR="${OUT:-device-check-out}"
mkdir -p "$OUT_DIR"
timeout 470 python3 scripts/device_check.py --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/device_check.log"
