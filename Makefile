# The two commands of the README: `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0

.PHONY: setup run test lint fingerprints bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The pinned CPU build of torch is installed first so the loose `torch>=2.3`
# requirement is already satisfied and pip never pulls a multi-GB CUDA build.
setup: $(BIN)/python
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e '.[dev]'

run: setup
	$(BIN)/dif serve --host $${DIF_HOST:-0.0.0.0} --port $${DIF_PORT:-8000}

test: setup
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check dif training app tests bench

fingerprints: setup
	$(BIN)/dif build-defaults --data ../shared/data/ltim --out fingerprints --pool-reals --device cpu

bench: setup
	$(BIN)/python bench/crossval_table.py
