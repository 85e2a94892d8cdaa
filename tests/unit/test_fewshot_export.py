"""Few-shot export: a few-shot run's heads load as classifiers that score the test images as fewshot_evaluate did."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import synk8s
from synk8s import config, datasets
from synk8s.cli.main import app
from synk8s.realdata import ensure_dataset
from synk8s.stages.table import TABLE

pytestmark = pytest.mark.timeout(300)

SETS = (
    "dataset.name=cifar10",
    "prompts.mode=B",
    "generate.images_per_class=2",
    "generate.num_shards=1",
    "filter.threshold=0.0",
    "fewshot.strategy=B",
    "fewshot.shots_per_class=1",
)
CHAIN = ("filter", "test_features", "features", "split", "fewshot_tune", "fewshot_evaluate", "fewshot_export")


def _run(root: Path, *extra: str):
    """Every stage of a tiny B few-shot run in ``root``; (config, run folder)."""
    cfg = config.load("tiny", [*SETS, *extra, f"store.root={root}"])
    run = TABLE.run_dir(cfg)
    TABLE.execute("prompts", cfg, run)
    TABLE.execute("generate", cfg, run, shard=0)
    TABLE.execute("generate", cfg, run, collect=True)
    for stage in CHAIN:
        TABLE.execute(stage, cfg, run)
    return cfg, run


@pytest.fixture(scope="module")
def fewshot_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("fewshot-store"))


@pytest.fixture(scope="module")
def test_images(fewshot_run):
    cfg, _ = fewshot_run
    data_set = datasets.load(cfg.dataset.name, datasets.get(cfg.dataset.name).test_split, ensure_dataset(cfg))
    return [data_set[i] for i in range(len(data_set))]


def _export(folder: str, out: Path, *args: str):
    result = CliRunner().invoke(app, ["export", folder, "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    return synk8s.load_classifier(str(out))


def test_the_exported_ct_syn_head_scores_the_test_images_as_fewshot_evaluate_did(fewshot_run, test_images, tmp_path):
    from synk8s.stages.fewshot.tune import load_tuned
    from synk8s.stages.zeroshot.feature_sets import load_feature_set

    cfg, run = fewshot_run
    clf = _export(run, tmp_path / "ct_syn")  # the run folder: its one fewshot-export folder, ct_syn by default
    logits = clf([image for image, _ in test_images])  # (T, K)

    features, labels = load_feature_set(TABLE.stage_dir(run, "features", cfg), "test")
    head, _ = load_tuned(TABLE.stage_dir(run, "fewshot_tune", cfg), "ct_syn")
    torch.testing.assert_close(logits, features @ head["weight"].T + head["bias"], atol=1e-5, rtol=1e-5)
    metrics = json.loads((Path(TABLE.stage_dir(run, "fewshot_evaluate", cfg)) / "metrics.json").read_text())
    assert float((logits.argmax(dim=1) == labels).float().mean()) == pytest.approx(metrics["top1"]["ct_syn"])
    provenance = clf.manifest.provenance
    assert (provenance["variant"], provenance["shots"], provenance["strategy"]) == ("ct_syn", 1, "B")
    assert clf.manifest.head["stage"] == "fewshot_tune"


def test_onnx_gives_the_torch_logits_of_the_fewshot_head(fewshot_run, test_images, tmp_path):
    import onnxruntime

    cfg, run = fewshot_run
    clf = _export(TABLE.stage_dir(run, "fewshot_evaluate", cfg), tmp_path / "ct_syn")
    pixels = clf.pixels([image for image, _ in test_images[:5]])  # (5, 3, S, S)
    session = onnxruntime.InferenceSession(str(tmp_path / "ct_syn" / "model.onnx"))
    (onnx_logits,) = session.run(["logits"], {"images": pixels.numpy()})
    torch.testing.assert_close(torch.from_numpy(onnx_logits), clf(pixels), atol=1e-4, rtol=1e-4)


def test_head_picks_ct_init_and_refuses_other_names(fewshot_run, tmp_path):
    from synk8s.stages.fewshot.tune import load_tuned

    cfg, run = fewshot_run
    tune = TABLE.stage_dir(run, "fewshot_tune", cfg)
    clf = _export(tune, tmp_path / "ct_init", "--head", "ct_init")
    head, _ = load_tuned(tune, "ct_init")
    assert torch.equal(clf.module.weight, head["weight"].float())
    assert clf.manifest.provenance["variant"] == "ct_init"
    result = CliRunner().invoke(app, ["export", tune, "-o", str(tmp_path / "x"), "--head", "zeroshot"])
    assert result.exit_code != 0 and "--head must be one of ct_init, ct_syn" in result.output
    assert not (tmp_path / "x").exists()


def test_a_trained_tower_is_exported_with_its_tuned_tensors(fewshot_run, test_images, tmp_path):
    from synk8s.stages.fewshot.tune import load_tuned

    _, frozen_run = fewshot_run
    cfg, run = _run(tmp_path / "store", "tune.trainable=last-block")  # the tower's last block trains
    tensors, _ = load_tuned(TABLE.stage_dir(run, "fewshot_tune", cfg), "ct_syn")
    assert any(name.startswith("visual.") for name in tensors)
    tuned = _export(run, tmp_path / "tuned")
    frozen = _export(frozen_run, tmp_path / "frozen")
    pixels = tuned.pixels([image for image, _ in test_images[:8]])
    assert not torch.allclose(tuned(pixels), frozen(pixels), atol=1e-3)
    exported = tuned.module.tower.state_dict()
    for name, tensor in tensors.items():
        if name.startswith("visual."):
            torch.testing.assert_close(exported[name.removeprefix("visual.")], tensor.float())
    metrics = json.loads((Path(TABLE.stage_dir(run, "fewshot_evaluate", cfg)) / "metrics.json").read_text())
    labels = torch.tensor([label for _, label in test_images])
    logits = tuned([image for image, _ in test_images])
    assert float((logits.argmax(dim=1) == labels).float().mean()) == pytest.approx(metrics["top1"]["ct_syn"])
