"""Export: a run's classifier loads offline and scores as its evaluate stage did, in torch and in ONNX; a
ResNet-50 pre-training exports a torchvision state dict; bad folders fail in one line."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import synk8s
from synk8s import datasets
from synk8s.cli.main import app
from synk8s.errors import UsageError
from synk8s.stages.zeroshot import export
from synk8s.stages.zeroshot.feature_cache import entry_info
from synk8s.stages.zeroshot.feature_sets import load_feature_set
from synk8s.stages.zeroshot.tune import load_head

pytestmark = pytest.mark.timeout(120)


def _one_line_error(result, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.output


def test_the_exported_classifier_scores_the_test_images_as_evaluate_did(
    zeroshot_run, exported_classifier, real_test_images
):
    clf = synk8s.load_classifier(str(exported_classifier))
    logits = clf([image for image, _ in real_test_images])  # (T, K)

    # evaluate: the cached test features of the run times the tuned head
    features, labels = load_feature_set(str(zeroshot_run.folder("features")), "test")
    head, _ = load_head(str(zeroshot_run.folder("tune")))
    expected = features @ head["weight"].T + head["bias"]
    assert logits.shape == expected.shape == (len(real_test_images), 10)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(labels, torch.tensor([label for _, label in real_test_images]))
    metrics = json.loads((zeroshot_run.folder("evaluate") / "metrics.json").read_text())
    assert float((logits.argmax(dim=1) == labels).float().mean()) == pytest.approx(metrics["tuned_top1"])

    manifest = clf.manifest
    assert clf.classes == list(datasets.get("cifar10").classes)
    assert manifest.provenance["run_id"] == Path(zeroshot_run.run).name
    assert manifest.provenance["config_digest"] == zeroshot_run.cfg.digest()
    assert manifest.provenance["head"] == str(zeroshot_run.folder("tune"))
    sets = json.loads((zeroshot_run.folder("features") / "manifest.json").read_text())["feature_sets"]
    listed = sets["synthetic"]["uri"]
    assert manifest.encoder.weights_digest == entry_info(listed)["parts"]["weights"]
    assert (manifest.encoder.clip, manifest.preprocess.image_size) == ("tiny-clip", 32)


def test_onnx_gives_the_torch_logits_for_any_batch_size(exported_classifier, real_test_images):
    import onnxruntime

    clf = synk8s.load_classifier(str(exported_classifier))
    session = onnxruntime.InferenceSession(str(exported_classifier / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for count in (1, 7):
        pixels = clf.pixels([image for image, _ in real_test_images[:count]])  # (B, 3, 32, 32)
        (logits,) = session.run(None, {"images": pixels.numpy()})
        torch.testing.assert_close(torch.from_numpy(logits), clf(pixels), atol=1e-4, rtol=1e-4)


def test_export_is_deterministic_and_found_from_the_tune_folder(zeroshot_run, tmp_path):
    again = tmp_path / "again"
    folders = {name: str(zeroshot_run.folder(name)) for name in ("features", "tune")}
    export.run(zeroshot_run.cfg, features=folders["features"], head=folders["tune"], out=str(again))
    staged = zeroshot_run.folder("export") / "classifier"
    names = sorted(p.name for p in staged.iterdir() if p.is_file())
    assert names == ["encoder.safetensors", "head.safetensors", "manifest.json", "model.onnx"]
    for name in names:  # the same run gives the same bytes, ONNX included
        assert (again / "classifier" / name).read_bytes() == (staged / name).read_bytes(), name

    out = tmp_path / "from-tune"
    result = CliRunner().invoke(app, ["export", folders["tune"], "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"classifier: {out}"
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == names


def test_a_resnet50_pretraining_exports_a_state_dict_torchvision_loads(tmp_path):
    import torchvision

    from synk8s import config
    from synk8s.datasets.drawn_images import write_drawn_images
    from synk8s.models.checkpoints import load_trunk
    from synk8s.stages.pretraining import pretrain

    images = str(tmp_path / "images")
    write_drawn_images(images, classes=10, per_class=2, seed=0)
    sets = ["models.backbone=resnet50", "pretrain.epochs=1", "pretrain.batch_size=16", f"store.root={tmp_path}"]
    pretrain.run(config.load("tiny", sets), images=images, out=str(tmp_path / "pretrain"))

    result = CliRunner().invoke(app, ["export", str(tmp_path / "pretrain"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "out" / "backbone.pth", weights_only=True)
    model = torchvision.models.resnet50()
    loaded = model.load_state_dict(state, strict=False)
    assert (loaded.missing_keys, loaded.unexpected_keys) == (["fc.weight", "fc.bias"], [])
    trunk, _ = load_trunk(str(tmp_path / "pretrain"))
    assert torch.equal(model.layer4[2].conv3.weight, trunk["layer4.2.conv3.weight"])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["torchvision"], manifest["missing_keys"]) == ("resnet50", ["fc.weight", "fc.bias"])
    with pytest.raises(UsageError, match="holds a synk8s-backbone/1 export, not a classifier"):
        synk8s.load_classifier(str(tmp_path / "out"))


@pytest.fixture
def copy_of(exported_classifier, tmp_path):
    """A copy of the exported classifier that a test may damage."""
    copy = tmp_path / "classifier"
    shutil.copytree(exported_classifier, copy, ignore=shutil.ignore_patterns(".synk8s-*"))
    return copy


def test_a_missing_file_of_the_model_folder_fails_in_one_line(copy_of, image_folder):
    (copy_of / "head.safetensors").unlink()
    result = CliRunner().invoke(app, ["predict", str(copy_of), str(image_folder)])
    _one_line_error(result, 1, f"{copy_of / 'head.safetensors'} is missing")


def test_a_damaged_file_of_the_model_folder_fails_in_one_line(copy_of, image_folder):
    encoder = copy_of / "encoder.safetensors"
    data = bytearray(encoder.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte flipped
    encoder.write_bytes(bytes(data))
    result = CliRunner().invoke(app, ["predict", str(copy_of), str(image_folder)])
    _one_line_error(result, 1, f"{encoder} is damaged")
    (copy_of / "manifest.json").write_text("{not json")
    _one_line_error(CliRunner().invoke(app, ["serve", str(copy_of)]), 1, "does not parse as JSON")


def test_export_of_a_missing_folder_or_into_a_used_folder_fails_in_one_line(zeroshot_run, tmp_path):
    _one_line_error(CliRunner().invoke(app, ["export", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]), 1,
                    "no run folder at")  # fmt: skip
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["export", zeroshot_run.run, "-o", str(used)])
    _one_line_error(result, 2, "holds other files (notes.txt)")
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]
    result = CliRunner().invoke(app, ["export", str(zeroshot_run.folder("filter")), "-o", str(tmp_path / "o")])
    _one_line_error(result, 2, "is the output of the filter stage")
