# syntax=docker/dockerfile:1
# DIF service image: CPU torch by default.
#
#   docker build -t dif-service:0.1.0 .
#   docker build -t dif-service:0.1.0-cuda \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#       --build-arg MAX_BATCH_SIZE=16 .
#
# The CUDA wheels of PyTorch's index carry their own CUDA libraries, so the same slim base
# works on a GPU host (the NVIDIA container toolkit supplies only the driver).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a self-contained virtual environment in /opt/venv ------------------------------
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# torch has its own layer: it is most of the image and changes far less often than the code.
COPY docker/install.sh docker/install.sh
RUN sh docker/install.sh torch /opt/venv
COPY pyproject.toml README.md ./
COPY dif dif
# the `dif` console script's home: the composition root above dif, app, training and scan
COPY dif_cli dif_cli
COPY app app
COPY training training
# scan/ too: `dif detect` needs nothing more; `dif scan` needs Ray, which only the scan target adds.
COPY scan scan
RUN sh docker/install.sh app /opt/venv /src

# ---- build-scan: the same venv plus Ray for `dif scan` (the scan-cluster extra) ----------------
FROM build AS build-scan
# Ray Data, and the dashboard / job server that KubeRay's `ray job submit` talks to.
RUN /opt/venv/bin/pip install --no-cache-dir "/src[scan-cluster]" \
    && /opt/venv/bin/dif scan --help > /dev/null \
    && /opt/venv/bin/python -c "import ray.data, scan.cluster"

# ---- scan: the image of a Ray cluster that runs `dif scan` (deploy/ray, KubeRay RayJob) --------
#   docker build --target scan -t dif-service:0.1.0-scan .
#   docker build --target scan -t dif-service:0.1.0-scan-cuda \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# Built before `runtime` in this file so that a plain `docker build .` still makes the service.
FROM ${PYTHON_IMAGE} AS scan
LABEL org.opencontainers.image.title="dif-scan" \
      org.opencontainers.image.description="dif scan: Deep Image Fingerprint over whole collections, on Ray" \
      org.opencontainers.image.licenses="MIT"
# The service's user (KubeRay pods run as it); bash is the slim image's, which KubeRay's
# `ray start` command line needs.
RUN groupadd --system --gid 10001 dif \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin dif
COPY --from=build-scan /opt/venv /opt/venv
COPY fingerprints /opt/dif/fingerprints
# HOME=/tmp: Ray keeps its session files under /tmp, the pod's writable volume.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    DIF_FINGERPRINTS_DIR=/opt/dif/fingerprints
WORKDIR /opt/dif
USER 10001:10001
# KubeRay replaces the command with `ray start`; run alone, the image is `dif`:
#   docker run --rm -v "$PWD/photos:/data:ro" -v "$PWD/out:/out" IMAGE scan /data --out /out
ENTRYPOINT ["dif"]
CMD ["scan", "--help"]

# ---- runtime: the venv, the fingerprints, an unprivileged user -----------------------------
FROM ${PYTHON_IMAGE} AS runtime
# CPU hosts serve best with batches of 4 (docs/service.md); CUDA builds pass 16.
ARG MAX_BATCH_SIZE=4
LABEL org.opencontainers.image.title="dif-service" \
      org.opencontainers.image.description="Deep Image Fingerprint detector for images of known generators" \
      org.opencontainers.image.licenses="MIT"
# A numeric UID, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 dif \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin dif
COPY --from=build /opt/venv /opt/venv
# The embedded set, owned by root and read-only to the service. To serve another set, mount
# a folder over /opt/dif/fingerprints (or anywhere, and point DIF_FINGERPRINTS_DIR at it).
COPY fingerprints /opt/dif/fingerprints
COPY docker/healthcheck.py /opt/dif/healthcheck.py
# HOME=/tmp: the root filesystem may be read-only (Kubernetes), /tmp is the writable mount.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    DIF_FINGERPRINTS_DIR=/opt/dif/fingerprints \
    DIF_HOST=0.0.0.0 \
    DIF_PORT=8000 \
    DIF_MAX_BATCH_SIZE=${MAX_BATCH_SIZE}
WORKDIR /opt/dif
USER 10001:10001
EXPOSE 8000
# start-period covers loading and warming up the set; healthy = ready (see healthcheck.py).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/dif/healthcheck.py"]
# Exec form: `dif` is PID 1 and gets SIGTERM itself, then drains (DIF_DRAIN_TIMEOUT_S).
# Any other sub-command works too: `docker run IMAGE eval /data/fp /data/set`.
ENTRYPOINT ["dif"]
CMD ["serve"]
