"""Evaluate: hand-checked accuracies, per-class table, stand-in notice, image grid."""

import io
import json

import pytest
import torch
from PIL import Image
from safetensors.torch import save

from synk8s import config, datasets, shards, storage
from synk8s.errors import MissingDataError
from synk8s.runs import write_manifest
from synk8s.stages.zeroshot import evaluate
from synk8s.stages.zeroshot.tune import HEAD_METADATA_KEY

pytestmark = pytest.mark.timeout(60)

K = 10  # cifar10
PER_CLASS = 3


def _colour(c):
    return (25 * c, 255 - 25 * c, (80 * c) % 256)


def write_upstream(root, data_root):
    """Hand-made upstream outputs whose test accuracies are known exactly.

    Test images: 3 per class with one-hot features; for classes 0-4 the third image points at the
    next class. Tuned head = identity (predicts the hot index): 2/3 right on classes 0-4, 3/3 on 5-9.
    Text head = identity shifted by one (predicts hot index - 1): right only on those 5 odd images.
    Synthetic images: 3 per class, one colour per class; the filter kept the first two of each.
    """
    cfg = config.load("tiny", [f"store.root={root}", "dataset.name=cifar10", f"dataset.root={data_root}"])
    eye = torch.eye(K)
    test_labels = torch.arange(K).repeat_interleave(PER_CLASS)
    hot = test_labels.clone()
    hot[torch.arange(5) * PER_CLASS + 2] = torch.arange(5) + 1
    test = eye[hot]  # (30, K) features, D = K

    features = storage.join(str(root), "features")
    synth_labels = torch.arange(K).repeat_interleave(PER_CLASS)
    synth_uri = storage.join(str(root), "cache", "synthetic.safetensors")
    storage.put_bytes(synth_uri, save({"features": eye[synth_labels], "labels": synth_labels}))
    test_uri = storage.join(str(root), "cache", "test.safetensors")
    storage.put_bytes(test_uri, save({"features": test, "labels": test_labels}))
    storage.put_json(storage.join(features, "features.json"), {"synthetic": synth_uri, "test": test_uri})
    text_weight = eye.roll(-1, dims=0)  # row c = e_{c+1}: predicts the hot index - 1
    storage.put_bytes(
        storage.join(features, "text_head.safetensors"), save({"weight": text_weight, "bias": torch.zeros(K)})
    )
    write_manifest(features, "features", cfg, counts={}, standin=datasets.is_standin(str(data_root)))

    head = storage.join(str(root), "tune")
    about = {"config_digest": cfg.digest(), "best_epoch": 3, "best_val_top1": 0.5, "tune": {"loss": "sce"}}
    storage.put_bytes(
        storage.join(head, "head.safetensors"),
        save({"weight": eye, "bias": torch.zeros(K)}, {HEAD_METADATA_KEY: json.dumps(about)}),
    )
    write_manifest(head, "tune", cfg, counts={})

    selection = storage.join(str(root), "filter")
    kept = torch.nonzero(torch.arange(K * PER_CLASS) % PER_CLASS != 2).flatten()
    storage.put_bytes(
        storage.join(selection, "selection.safetensors"),
        save({"scores": torch.ones(K * PER_CLASS), "kept": kept, "teacher_logits": torch.zeros(len(kept), K)}),
    )
    write_manifest(selection, "filter", cfg, counts={})

    images = storage.join(str(root), "images")
    samples = [
        (
            shards.sample_key(c, 0, j),
            [
                ("png", shards.encode_image(Image.new("RGB", (32, 32), _colour(c)), "png")),
                ("json", shards.encode_json({"class_index": c})),
            ],
        )
        for c in range(K)
        for j in range(PER_CLASS)
    ]
    tars = []
    for t, chunk in enumerate((samples[:15], samples[15:])):
        path = f"shard-0000-of-0001/{t:05d}.tar"
        with storage.writer(storage.join(images, path)) as f:
            shards.write_tar(f, chunk)
        tars.append({"path": path, "count": len(chunk), "sha256": storage.stat(storage.join(images, path)).sha256})
    write_manifest(images, "generate", cfg, counts={"images": len(samples)}, tars=tars)
    return cfg, {"features": features, "head": head, "images": images, "selection": selection}


def test_metrics_match_the_hand_computed_accuracies(tmp_path):
    cfg, inputs = write_upstream(tmp_path, tmp_path / "no-data")
    result = evaluate.run(cfg, **inputs, out=str(tmp_path / "evaluate"), progress=False)
    assert result.tuned_top1 == pytest.approx(25 / 30)
    assert result.zeroshot_top1 == pytest.approx(5 / 30)
    metrics = storage.get_json(result.metrics)
    assert (metrics["tuned_top1"], metrics["zeroshot_top1"]) == (result.tuned_top1, result.zeroshot_top1)
    assert metrics["test"] == 30 and metrics["generated"] == 30 and metrics["kept"] == 20
    rows = metrics["per_class"]
    assert [r["class_name"] for r in rows] == list(datasets.get("cifar10").classes)
    assert [r["tuned_top1"] for r in rows] == pytest.approx([2 / 3] * 5 + [1.0] * 5)
    assert [r["zeroshot_top1"] for r in rows] == pytest.approx([1 / 3] * 5 + [0.0] * 5)
    assert {(r["test"], r["generated"], r["kept"]) for r in rows} == {(3, 3, 2)}
    assert metrics["best_epoch"] == 3 and metrics["loss"] == "sce"
    assert storage.get_json(result.manifest)["counts"] == {"test": 30, "generated": 30, "kept": 20}


def test_per_class_top1_counts_each_class_alone():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 0])
    assert evaluate.per_class_top1(logits, labels, 3) == [0.5, 0.5, None]


def test_report_has_the_standin_notice_only_for_standin_data(tmp_path):
    standin_root = tmp_path / "standin"
    datasets.write_standin("cifar10", str(standin_root), 1, seed=0)
    assert datasets.is_standin(str(standin_root))
    cfg, inputs = write_upstream(tmp_path / "a", standin_root)
    result = evaluate.run(cfg, **inputs, out=str(tmp_path / "a" / "ev"), progress=False)
    report = storage.get_bytes(result.report).decode()
    assert "stand-in data" in report.lower()
    assert report.splitlines()[2] == evaluate.STANDIN_NOTICE  # right under the title
    assert storage.get_json(str(tmp_path / "a" / "ev" / "metrics.json"))["standin"] is True

    cfg, inputs = write_upstream(tmp_path / "b", tmp_path / "real-data-elsewhere")
    result = evaluate.run(cfg, **inputs, out=str(tmp_path / "b" / "ev"), progress=False)
    report = storage.get_bytes(result.report).decode()
    assert "stand-in" not in report.lower() and not result.standin
    assert "| airplane | 3 | 33.33 | 66.67 | 3 | 2 |" in report
    assert "![kept and dropped synthetic images](grid.png)" in report


def test_grid_is_a_png_with_kept_and_dropped_images_of_each_class(tmp_path):
    cfg, inputs = write_upstream(tmp_path, tmp_path / "no-data")
    result = evaluate.run(cfg, **inputs, out=str(tmp_path / "evaluate"), progress=False)
    data = storage.get_bytes(result.grid)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    Image.open(io.BytesIO(data)).verify()
    grid = Image.open(io.BytesIO(data)).convert("RGB")
    assert grid.size == evaluate.render_grid([("x", [], [])] * K).size

    cell = evaluate.THUMB + 8
    dropped_x = 140 + evaluate.GRID_PER_KIND * cell + cell // 2
    for c in range(K):
        y = 20 + c * cell + cell // 2
        assert grid.getpixel((140 + cell // 2, y)) == _colour(c)  # first kept image
        assert grid.getpixel((140 + cell + cell // 2, y)) == _colour(c)  # second kept image
        assert grid.getpixel((140 + 2 * cell + cell // 2, y)) == (255, 255, 255)  # only two kept
        assert grid.getpixel((dropped_x + cell // 2, y)) == _colour(c)  # the dropped image


def test_grid_rows_pick_the_first_kept_and_dropped_rows_of_the_first_classes():
    labels = torch.tensor([0, 1, 0, 0, 1, 2, 0])
    kept = torch.tensor([0, 2, 4, 6])
    rows = evaluate.grid_rows(labels, kept, 3, classes=2, per_kind=2)
    assert rows == {0: ([0, 2], [3]), 1: ([4], [1])}


def test_a_head_that_does_not_fit_the_test_features_is_refused(tmp_path):
    cfg, inputs = write_upstream(tmp_path, tmp_path / "no-data")
    uri = storage.join(inputs["head"], "head.safetensors")
    storage.put_bytes(uri, save({"weight": torch.zeros(K, K + 1), "bias": torch.zeros(K)}, {HEAD_METADATA_KEY: "{}"}))
    with pytest.raises(MissingDataError, match="do not fit"):
        evaluate.run(cfg, **inputs, out=str(tmp_path / "evaluate"), progress=False)


@pytest.mark.timeout(180)
def test_tune_and_evaluate_chain_on_the_real_upstream_stages(tmp_path):
    from synk8s.stages.synth import generate, prompts
    from synk8s.stages.zeroshot import features, tune
    from synk8s.stages.zeroshot import filter as filter_stage

    cfg = config.load(
        "tiny",
        [
            f"store.root={tmp_path / 'store'}",
            f"dataset.root={tmp_path / 'data' / '{name}'}",
            "dataset.name=cifar10",
            "prompts.mode=B",
            "generate.images_per_class=2",
            "generate.num_shards=1",
            "filter.enabled=false",
            "tune.epochs=2",
        ],
    )
    run = tmp_path / "store" / "run"
    out = {name: str(run / name) for name in ("prompts", "images", "filter", "features", "tune", "evaluate")}
    prompts.run(cfg, out=out["prompts"])
    generate.run(cfg, prompts=out["prompts"], out=out["images"])
    generate.collect(cfg, out=out["images"])
    filter_stage.run(cfg, images=out["images"], out=out["filter"], progress=False)
    features.run(cfg, images=out["images"], out=out["features"], progress=False)
    tuned = tune.run(cfg, features=out["features"], selection=out["filter"], out=out["tune"], progress=False)
    assert tuned.train + tuned.val == 20 and tuned.val == 10  # 2 per class: one of each held out
    result = evaluate.run(
        cfg,
        features=out["features"],
        head=out["tune"],
        images=out["images"],
        selection=out["filter"],
        out=out["evaluate"],
        progress=False,
    )
    metrics = storage.get_json(result.metrics)
    assert result.standin and metrics["generated"] == metrics["kept"] == 20
    assert metrics["test"] == sum(row["test"] for row in metrics["per_class"]) > 0
    assert 0.0 <= result.zeroshot_top1 <= 1.0 and 0.0 <= result.tuned_top1 <= 1.0
    assert storage.get_bytes(result.report).decode().splitlines()[2] == evaluate.STANDIN_NOTICE
    Image.open(io.BytesIO(storage.get_bytes(result.grid))).verify()
