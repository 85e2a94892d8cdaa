"""The paper profile's defaults follow the paper and its official code; the old behaviour stays a switch."""

import json

import pytest
import torch

from synk8s import config, datasets, storage
from synk8s.stages.synth import prompts
from synk8s.stages.synth.prompt_text import le_input
from synk8s.stages.synth.prompts import ClassNameMatcher, SentencePicker
from synk8s.stages.zeroshot.filter import select

pytestmark = pytest.mark.timeout(60)

CIFAR100 = datasets.get("cifar100").classes

# Sentences an LE model writes for a class that a whole-word matcher finds other CIFAR-100 names in.
CONTEXT = [
    ("bicycle", "a man rides a bicycle down the road", ["man", "road"]),
    ("apple", "apple slices on a plain white plate", ["plain", "plate"]),
    ("boy", "a boy can play", ["can"]),
]


@pytest.mark.parametrize(("own", "sentence", "named"), CONTEXT)
def test_le_keeps_sentences_that_mention_other_classes_in_the_paper_profile(own, sentence, named):
    cfg = config.load("paper")
    matcher = ClassNameMatcher(CIFAR100)
    picker = SentencePicker(CIFAR100.index(own), matcher, 1, cfg.prompts.drop_other_classes)
    picker.offer(sentence)
    assert picker.kept == [sentence]
    assert sorted(picker.finish().named_classes) == named  # still counted in stats.json


@pytest.mark.parametrize(("own", "sentence", "named"), CONTEXT)
def test_dropping_other_class_sentences_is_an_ablation_that_keeps_context_words(own, sentence, named):
    # The ablation drops a sentence only when another class heads a noun phrase it shows (synk8s.stages.synth.noun_phrases).
    cfg = config.load("paper", ["prompts.drop_other_classes=true"])
    picker = SentencePicker(CIFAR100.index(own), ClassNameMatcher(CIFAR100), 1, cfg.prompts.drop_other_classes)
    picker.offer(sentence)
    assert picker.kept == [sentence]
    assert sorted(picker.finish().named_classes) == named


def test_le_input_and_sampling_match_the_official_code():
    cfg = config.load("paper")
    assert le_input("maple_tree", cfg.prompts.le_prefix) == "a maple tree"
    assert cfg.prompts.top_p == 1.0


def test_b_is_one_plain_prompt_per_class_in_the_paper_profile(tmp_path):
    cfg = config.load("paper", ["dataset.name=cifar100", "prompts.mode=B", f"store.root={tmp_path}"])
    result = prompts.run(cfg, out=str(tmp_path / "b"))
    lines = storage.get_bytes(result.prompts_uri).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(CIFAR100)
    assert records[0]["prompt"] == "a photo of a apple."


def test_eurosat_le_prompts_carry_the_official_prefix_and_label_names(tmp_path):
    cfg = config.load(
        "tiny",
        ["dataset.name=eurosat", "prompts.mode=LE", "prompts.sentences_per_class=1", "prompts.oversample=1.0",
         "prompts.max_new_tokens=4"],
    )
    result = prompts.run(cfg, out=str(tmp_path / "on"))
    records = [json.loads(line) for line in storage.get_bytes(result.prompts_uri).decode().splitlines()]
    assert records and all(r["prompt"].startswith("a centered satellite photo of ") for r in records)
    off = prompts.run(config.with_overrides(cfg, ["prompts.dataset_prefix=false"]), out=str(tmp_path / "off"))
    plain = [json.loads(line) for line in storage.get_bytes(off.prompts_uri).decode().splitlines()]
    assert plain and not any(r["prompt"].startswith("a centered satellite photo of ") for r in plain)
    # The LE model read the official code's EuroSAT label names (src/LE.py), and the registry's without the switch.
    on_inputs = [c["le_input"] for c in storage.get_json(result.stats_uri)["per_class"]]
    off_inputs = [c["le_input"] for c in storage.get_json(off.stats_uri)["per_class"]]
    assert on_inputs[:3] == ["a Annual Crop Land", "a Forest", "a Herbaceous Vegetation Land"]
    assert on_inputs[-1] == "a Sea or Lake"
    assert off_inputs[:3] == ["a annual crop land", "a forest", "a brushland or shrubland"]


def test_cf_keep_n_fills_each_class_to_n():
    # Class 0: one image above 0.5 -> the top 3 of the class, two of them below the threshold.
    # Class 1: four images above 0.5 -> a random 3 of those four. Class 2: 0.5 exactly fails the strict test.
    scores = torch.tensor([0.9, 0.2, 0.4, 0.1, 0.3, 0.6, 0.7, 0.8, 0.9, 0.1, 0.5, 0.5, 0.5])
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2])
    kept = select(scores, labels, threshold=0.5, keep_per_class=3, keep_mode="fill", seed=0, strict=True).tolist()
    assert [i for i in kept if i < 5] == [0, 2, 4]
    mine = [i for i in kept if 5 <= i < 10]
    assert len(mine) == 3 and set(mine) <= {5, 6, 7, 8}
    assert [i for i in kept if i >= 10] == [10, 11, 12]  # none passes: filled with the top 3
    passing = select(scores, labels, threshold=0.5, keep_per_class=None, keep_mode="fill", seed=0, strict=True)
    assert 10 not in passing.tolist() and 0 in passing.tolist()
    loose = select(scores, labels, threshold=0.5, keep_per_class=None, keep_mode="fill", seed=0, strict=False)
    assert {10, 11, 12} <= set(loose.tolist())


def test_the_paper_profile_says_which_generator_stands_in_for_glide():
    from importlib import resources

    text = resources.files("synk8s").joinpath("profiles", "paper.yaml").read_text()
    assert "GLIDE" in text and config.load("paper").filter.keep_mode == "fill" and config.load("paper").filter.strict


def test_feature_cache_key_names_the_weights_and_open_clip_version():
    import dataclasses

    import open_clip

    from synk8s.models import load_clip
    from synk8s.stages.zeroshot import feature_keys

    clip = load_clip("tiny-clip", seed=0)
    parts = feature_keys.key_parts(clip, "float32", {"kind": "test"})
    assert parts["open_clip"] == open_clip.__version__
    # Same identity string, other weights: another key.
    other = dataclasses.replace(load_clip("tiny-clip", seed=1), identity=clip.identity)
    changed = feature_keys.key_parts(other, "float32", {"kind": "test"})
    assert changed["clip"] == parts["clip"] and feature_keys.cache_key(changed) != feature_keys.cache_key(parts)


def test_text_head_templates_come_from_the_official_set_where_it_has_one():
    from synk8s.stages.zeroshot.head_templates import head_templates

    assert head_templates(config.load("paper", ["dataset.name=eurosat"])) == (
        ("a centered satellite photo of {}.",),
        "paper",
    )
    seven, source = head_templates(config.load("paper", ["dataset.name=imagenet"]))
    assert (len(seven), source) == (7, "paper")
    assert head_templates(config.load("paper", ["dataset.name=cifar10"]))[1] == "clip"  # no official set
    crossed, source = head_templates(config.load("paper", ["dataset.name=imagenet", "features.templates=clip"]))
    assert (len(crossed), source) == (80, "clip")


def test_the_evaluation_report_names_the_generator_substitution():
    from synk8s.stages.zeroshot.evaluate import render_report

    metrics = {"dataset": "cifar10", "standin": False, "zeroshot_top1": 0.5, "tuned_top1": 0.6, "loss": "sce",
               "generator": "sd15", "best_epoch": 3, "best_val_top1": 0.7, "test": 10, "generated": 20, "kept": 15,
               "per_class": []}
    text = render_report(metrics)
    assert "Generator: sd15; the paper generated with GLIDE (64 px base + 256 px upsampler" in text


@pytest.mark.parametrize(
    ("dataset", "count", "first"),
    [
        # The official classifier-tuning templates (src/templates/transfer_ds_template.py), checked set by set.
        ("food101", 1, "a photo of a {}, a type of food."),
        ("sun397", 2, "a photo of a {}."),
        ("stanford_cars", 8, "a photo of a {}."),
        ("fgvc_aircraft", 1, "a photo of a {}, a type of aircraft."),
        ("dtd", 1, "{} texture."),
        ("cifar100", 18, "a photo of a {}."),
        ("birdsnap", 1, "a photo of a {}, a type of bird."),
    ],
)
def test_text_head_template_sets_match_the_official_code(dataset, count, first):
    from synk8s.stages.zeroshot.head_templates import head_templates

    templates, _ = head_templates(config.load("paper", [f"dataset.name={dataset}"]))
    assert (len(templates), templates[0]) == (count, first)
