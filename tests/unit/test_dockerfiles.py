"""Invariants of the images in Dockerfiles/, read from the Dockerfiles (no Docker engine needed)."""

import re
from pathlib import Path

import pytest

import synk8s

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["gpu.Dockerfile", "cpu.Dockerfile"]
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|python3(\.\d+)?-dev|-devel)\b")


def parse(path):
    """Instructions of a Dockerfile as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def stages(instructions):
    """Split instructions at FROM: a list of (from_args, [instructions of that stage])."""
    result = []
    for keyword, args in instructions:
        if keyword == "FROM":
            result.append((args, []))
        elif result:
            result[-1][1].append((keyword, args))
    return result


@pytest.fixture(params=DOCKERFILES)
def dockerfile(request):
    return parse(ROOT / "Dockerfiles" / request.param)


def test_base_images_are_pinned_tags(dockerfile):
    for from_args, _ in stages(dockerfile):
        image = from_args.split()[0]
        assert ":" in image, f"{image} has no tag"
        tag = image.split(":", 1)[1]
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{image} is not pinned to a version"


def test_builder_stage_builds_the_synk8s_wheel(dockerfile):
    (builder_from, builder), *_ = stages(dockerfile)
    assert builder_from.startswith("python:3.11") and builder_from.endswith("AS builder")
    assert any(k == "RUN" and "pip wheel" in a and "--no-deps" in a for k, a in builder)


def test_final_stage_runs_as_numeric_non_root_user(dockerfile):
    _, final = stages(dockerfile)[-1]
    users = [a for k, a in final if k == "USER"]
    assert users, "final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]} must be a numeric non-root uid"


def test_final_stage_pins_torch_and_installs_synk8s_with_kfp(dockerfile):
    _, final = stages(dockerfile)[-1]
    runs = " ".join(a for k, a in final if k == "RUN")
    assert "torch==2.14.1" in runs and "torchvision==0.29.1" in runs
    assert re.search(r"pip install \S*synk8s-\$\{SYNK8S_VERSION\}-py3-none-any\.whl", runs)
    assert "import kfp, synk8s" in runs
    copies = [a for k, a in final if k == "COPY"]
    assert any(a.startswith("--from=builder") for a in copies)


def test_final_stage_has_no_compilers(dockerfile):
    _, final = stages(dockerfile)[-1]
    for keyword, args in final:
        if keyword == "RUN":
            assert not BUILD_TOOLS.search(args), f"build tool in final stage: {args}"


def test_version_label_and_hf_cache_env(dockerfile):
    args = [a for k, a in dockerfile if k == "ARG"]
    assert f"SYNK8S_VERSION={synk8s.__version__}" in args, "default SYNK8S_VERSION must equal synk8s.__version__"
    _, final = stages(dockerfile)[-1]
    labels = " ".join(a for k, a in final if k == "LABEL")
    assert 'org.opencontainers.image.version="${SYNK8S_VERSION}"' in labels
    env = " ".join(a for k, a in final if k == "ENV")
    assert "HF_HOME=" in env and "TORCH_HOME=" in env


def test_gpu_image_uses_cuda_runtime_and_cpu_image_the_cpu_index():
    gpu_from, _ = stages(parse(ROOT / "Dockerfiles" / "gpu.Dockerfile"))[-1]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu22\.04", gpu_from)
    _, cpu_final = stages(parse(ROOT / "Dockerfiles" / "cpu.Dockerfile"))[-1]
    runs = " ".join(a for k, a in cpu_final if k == "RUN")
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.14.1" in runs


def test_dockerignore_keeps_the_context_to_package_sources():
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "synk8s", "components", "pipelines"}
    assert all((ROOT / name).exists() for name in allowed)
    for name in DOCKERFILES:
        _, builder = stages(parse(ROOT / "Dockerfiles" / name))[0]
        sources = {src.removeprefix("./") for k, a in builder if k == "COPY" for src in a.split()[:-1]}
        assert sources == allowed, f"{name} copies {sources}; .dockerignore lets through {allowed}"
