"""The committed pipelines/compiled/<name>.yaml files are, byte for byte, what the code compiles today."""

import subprocess
import sys

import pytest

from synk8s import config
from synk8s.pipelines import PIPELINES, compile_pipeline, compiled_path

pytestmark = pytest.mark.timeout(120)

FIX = "synk8s compile {name} --profile paper -o pipelines/compiled/{name}.yaml"


def test_every_pipeline_has_a_committed_yaml():
    assert set(PIPELINES) >= {"zeroshot", "fewshot", "fewshot_sweep", "pretrain"}
    missing = [name for name in PIPELINES if not compiled_path(name).exists()]
    assert not missing, "missing compiled pipelines; run: " + "; ".join(FIX.format(name=n) for n in missing)


@pytest.mark.parametrize("name", PIPELINES)
def test_committed_yaml_is_fresh(tmp_path, name):
    committed = compiled_path(name)
    fresh = compile_pipeline(name, config.load("paper"), tmp_path / f"{name}.yaml").read_bytes()
    assert committed.read_bytes() == fresh, f"{committed} is stale; run: {FIX.format(name=name)}"


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
