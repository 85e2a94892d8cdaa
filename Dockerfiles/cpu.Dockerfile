# syntax=docker/dockerfile:1
# CPU image for the light synk8s pipeline components (prompts, evaluation, export, bookkeeping) and the
# KServe predictor of an exported classifier (`synk8s serve`, manifests/serving/): synk8s with its
# serve extra + kfp + torch 2.14.1, every package installed from the hashed lock Dockerfiles/requirements.lock
# (the same lock and so the same packages as the GPU image: torch is the CUDA 13.0 build, which
# runs on the CPU when there is no GPU). Runs as the non-root user synk8s (uid 1000).
#
# Build from the repository root; SYNK8S_VERSION must equal synk8s.__version__:
#   docker buildx build -f Dockerfiles/cpu.Dockerfile --build-arg SYNK8S_VERSION=0.1.0 \
#     -t REGISTRY/synk8s-cpu:0.1.0 --push .

ARG SYNK8S_VERSION=0.1.0

FROM python:3.11.13-slim-bookworm AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY synk8s ./synk8s
COPY components ./components
COPY pipelines ./pipelines
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.13-slim-bookworm
ARG SYNK8S_VERSION
LABEL org.opencontainers.image.title="synk8s-cpu" \
      org.opencontainers.image.description="synk8s pipeline components with CPU torch" \
      org.opencontainers.image.version="${SYNK8S_VERSION}"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
# Hash-checking mode: every package (pip, torch and the CUDA libraries included) must match a
# hash in the lock, and nothing outside the lock is installed (--no-deps; pip check below).
COPY Dockerfiles/requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

COPY --from=builder /wheels /tmp/wheels
RUN pip install --no-deps "/tmp/wheels/synk8s-${SYNK8S_VERSION}-py3-none-any.whl" \
    && rm -rf /tmp/wheels \
    && pip check \
    && python -c "import kfp, synk8s, torch, kserve, onnxruntime; assert synk8s.__version__ == '${SYNK8S_VERSION}'; assert torch.__version__.startswith('2.14.1')"

# A numeric USER lets the kubelet verify runAsNonRoot.
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin synk8s
ENV HF_HOME=/home/synk8s/.cache/huggingface \
    TORCH_HOME=/home/synk8s/.cache/torch \
    XDG_CACHE_HOME=/home/synk8s/.cache
USER 1000:1000
WORKDIR /home/synk8s
