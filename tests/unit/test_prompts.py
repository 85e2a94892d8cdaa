import json

import pytest

from synk8s import config, datasets, storage
from synk8s.stages.synth import prompts
from synk8s.stages.synth.prompts import ClassNameMatcher, SentencePicker

pytestmark = pytest.mark.timeout(120)


def _cfg(*overrides: str) -> config.ExperimentConfig:
    return config.load("tiny", ["dataset.name=cifar10", *overrides])


def _lines(uri: str) -> list[dict]:
    return [json.loads(line) for line in storage.get_bytes(uri).decode().splitlines()]


# ----------------------------------------------------------------------------- B


def test_basic_prompts_are_one_plain_prompt_per_class_by_default(tmp_path):
    info = datasets.get("cifar10")
    result = prompts.run(_cfg("prompts.mode=B"), out=str(tmp_path))
    records = _lines(result.prompts_uri)
    assert [r["prompt"] for r in records] == [info.templates[0].format(name) for name in info.classes]
    assert {r["prompt_index"] for r in records} == {0}


def test_basic_prompts_crossed_are_every_template_times_every_class(tmp_path):
    cfg = _cfg("prompts.mode=B", "prompts.b_templates=all")
    info = datasets.get("cifar10")
    result = prompts.run(cfg, out=str(tmp_path))
    records = _lines(result.prompts_uri)
    assert result.prompts == len(records) == len(info.classes) * len(info.templates)
    assert [(r["class_index"], r["prompt_index"]) for r in records] == sorted(
        (c, p) for c in range(len(info.classes)) for p in range(len(info.templates))
    )
    first = records[len(info.templates)]  # class 1, template 0
    assert first["class_name"] == info.classes[1] and first["source"] == "B"
    assert first["prompt"] == info.templates[0].format(info.classes[1])
    stats = storage.get_json(result.stats_uri)
    assert stats["mode"] == "B"
    assert all(s["kept"] == len(info.templates) and s["shortfall"] == 0 for s in stats["per_class"])
    manifest = storage.get_json(result.manifest_uri)
    assert manifest["stage"] == "prompts" and manifest["counts"]["prompts"] == result.prompts


def test_multi_word_class_names_fill_templates_with_spaces():
    records, _ = prompts.template_prompts(["maple_tree"], ["a photo of a {}.", "{} in the wild"])
    assert [r["prompt"] for r in records] == ["a photo of a maple tree.", "maple tree in the wild"]
    assert [r["prompt_index"] for r in records] == [0, 1]


# ----------------------------------------------------------------------------- other-class matching


MATCH_CLASSES = ["maple tree", "tree", "oak tree", "cat", "bus", "crane", "crane", "sea", "ski (sport)"]


@pytest.mark.parametrize(
    ("own", "sentence", "named"),
    [
        (0, "a maple tree in an autumn park", []),  # 'tree' is part of the own name
        (0, "a maple tree beside a tree", ["tree"]),  # the second 'tree' stands alone
        (0, "a maple tree next to an oak tree", ["oak tree"]),
        (0, "A MAPLE-TREE and a Cat", ["cat"]),  # case and hyphen
        (1, "a maple tree on a hill", ["maple tree"]),  # the more specific class is named
        (1, "a tall tree", []),
        (3, "two cats chase the buses", ["bus"]),  # regular plurals
        (3, "a catalog of seashells", []),  # whole words only
        (3, "the cat swims in the seas", ["sea"]),
        (5, "a crane lifts steel", []),  # classes sharing a name never flag each other
        (3, "a cat watching ski (sport) on tv", ["ski (sport)"]),  # names ending in punctuation
        (4, "a bus by the sea with a cat", ["cat", "sea"]),
    ],
)
def test_other_class_names_are_found_outside_the_own_name(own, sentence, named):
    assert ClassNameMatcher(MATCH_CLASSES).other_classes(sentence, own) == named


def test_normalisation_drops_control_characters_and_collapses_whitespace():
    assert prompts.normalise_sentence("  a\x00 cat\n\t sits\x0c ") == "a cat sits"
    assert prompts.normalise_sentence("\x18\x19 \n") == ""
    assert prompts.dedupe_key("A  Cat sits") == prompts.dedupe_key("a cat SITS")


def test_picker_counts_every_kind_of_refusal_and_stops_when_full():
    picker = SentencePicker(3, ClassNameMatcher(MATCH_CLASSES), wanted=2, drop_other_classes=True)
    for raw in ["a cat naps", "\x00 \n", "A  CAT naps", "a cat next to a bus", "a cat next to a bus", "a black cat",
                "more cats"]:
        picker.offer(raw)
    stats = picker.finish()
    assert picker.kept == ["a cat naps", "a black cat"]
    assert (stats.drawn, stats.empty, stats.duplicates, stats.dropped_other_class) == (7, 1, 2, 1)
    assert stats.named_classes == {"bus": 1}
    assert (stats.kept, stats.shortfall) == (2, 0)
    assert stats.as_dict()["unused"] == 1  # 'more cats' came after the class was full


def test_picker_keeps_other_class_sentences_when_dropping_is_off():
    picker = SentencePicker(3, ClassNameMatcher(MATCH_CLASSES), wanted=5, drop_other_classes=False)
    picker.offer("a cat next to a bus")
    stats = picker.finish()
    assert picker.kept == ["a cat next to a bus"]
    assert stats.named_classes == {"bus": 1} and stats.dropped_other_class == 0
    assert stats.shortfall == 4


# ----------------------------------------------------------------------------- LE with tiny T5


def test_language_enhancement_is_seeded_distinct_and_counted(tmp_path):
    cfg = _cfg("prompts.mode=LE", "prompts.sentences_per_class=3")
    first = prompts.run(cfg, out=str(tmp_path / "a"))
    second = prompts.run(cfg, out=str(tmp_path / "b"))
    assert storage.get_bytes(first.prompts_uri) == storage.get_bytes(second.prompts_uri)
    records = _lines(first.prompts_uri)
    assert {r["source"] for r in records} == {"LE"}
    stats = storage.get_json(first.stats_uri)["per_class"]
    for c, s in enumerate(stats):
        mine = [r["prompt"] for r in records if r["class_index"] == c]
        assert [r["prompt_index"] for r in records if r["class_index"] == c] == list(range(len(mine)))
        assert all(p and p == prompts.normalise_sentence(p) for p in mine)
        assert len({prompts.dedupe_key(p) for p in mine}) == len(mine) == s["kept"]
        assert s["drawn"] == s["empty"] + s["duplicates"] + s["dropped_other_class"] + s["kept"] + s["unused"]
        assert s["drawn"] >= 6  # at least one round of ceil(3 * oversample 2.0)
    other_seed = prompts.run(config.with_overrides(cfg, ["seed=1"]), out=str(tmp_path / "c"))
    assert storage.get_bytes(other_seed.prompts_uri) != storage.get_bytes(first.prompts_uri)


def test_language_enhancement_records_a_shortfall_after_the_last_round(tmp_path):
    # One new token per sentence allows fewer than 100 distinct printable sentences.
    cfg = _cfg(
        "prompts.mode=LE", "prompts.sentences_per_class=120", "prompts.oversample=1.0", "prompts.max_new_tokens=1"
    )
    result = prompts.run(cfg, out=str(tmp_path))
    stats = storage.get_json(result.stats_uri)["per_class"]
    assert result.short_classes == len(stats) == 10
    for s in stats:
        assert s["rounds"] == prompts.MAX_ROUNDS and s["drawn"] == 120 * prompts.MAX_ROUNDS
        assert 0 < s["kept"] < 120 and s["shortfall"] == 120 - s["kept"]
    assert storage.get_json(result.manifest_uri)["counts"]["short_classes"] == 10


# ----------------------------------------------------------------------------- batched LE


def _le(cfg, batch_rows):
    from synk8s.models import load_le

    model, tokenizer = load_le(cfg.models.le, seed=cfg.seed)
    classes = list(datasets.get(cfg.dataset.name).classes)
    records, stats = prompts.enhanced_prompts(cfg, classes, model, tokenizer, batch_rows=batch_rows)
    return records, [s.as_dict() for s in stats]


@pytest.mark.timeout(60)
def test_batched_language_enhancement_does_not_depend_on_the_batch_size():
    # One new token per sentence repeats often, so classes need different numbers of rounds.
    cfg = _cfg("prompts.mode=LE", "prompts.sentences_per_class=5", "prompts.oversample=1.0", "prompts.max_new_tokens=1")
    small_records, small_stats = _le(cfg, batch_rows=3)  # 3 rows per generate call, straddling classes
    records, stats = _le(cfg, batch_rows=prompts.LE_BATCH)  # every class of a round in one call
    assert records == small_records and stats == small_stats
    rounds = [s["rounds"] for s in stats]
    assert len(set(rounds)) > 1, rounds  # some classes were full before others and left the later batches
    assert all(s["drawn"] == 5 * s["rounds"] for s in stats)
    assert all(s["kept"] == 5 for s in stats if s["rounds"] < prompts.MAX_ROUNDS)


@pytest.mark.timeout(30)
def test_the_keyed_sampler_draws_each_row_from_its_own_seed_and_the_warped_softmax():
    import torch

    from synk8s.stages.synth.le_sampling import KeyedSampler

    cfg = _cfg("prompts.top_k=3", "prompts.temperature=2.0")
    logits = torch.tensor([2.0, 1.0, 0.0, 3.0, -1.0])  # top 3 at temperature 2: tokens 3, 0, 1
    rows = 20000
    seeds = torch.arange(rows, dtype=torch.int64) * 7919
    decoder = torch.zeros((rows, 4), dtype=torch.int64)  # (B, L): the fourth step
    picked = KeyedSampler(seeds, cfg.prompts)(decoder, logits.expand(rows, 5).clone()).argmax(dim=1)
    counts = torch.bincount(picked, minlength=5).double() / rows
    expected = torch.zeros(5, dtype=torch.float64)
    expected[[3, 0, 1]] = torch.softmax(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64) / 2.0, dim=0)
    assert torch.allclose(counts, expected, atol=0.015)
    half = KeyedSampler(seeds[::2], cfg.prompts)(decoder[::2], logits.expand(rows // 2, 5).clone()).argmax(dim=1)
    assert torch.equal(half, picked[::2])  # a row draws the same token in any batch
    later = KeyedSampler(seeds, cfg.prompts)(decoder[:, :3], logits.expand(rows, 5).clone()).argmax(dim=1)
    assert not torch.equal(later, picked)  # another step, other draws
