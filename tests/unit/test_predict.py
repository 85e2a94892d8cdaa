"""``synk8s predict``: top-k of image files and folders from an exported classifier; unreadable images counted."""

import json
import shutil

import pytest
from typer.testing import CliRunner

import synk8s
from synk8s.cli.main import app
from synk8s.predict import read_image

pytestmark = pytest.mark.timeout(60)


def _predict(*args: str):
    return CliRunner().invoke(app, ["predict", *args])


def test_a_folder_is_classified_with_the_classifiers_top_classes(exported_classifier, image_folder, monkeypatch):
    result = _predict(str(exported_classifier), str(image_folder), "--top-k", "3", "--output", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    sources = [p["image"] for p in body["predictions"]]
    assert sources == sorted(str(p) for p in image_folder.rglob("*.*"))  # 5 PNGs and the JPEG in sub/
    assert body["failures"] == []
    clf = synk8s.load_classifier(str(exported_classifier))
    for prediction in body["predictions"]:
        logits = clf(read_image(prediction["image"]))[0]  # (K,)
        probabilities = logits.softmax(dim=0)
        ranked = probabilities.argsort(descending=True)[:3].tolist()
        assert [t["class"] for t in prediction["top"]] == [clf.classes[i] for i in ranked]
        assert [t["probability"] for t in prediction["top"]] == pytest.approx(probabilities[ranked].tolist())

    monkeypatch.chdir(image_folder)
    table = _predict(str(exported_classifier), "0.png", "-k", "1")
    assert table.exit_code == 0, table.output
    top1 = body["predictions"][0]["top"][0]
    row = next(line for line in table.stdout.splitlines() if "0.png" in line)
    assert top1["class"] in row and f"{top1['probability']:.4f}" in row


def test_unreadable_images_are_named_counted_and_fail_the_command(exported_classifier, image_folder, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(image_folder, folder)
    (folder / "notes.jpg").write_bytes(b"not an image")
    whole = (folder / "0.png").read_bytes()
    (folder / "cut.png").write_bytes(whole[: len(whole) // 2])
    result = _predict(str(exported_classifier), str(folder), "--output", "json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert len(body["predictions"]) == 6  # the readable ones are still classified
    assert {f["image"] for f in body["failures"]} == {str(folder / "notes.jpg"), str(folder / "cut.png")}
    errors = result.stderr.strip().splitlines()
    assert errors[0] == f"unreadable image {folder / 'cut.png'}: {body['failures'][0]['error']}"
    assert errors[1].startswith(f"unreadable image {folder / 'notes.jpg'}: not an image file Pillow can read")
    assert errors[-1] == "error: 2 of 8 images could not be read"


@pytest.mark.parametrize("k", ["0", "11"])
def test_a_top_k_outside_the_class_count_is_refused_in_one_line(exported_classifier, image_folder, k):
    result = _predict(str(exported_classifier), str(image_folder), "--top-k", k)
    assert result.exit_code == 2
    assert result.output.strip() == f"error: --top-k must be between 1 and 10 (the classifier's classes), got {k}"


def test_a_missing_image_or_model_folder_is_refused_in_one_line(exported_classifier, tmp_path):
    result = _predict(str(exported_classifier), str(tmp_path / "nope.jpg"))
    assert result.exit_code == 1
    assert result.output.strip() == f"error: no image file or folder at {tmp_path / 'nope.jpg'}"
    (tmp_path / "empty").mkdir()
    result = _predict(str(exported_classifier), str(tmp_path / "empty"))
    assert result.exit_code == 1 and result.output.strip().startswith("error: no images (.jpg")
    result = _predict(str(tmp_path / "no-model"), str(tmp_path / "empty"))
    assert result.exit_code == 1
    assert result.output.strip().startswith(f"error: no exported model at {tmp_path / 'no-model'}")
