"""The committed pipelines/compiled/zeroshot.yaml matches what the code compiles today."""

import pytest

from synk8s import config
from synk8s.pipelines import compile_pipeline, compiled_path

pytestmark = pytest.mark.timeout(60)

FIX = "synk8s compile zeroshot --profile paper -o pipelines/compiled/zeroshot.yaml"


def _body(text: str) -> str:
    # The '#' header repeats the parameters; kfp prints the keys of a dict default (gpu_tolerations)
    # in protobuf map order, which changes from one compilation to the next. The body is stable.
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def test_committed_zeroshot_yaml_is_fresh(tmp_path):
    committed = compiled_path("zeroshot")
    assert committed.exists(), f"{committed} is missing; run: {FIX}"
    fresh = compile_pipeline("zeroshot", config.load("paper"), tmp_path / "zeroshot.yaml").read_text()
    assert _body(committed.read_text()) == _body(fresh), f"{committed} is stale; run: {FIX}"
