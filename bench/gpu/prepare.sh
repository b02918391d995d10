#!/usr/bin/env bash
# Run HERE (the dev machine), from the repo root, before using the device machine:
#   bash bench/gpu/prepare.sh
# The device image has torch, numpy, pillow, safetensors, tqdm, psutil, httpx, anyio, h11 and
# prometheus-client, but not the web stack: fetch those wheels (the versions of our venv) into
# .whl/, and copy the sample images (../shared does not travel) into .gpu-data/. Both folders
# are git-ignored and are named in the run's `carry`.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
wheels=(fastapi starlette uvicorn pydantic pydantic-core pydantic-settings python-dotenv typing-inspection
        annotated-types python-multipart typing-extensions annotated-doc)
specs=()
for name in "${wheels[@]}"; do
    version=$($PY -m pip show "$name" 2>/dev/null | awk '/^Version:/{print $2}')
    specs+=("$name${version:+==$version}")
done
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${specs[@]}"
rm -rf .gpu-data && mkdir -p .gpu-data
cp -r ../shared/data/ltim .gpu-data/images
du -sh .whl .gpu-data
