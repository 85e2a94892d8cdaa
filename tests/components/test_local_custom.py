"""Your own classes and images through the whole zero-shot and few-shot pipelines (kfp.local, tiny profile)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s.cli.main import app
from synk8s.datasets.sample_folder import write_sample_folder

pytestmark = pytest.mark.timeout(600)

SMALL = ["--set", "generate.images_per_class=2", "--set", "tune.epochs=2", "--set", "prompts.mode=B"]


CLASSES_YAML = (
    "classes:\n  - forklift\n  - name: pallet jack\n    description: a hand-pushed truck with two forks\n"
    "  - hard hat\n  - safety vest\n  - traffic cone\n"
)
NAMES = ["forklift", "pallet jack", "hard hat", "safety vest", "traffic cone"]


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    (root / "classes.yaml").write_text(CLASSES_YAML)
    write_sample_folder(root / "imgs", NAMES, per_class=4)
    return root


@pytest.mark.parametrize("pipeline", ["zeroshot", "fewshot"])
def test_custom_classes_and_images_run_end_to_end(own_data, tmp_path, monkeypatch, pipeline):
    monkeypatch.chdir(tmp_path)
    shots = ["--shots", "2"] if pipeline == "fewshot" else []
    result = CliRunner().invoke(app, [
        "submit", pipeline, "--local", "--profile", "tiny", "--store", str(tmp_path / "store"),
        "--classes", str(own_data / "classes.yaml"), "--images", str(own_data / "imgs"), *shots, *SMALL,
    ])
    assert result.exit_code == 0, result.output[-3000:]
    report_path = Path(result.stdout.strip().splitlines()[-1])
    assert "/runs/custom-" in str(report_path)
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "custom"
    assert report["counts"]["test"] == 5  # one drawn test image per class, from the saved split
