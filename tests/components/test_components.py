"""Every component's ``python_func`` on tiny data, with fake Metrics and Markdown artifacts.

The components run in the order the pipeline wires them, each taking the outputs the previous ones
returned, so the adapters rendered from the stage table are exercised without kfp.local.
"""

import json
from pathlib import Path

import pytest

from synk8s import config
from synk8s.components.params import pipeline_arguments
from synk8s.components.stages import make_components
from synk8s.errors import MissingDataError
from synk8s.stages.table import TABLE, run_dir, stage_dir

pytestmark = pytest.mark.timeout(120)

OVERRIDES = [
    "dataset.name=cifar10",
    "prompts.mode=B",
    "generate.images_per_class=2",
    "generate.num_shards=2",
    "filter.threshold=0.0",  # keep every image: tune needs two per class to validate on
    "tune.epochs=1",
    "fewshot.strategy=RF",  # the few-shot part reads the zero-shot images, CF and features, then RF
]


def _declared_outputs_exist(name: str, folder: str) -> None:
    for pattern in [*TABLE.get(name).outputs, "manifest.json"]:
        assert list(Path(folder).glob(pattern)), f"{name}: nothing matches {pattern} in {folder}"


def test_the_components_chain_on_tiny_data(tmp_path, monkeypatch, artifact):
    monkeypatch.delenv("KFP_POD_NAME", raising=False)
    cfg = config.load("tiny", [*OVERRIDES, f"store.root={tmp_path / 'store'}"])
    comps = make_components(cfg)
    planned = comps.plan.python_func(**pipeline_arguments(cfg))
    run = planned.run_dir
    assert run == run_dir(cfg)
    common = {"config_json": planned.config_json, "run_dir": run}

    metrics = artifact("prompts")
    prompts = comps.stages["prompts"].python_func(**common, metrics=metrics)
    assert prompts == stage_dir(run, "prompts", cfg)
    written = Path(prompts, "prompts.jsonl").read_text().splitlines()
    assert metrics.metadata["prompts"] == len(written) >= 10 and metrics.metadata["classes"] == 10

    items = comps.shard_lists["generate"].python_func(**common, prompts=prompts)
    assert [item["shard"] for item in items] == [0, 1] and {item["prompts"] for item in items} == {prompts}
    shard_metrics = [artifact(f"generate-{item['shard']}") for item in items]
    shards = [comps.stages["generate"].python_func(**item, metrics=m) for item, m in zip(items, shard_metrics)]
    images = stage_dir(run, "generate", cfg)
    assert shards == [images, images]
    assert [m.metadata["images"] for m in shard_metrics] == [10, 10]
    assert len(list(Path(images).glob("shard-*-of-0002/*.tar"))) == 2

    with pytest.raises(MissingDataError, match="got 1 finished generate shards, expected 2"):
        comps.collects["generate"].python_func(
            **common, shards=shards[:1], metrics=artifact("short"), folder=artifact("x")
        )
    metrics, dataset = artifact("collect"), artifact("images")
    assert comps.collects["generate"].python_func(**common, shards=shards, metrics=metrics, folder=dataset) == images
    assert metrics.metadata["images"] == 20 and metrics.metadata["tars"] == 2
    listing = json.loads(dataset.read())  # the images as a Dataset artifact: the folder's listing
    assert listing["store_uri"] == images == dataset.metadata["store_uri"]
    assert sum(f["name"].endswith(".tar") for f in listing["files"]) == 2
    _declared_outputs_exist("generate", images)

    metrics = artifact("filter")
    selection = comps.stages["filter"].python_func(**common, images=images, metrics=metrics)
    assert (metrics.metadata["generated"], metrics.metadata["kept"]) == (20, 20)
    test = comps.stages["test_features"].python_func(**common, metrics=artifact("test_features"))
    features = comps.stages["features"].python_func(**common, images=images, test=test, metrics=artifact("features"))
    metrics = artifact("tune")
    model = artifact("head")
    head = comps.stages["tune"].python_func(
        **common, features=features, selection=selection, metrics=metrics, folder=model
    )
    assert "head.safetensors" in {f["name"] for f in json.loads(model.read())["files"]}
    assert metrics.metadata["train"] + metrics.metadata["val"] == 20 and metrics.metadata["epochs"] == 1

    metrics, model = artifact("export"), artifact("classifier")
    exported = comps.stages["export"].python_func(**common, features=features, head=head, metrics=metrics, folder=model)
    listing = json.loads(model.read())  # the classifier folder as a Model artifact
    assert listing["store_uri"] == exported == model.metadata["store_uri"]
    assert {"classifier/manifest.json", "classifier/model.onnx"} <= {f["name"] for f in listing["files"]}
    assert (metrics.metadata["classes"], metrics.metadata["dim"]) == (10, 32)

    metrics, report, grid, confusion = artifact("evaluate"), artifact("report"), artifact("grid"), artifact("cm")
    report_uri = comps.stages["evaluate"].python_func(
        **common, features=features, head=head, images=images, selection=selection, metrics=metrics, report=report,
        grid=grid, confusion=confusion,
    )
    evaluate = stage_dir(run, "evaluate", cfg)
    assert report_uri == str(Path(evaluate) / "report.json")
    summary = json.loads(Path(report_uri).read_text())
    assert summary["counts"] == {"prompts": len(written), "generated": 20, "kept": 20, "test": metrics.metadata["test"]}
    assert summary["tuned_top1"] == metrics.metadata["tuned_top1"]
    assert set(summary["seconds"]) == {"prompts", "generate", "filter", "test_features", "features", "tune", "evaluate"}
    markdown = report.read()
    assert markdown.startswith("# synk8s evaluation: cifar10") and "base64" not in markdown
    assert "the task's `grid` artifact" in markdown
    assert Path(grid.path).read_bytes().startswith(b"\x89PNG") and grid.metadata["file"] == "grid.png"
    matrix = confusion.metadata["confusionMatrix"]
    assert len(matrix["categories"]) == 10 and len(matrix["matrix"]) == 10
    assert sum(map(sum, matrix["matrix"])) == metrics.metadata["test"]
    correct = sum(matrix["matrix"][c][c] for c in range(10))
    assert correct / metrics.metadata["test"] == pytest.approx(metrics.metadata["tuned_top1"])

    for name, folder in (("prompts", prompts), ("filter", selection), ("test_features", test), ("features", features),
                         ("tune", head), ("evaluate", evaluate), ("export", exported)):  # fmt: skip
        assert folder == stage_dir(run, name, cfg)
        _declared_outputs_exist(name, folder)

    # The few-shot components of strategy RF on the same images (the config picks RF's folders).
    assert cfg.fewshot.strategy == "RF"
    metrics = artifact("split")
    split = comps.stages["split"].python_func(**common, metrics=metrics)
    assert metrics.metadata["images"] == 10 * cfg.fewshot.shots_per_class
    metrics = artifact("realfilter")
    kept = comps.stages["realfilter"].python_func(
        **common, split=split, features=features, selection=selection, metrics=metrics
    )
    assert metrics.metadata["cf_kept"] == 20 and metrics.metadata["kept"] + metrics.metadata["dropped"] == 20
    metrics = artifact("fewshot_tune")
    tuned = comps.stages["fewshot_tune"].python_func(
        **common, split=split, features=features, selection=kept, images=images, metrics=metrics
    )
    rf_kept = json.loads(Path(kept, "stats.json").read_text())["kept"]
    assert metrics.metadata["train"] + metrics.metadata["val"] == rf_kept
    metrics = artifact("fewshot_evaluate")
    fewshot_report = comps.stages["fewshot_evaluate"].python_func(
        **common, features=features, tuned=tuned, metrics=metrics
    )
    few = json.loads(Path(fewshot_report).read_text())
    assert (few["strategy"], few["top1"]["ct_syn"]) == ("RF", metrics.metadata["ct_syn_top1"])
    for name, folder in (("split", split), ("realfilter", kept), ("fewshot_tune", tuned)):
        assert folder == stage_dir(run, name, cfg)
        _declared_outputs_exist(name, folder)
    _declared_outputs_exist("fewshot_evaluate", stage_dir(run, "fewshot_evaluate", cfg))


def test_a_stage_component_without_its_input_names_the_stage_to_run(tmp_path, artifact):
    cfg = config.load("tiny", [*OVERRIDES, f"store.root={tmp_path}"])
    comps = make_components(cfg)
    run = run_dir(cfg)
    with pytest.raises(MissingDataError, match="run `synk8s stage features` first"):
        comps.stages["tune"].python_func(
            config_json=cfg.model_dump_json(),
            run_dir=run,
            features=stage_dir(run, "features", cfg),
            selection=stage_dir(run, "filter", cfg),
            metrics=artifact("tune"),
            folder=artifact("head"),
        )
