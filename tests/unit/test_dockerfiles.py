"""Invariants of the images in Dockerfiles/, read from the Dockerfiles (no Docker engine needed)."""

import re
import tomllib
from pathlib import Path

import pytest

import synk8s

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["gpu.Dockerfile", "cpu.Dockerfile"]
LOCK = ROOT / "Dockerfiles" / "requirements.lock"
LOCK_PINS = ROOT / "Dockerfiles" / "requirements.in"
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


def lock_entries():
    """``{name: (version, [sha256 hashes])}`` of Dockerfiles/requirements.lock."""
    entries, current = {}, None
    for line in LOCK.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line):
            current = match.group(1).lower()
            entries[current] = (match.group(2), [])
        elif match := re.search(r"--hash=sha256:([0-9a-f]{64})", line):
            entries[current][1].append(match.group(1))
        else:
            assert not line.strip() or line.lstrip().startswith("#"), f"unexpected lock line: {line}"
    return entries


def test_final_stage_installs_everything_from_the_hashed_lock(dockerfile):
    _, final = stages(dockerfile)[-1]
    runs = [a for k, a in final if k == "RUN"]
    installs = [part.strip() for run in runs for part in run.split("&&") if "pip install" in part]
    assert installs == [
        "pip install --require-hashes --no-deps -r /tmp/requirements.lock",
        'pip install --no-deps "/tmp/wheels/synk8s-${SYNK8S_VERSION}-py3-none-any.whl"',
    ]
    assert any("pip check" in run for run in runs)  # what the lock installed is complete and consistent
    assert any("import kfp, synk8s, torch" in run for run in runs)
    copies = [a for k, a in final if k == "COPY"]
    assert "Dockerfiles/requirements.lock /tmp/requirements.lock" in copies
    assert any(a.startswith("--from=builder") for a in copies)


def test_lock_is_hashed_complete_and_holds_the_pinned_versions():
    entries = lock_entries()
    assert all(hashes for _, hashes in entries.values()), "every locked package needs a hash"
    pins = dict(line.split("==") for line in LOCK_PINS.read_text().splitlines() if line and not line.startswith("#"))
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    for name, version in pins.items():
        assert entries[name][0] == version, f"{name}: lock has {entries[name][0]}, requirements.in pins {version}"
    # Every dependency of synk8s and of its serve extra (the CPU image serves classifiers) is in the lock
    # (names only; versions are the resolver's).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["serve"]]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")
        assert name in entries, f"{name} is a dependency of synk8s but not in the lock"
    # The CUDA 13 libraries of the torch build come along (GPU image); nothing from another index.
    assert any(name.startswith("nvidia-") and name.endswith("cu13") for name in entries)
    assert "--index-url" not in LOCK.read_text() and "--extra-index-url" not in LOCK.read_text()
    assert LOCK.read_text().startswith(
        "# This file was autogenerated by uv via the following command:\n#    Dockerfiles/lock.sh\n"
    )


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


def test_gpu_image_uses_cuda_runtime_and_no_image_reaches_past_the_lock():
    gpu_from, _ = stages(parse(ROOT / "Dockerfiles" / "gpu.Dockerfile"))[-1]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu22\.04", gpu_from)
    for name in DOCKERFILES:
        text = (ROOT / "Dockerfiles" / name).read_text()
        assert "--index-url" not in text and "torch==" not in text, f"{name} installs torch outside the lock"


def test_dockerignore_keeps_the_context_to_package_sources():
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "synk8s",
        "components",
        "pipelines",
        "Dockerfiles/requirements.lock",
    }
    assert all((ROOT / name).exists() for name in allowed)
    for name in DOCKERFILES:
        copied = set()
        for _, instructions in stages(parse(ROOT / "Dockerfiles" / name)):
            for keyword, args in instructions:
                if keyword == "COPY" and not args.startswith("--from="):
                    copied |= {src.removeprefix("./") for src in args.split()[:-1]}
        assert copied == allowed, f"{name} copies {copied}; .dockerignore lets through {allowed}"
