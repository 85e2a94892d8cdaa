"""The committed pipelines/compiled/*.yaml are, byte for byte, what the code compiles today."""

import subprocess
import sys

import pytest

from synk8s import config
from synk8s.pipelines import compile_pipeline, compiled_path

pytestmark = pytest.mark.timeout(120)

FIX = "synk8s compile zeroshot --profile paper -o pipelines/compiled/zeroshot.yaml"


def test_committed_zeroshot_yaml_is_fresh(tmp_path):
    committed = compiled_path("zeroshot")
    assert committed.exists(), f"{committed} is missing; run: {FIX}"
    fresh = compile_pipeline("zeroshot", config.load("paper"), tmp_path / "zeroshot.yaml").read_bytes()
    assert committed.read_bytes() == fresh, f"{committed} is stale; run: {FIX}"


def test_committed_pretrain_yaml_is_fresh(tmp_path):
    fix = "synk8s compile pretrain --profile paper -o pipelines/compiled/pretrain.yaml"
    committed = compiled_path("pretrain")
    assert committed.exists(), f"{committed} is missing; run: {fix}"
    fresh = compile_pipeline("pretrain", config.load("paper"), tmp_path / "pretrain.yaml").read_bytes()
    assert committed.read_bytes() == fresh, f"{committed} is stale; run: {fix}"


def test_two_compiles_in_separate_processes_give_the_same_bytes(tmp_path):
    # Each process has its own hash seed and protobuf map order: the header must not depend on them.
    paths = [tmp_path / f"z{i}.yaml" for i in range(2)]
    for path in paths:
        result = subprocess.run(
            [sys.executable, "-m", "synk8s", "compile", "zeroshot", "--profile", "paper", "-o", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    first, second = (path.read_bytes() for path in paths)
    assert first == second
    header = [line for line in first.decode().splitlines() if line.startswith("#")]
    tolerations = '#    gpu_tolerations: list [Default: [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": '
    assert any(line.startswith(tolerations) for line in header)  # keys sorted
    assert "#    images_per_class: int [Default: 2000]" in header
