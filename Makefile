# The two commands of the README: `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0

.PHONY: setup deps run test lint fingerprints bench clean image image-cuda ship-check

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

# System tools some tests drive (promtool, prometheus): installed with apt when missing, or one
# line saying what to run when this user cannot. First, so a fresh machine learns it in seconds.
deps:
	bash scripts/ci-deps.sh

test: deps setup
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check dif dif_cli training app scan tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

fingerprints: setup
	$(BIN)/dif build-defaults --data ../shared/data/ltim --out fingerprints --pool-reals --device cpu \
		--reals ../shared/data/real/cbsd68 --null-reals ../shared/data/real/cbsd68

bench: setup
	$(BIN)/python -m bench.crossval_table

# Images (need a Docker engine; tests/ship checks the Dockerfile without one).
image:
	docker build -t dif-service:0.1.0 .

image-cuda:
	docker build -t dif-service:0.1.0-cuda --build-arg MAX_BATCH_SIZE=16 \
		--build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .

# The shipping checks alone (Dockerfile, container smoke test, compose, Prometheus, Kubernetes, README).
ship-check: setup
	$(BIN)/python -m pytest -q tests/ship
