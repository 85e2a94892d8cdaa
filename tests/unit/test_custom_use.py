"""How a run uses your own label space: descriptions in B prompts, aliases in the other-class check,
your images read from ``s3://``, and reports of a run without a real test set."""

import json
from pathlib import Path

import pytest
from rich.console import Console

from synk8s import config, datasets, realdata, storage
from synk8s.cli.summary import summary_table
from synk8s.datasets import custom
from synk8s.datasets.sample_folder import write_sample_folder
from synk8s.reports.results import aggregate
from synk8s.stages.synth import prompts
from synk8s.stages.synth.prompt_text import ClassNameMatcher
from synk8s.stages.synth.prompts import SentencePicker
from synk8s.stages.table import TABLE

pytestmark = pytest.mark.timeout(120)

NAMES = ["forklift", "pallet jack", "hard hat"]
CLASSES_YAML = (
    "classes:\n  - forklift\n  - name: pallet jack\n    description: a hand-pushed truck with two forks\n"
    "    aliases: [pump truck]\n  - hard hat\n"
    'templates: ["a photo of a {}.", "a warehouse photo of a {}."]\n'
)


def _config(tmp_path, images: str | None, *more: str):
    classes = tmp_path / "classes.yaml"
    classes.write_text(CLASSES_YAML)
    store = str(tmp_path / "store")
    return config.load("tiny", [f"store.root={store}", *custom.overrides(str(classes), images, store), *more])


def test_b_prompts_add_a_class_description_after_its_name(tmp_path):
    cfg = _config(tmp_path, None, "prompts.mode=B", "prompts.b_templates=all")
    prompts.run(cfg, out=str(tmp_path / "prompts"))
    written = [json.loads(line) for line in (tmp_path / "prompts" / "prompts.jsonl").open()]
    by_class = {}
    for record in written:
        by_class.setdefault(record["class_name"], []).append(record["prompt"])
    assert by_class["pallet jack"] == [
        "a photo of a pallet jack, a hand-pushed truck with two forks.",
        "a warehouse photo of a pallet jack, a hand-pushed truck with two forks.",
    ]
    assert by_class["forklift"] == ["a photo of a forklift.", "a warehouse photo of a forklift."]


def test_rg_template_prompts_add_a_class_description_after_its_name(tmp_path):
    from synk8s.stages.fewshot import guided

    cfg = _config(tmp_path, None)
    records = guided.rg_prompts(cfg, str(tmp_path / "never-read"), datasets.info(cfg.dataset).classes)
    assert [r["prompt"] for r in records] == [
        "a photo of a forklift.", "a photo of a pallet jack, a hand-pushed truck with two forks.", "a photo of a hard hat.",
    ]  # fmt: skip


def test_an_alias_names_its_class_in_the_other_class_check():
    matcher = ClassNameMatcher(NAMES, [(), ("pump truck",), ()])
    assert matcher.other_classes("a forklift lifts a pump truck", 0) == ["pallet jack"]
    assert matcher.shown_classes("a forklift next to two pump trucks", 0) == ["pallet jack"]
    assert matcher.other_classes("a pump truck beside a pallet jack", 1) == []  # its own alias is its own name
    assert ClassNameMatcher(NAMES).other_classes("a forklift lifts a pump truck", 0) == []  # without the alias
    picker = SentencePicker(0, matcher, wanted=2, drop_other_classes=True)
    picker.offer("a forklift next to a pump truck")
    picker.offer("a forklift in a warehouse")
    assert picker.kept == ["a forklift in a warehouse"]
    assert picker.stats.dropped_other_class == 1


def test_images_on_s3_are_split_in_the_store_and_encoded(tmp_path, s3_env, monkeypatch):
    monkeypatch.setenv(realdata.DATA_CACHE_DIR_ENV, str(tmp_path / "cache"))
    local = write_sample_folder(tmp_path / "upload", NAMES, per_class=3)
    prefix = storage.join(s3_env, "own", "imgs")
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        storage.put_file(storage.join(prefix, path.relative_to(local).as_posix()), path)
    cfg = _config(tmp_path, prefix)
    assert cfg.dataset.images == prefix
    run = TABLE.run_dir(cfg, None)
    done = TABLE.execute("test_features", cfg, run)
    saved = storage.get_json(storage.join(prefix, "synk8s-split.json"))  # drawn once, kept beside the images
    assert len(saved["test"]) == len(NAMES)  # round(0.3 * 3) = 1 test image per class
    assert done.result.test == len(NAMES)
    listing = json.loads(Path(done.result.features).read_text())
    assert set(listing) == {"test"}


def test_test_features_without_images_write_the_text_head_and_no_test_set(tmp_path):
    cfg = _config(tmp_path, None)
    assert not datasets.has_test_set(cfg.dataset)
    assert datasets.has_test_set(config.load("tiny", ["dataset.name=cifar10"]).dataset)
    done = TABLE.execute("test_features", cfg, TABLE.run_dir(cfg, None))
    assert json.loads(Path(done.result.features).read_text()) == {}
    assert done.result.test == 0
    assert Path(done.result.text_head).stat().st_size > 0


def _report(seed: int, tuned: float | None) -> dict:
    measured = {"zeroshot_top1": None if tuned is None else 0.2, "tuned_top1": tuned}
    extra = {} if tuned is not None else {"synthetic_val_tuned_top1": 0.75, "notice": datasets.NO_TEST_NOTICE}
    return {"dataset": "custom", "profile": "tiny", "seed": seed, "config_digest": "d", "setting_digest": "s",
            "setting": {"prompts": "B", "filter": False, "loss": "ce"}, **measured, **extra}


def test_summary_and_results_take_a_report_without_test_accuracy():
    console = Console(record=True, width=400)
    console.print(summary_table(_report(0, None), "report.json"))
    shown = console.export_text()
    assert "synthetic_val_tuned_top1 │ 75.00 %" in shown
    assert "tuned_top1 " not in shown.replace("synthetic_val_tuned_top1", "")  # null: no row
    assert "no real test set" in shown
    rows = aggregate([_report(0, None), _report(1, 0.5)])
    assert [row.seeds for row in rows] == [(1,)]  # the run without a test set is left out


def test_finetune_trains_on_the_own_train_split_and_tests_on_its_test_split(tmp_path):
    from synk8s.errors import UsageError
    from synk8s.stages.pretraining import finetune

    images = write_sample_folder(tmp_path / "imgs", NAMES, per_class=4)
    settings = ["pretrain.finetune.dataset=custom", "pretrain.finetune.init=scratch", "pretrain.finetune.epochs=1",
                "pretrain.finetune.batch_size=3"]
    done = finetune.run(_config(tmp_path, str(images), *settings), out=str(tmp_path / "ft"))
    saved = json.loads((images / "synk8s-split.json").read_text())
    assert (done.train, done.test) == (4 * len(NAMES) - len(saved["test"]), len(saved["test"]))
    assert json.loads((tmp_path / "ft" / "metrics.json").read_text())["dataset"] == "custom"
    with pytest.raises(UsageError, match="pretrain.finetune.dataset=custom fine-tunes on your own images"):
        _config(tmp_path, None, *settings)
