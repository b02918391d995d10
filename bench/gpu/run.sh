#!/usr/bin/env bash
# Runs ON the device machine, from the repo root (see docs/load.md, "GPU"):
#   run(command="bash bench/gpu/run.sh", carry=[".whl", ".gpu-data"], timeout_s=540)
# Installs the carried wheels, prints the GPU, runs the GPU unit test and the throughput bench,
# and leaves the figures in $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# The tests and benches read ../shared/data/ltim, which does not travel: point it at the carried copy.
if [ ! -d ../shared/data/ltim ]; then mkdir -p ../shared/data && ln -s "$PWD/.gpu-data/images" ../shared/data/ltim; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/core/test_detector.py 2>&1 | tail -3 | tee "$OUT/gpu-tests.txt"
python3 -m bench.gpu_throughput --images .gpu-data/images --json "$OUT/gpu_throughput.json" 2>&1 \
    | grep -v "it/s" | tee "$OUT/gpu_throughput.txt"
