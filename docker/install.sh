#!/bin/sh
# Installs the service into a virtual environment. The Dockerfile's build stage runs it,
# and tests/ship runs the very same script on the host (the container-equivalent smoke
# test), so what the image gets is what the test checked.
#
#   install.sh torch VENV        create VENV and install torch into it
#   install.sh app VENV SRC      install the project at SRC (not editable) into VENV
#
# TORCH_SPEC       torch requirement, e.g. torch==2.13.0 (required by `torch`)
# TORCH_INDEX_URL  index that serves that build (PyTorch's CPU or CUDA index);
#                  empty: pip's own configuration (a local wheel cache or mirror)
#
# torch goes first, from its own index, so the project's loose `torch>=2.3` is already
# satisfied and the second step never swaps in the multi-GB CUDA build from PyPI.
set -eu

step=$1
venv=$2
case "$step" in
torch)
    : "${TORCH_SPEC:?set TORCH_SPEC, e.g. torch==2.13.0}"
    "${PYTHON:-python3}" -m venv "$venv"
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        "$venv/bin/pip" install --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"
    else
        "$venv/bin/pip" install "$TORCH_SPEC"
    fi
    ;;
app)
    "$venv/bin/pip" install "$3"
    # Fail the build here, not at the first start, if the entry point is broken.
    "$venv/bin/dif" --version
    ;;
*)
    echo "usage: install.sh torch VENV | install.sh app VENV SRC" >&2
    exit 2
    ;;
esac
