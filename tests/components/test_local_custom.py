"""Your own classes and images through the whole zero-shot and few-shot pipelines (kfp.local, tiny profile).

Three runs share one store, each run once per module: zero-shot with a classes file and an image
folder, few-shot with the same, and zero-shot with the classes file alone (no real test set).
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s.cli.main import app
from synk8s.datasets.sample_folder import write_sample_folder

pytestmark = pytest.mark.timeout(600)

# The smallest run that still tunes: 2 images per class (one held out), one shard, few epochs.
SMALL = [
    "--set", "generate.images_per_class=2", "--set", "generate.num_shards=1", "--set", "tune.epochs=2",
    "--set", "prompts.mode=B", "--set", "fewshot.images_per_class=2", "--set", "fewshot.epochs=2",
    "--set", "fewshot.real_epochs=2",
]
CLASSES_YAML = (
    "classes:\n  - forklift\n  - name: pallet jack\n    description: a hand-pushed truck with two forks\n"
    "    aliases: [pump truck]\n  - hard hat\n  - safety vest\n  - traffic cone\n"
)
NAMES = ["forklift", "pallet jack", "hard hat", "safety vest", "traffic cone"]


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    (root / "classes.yaml").write_text(CLASSES_YAML)
    write_sample_folder(root / "imgs", NAMES, per_class=4)
    return root


def _submit(root: Path, pipeline: str, *args: str):
    """Run ``synk8s submit PIPELINE --local`` in ``root`` on its store; (CLI result, report path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = CliRunner().invoke(app, [
            "submit", pipeline, "--local", "--profile", "tiny", "--store", str(root / "store"),
            "--classes", str(root / "classes.yaml"), *args, *SMALL,
        ])
    assert result.exit_code == 0, result.output[-3000:]
    return result, Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def zeroshot_run(own_data):
    return _submit(own_data, "zeroshot", "--images", str(own_data / "imgs"))


@pytest.fixture(scope="module")
def fewshot_run(own_data):
    return _submit(own_data, "fewshot", "--images", str(own_data / "imgs"), "--shots", "2")


@pytest.fixture(scope="module")
def classes_only_run(own_data):
    return _submit(own_data, "zeroshot")


def test_zeroshot_run_on_own_classes_and_images(own_data, zeroshot_run):
    _, report_path = zeroshot_run
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "custom"
    assert Path(report["run_dir"]).name.startswith("custom-")
    saved = json.loads((own_data / "imgs" / "synk8s-split.json").read_text())
    assert report["counts"]["test"] == len(saved["test"]) == 5  # one drawn test image per class
    assert 0.0 <= report["tuned_top1"] <= 1.0
    prompts = [json.loads(line) for line in next(Path(report["run_dir"]).glob("prompts*/prompts.jsonl")).open()]
    assert [p["class_name"] for p in prompts] == NAMES
    assert prompts[1]["prompt"] == "a photo of a pallet jack, a hand-pushed truck with two forks."
    assert prompts[0]["prompt"] == "a photo of a forklift."


def test_fewshot_run_on_own_classes_and_images(own_data, fewshot_run):
    _, report_path = fewshot_run
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "custom"
    assert "/runs/custom-" in str(report_path)
    assert report["counts"]["real"] == 2 * len(NAMES)  # the shots come from the folder's train split
    assert all(0.0 <= report["top1"][name] <= 1.0 for name in ("ct_init", "zeroshot"))


def test_zeroshot_run_without_images_reports_synthetic_validation_only(classes_only_run):
    result, report_path = classes_only_run
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "custom"
    assert report["tuned_top1"] is None and report["zeroshot_top1"] is None
    assert report["counts"]["test"] == 0
    assert report["notice"].startswith("no real test set:")
    evaluate = json.loads((report_path.parent / "manifest.json").read_text())
    tune = json.loads((Path(evaluate["inputs"]["head"]) / "manifest.json").read_text())
    assert report["synthetic_val_images"] == tune["counts"]["val"] > 0
    assert report["synthetic_val_tuned_top1"] == pytest.approx(tune["best_val_top1"])
    assert report["synthetic_val_zeroshot_top1"] == pytest.approx(tune["text_head_val_top1"])
    assert "synthetic_val_tuned_top1" in result.output and "no real test set" in result.output  # the summary
    assert "No real test set." in (report_path.parent / "report.md").read_text()


@pytest.mark.parametrize("run", ["zeroshot_run", "classes_only_run"])
def test_a_run_on_own_classes_exports_a_classifier_of_its_names(own_data, run, request, tmp_path):
    both = {name: request.getfixturevalue(name)[1] for name in ("zeroshot_run", "classes_only_run")}
    report_path = both[run]
    out = tmp_path / "exported"
    runs = CliRunner().invoke(app, ["export", str(report_path.parent.parent), "-o", str(out)])
    assert runs.exit_code == 2 and "holds 2 export folders" in runs.output  # both runs share the run folder
    result = CliRunner().invoke(app, ["export", str(report_path.parent), "-o", str(out)])  # the evaluate folder
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["classes"] == NAMES
    result = CliRunner().invoke(app, ["predict", str(out), str(own_data / "imgs"), "-k", "1", "-o", "json"])
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)["predictions"]
    assert len(predictions) == 4 * len(NAMES) and {p["top"][0]["class"] for p in predictions} <= set(NAMES)
