#!/bin/sh
# Regenerates Dockerfiles/requirements.lock, the hashed lock both images install from, from
# pyproject.toml's dependencies with its serve extra (KServe, ONNX: the CPU image serves exported
# classifiers, see manifests/serving/) and the pins in Dockerfiles/requirements.in. It only resolves
# (uv's resolver reads the package index; nothing is installed, so no venv changes), for CPython
# 3.11 on x86_64 Linux with glibc 2.28 or newer, the platform of both images.
#
# torch comes from PyPI, where PyTorch publishes the CUDA 13.0 build of torch 2.14.1 (with the
# nvidia-* CUDA 13 libraries as dependencies); the CPU image installs the same build and runs it
# on the CPU. Extra arguments go to `uv pip compile`, e.g. `--upgrade-package transformers`.
#
# Needs uv (`pip install uv`) and access to https://pypi.org/simple.
set -eu
cd "$(dirname "$0")/.."
exec uv pip compile pyproject.toml Dockerfiles/requirements.in \
    --extra serve \
    --generate-hashes \
    --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 \
    --default-index https://pypi.org/simple \
    --custom-compile-command "Dockerfiles/lock.sh" \
    --output-file Dockerfiles/requirements.lock \
    "$@"
