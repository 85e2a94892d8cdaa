"""Dropping LE sentences that show another class matches class names as noun phrases, not as words."""

import pytest

from synk8s import config, datasets
from synk8s.stages.synth.prompts import ClassNameMatcher, SentencePicker

pytestmark = pytest.mark.timeout(30)

CIFAR100 = datasets.get("cifar100").classes


def _offer(own: str, sentence: str, classes=CIFAR100) -> SentencePicker:
    cfg = config.load("paper", ["prompts.drop_other_classes=true"])
    picker = SentencePicker(classes.index(own), ClassNameMatcher(classes), 1, cfg.prompts.drop_other_classes)
    picker.offer(sentence)
    return picker


def test_the_label_set_holds_the_context_words():
    assert {"man", "road", "plain", "plate", "can", "bicycle", "apple", "boy"} <= set(CIFAR100)


@pytest.mark.parametrize(
    ("own", "sentence"),
    [
        ("bicycle", "a man rides a bicycle down the road"),  # man: subject of "rides"; road: the setting
        ("apple", "apple slices on a plain white plate"),  # plain: modifies "plate"; plate: the setting
        ("boy", "a boy can play"),  # can: followed by a verb
    ],
)
def test_context_words_keep_their_sentence_with_dropping_on(own, sentence):
    picker = _offer(own, sentence)
    assert picker.kept == [sentence]
    assert picker.finish().dropped_other_class == 0


def test_a_sentence_that_shows_another_class_is_dropped():
    picker = _offer("bicycle", "a photo of a road next to a bicycle")
    stats = picker.finish()
    assert picker.kept == []
    assert stats.dropped_other_class == 1 and stats.named_classes == {"road": 1}


@pytest.mark.parametrize(
    ("own", "sentence", "shown"),
    [
        ("cat", "a cat and a dog", ["dog"]),  # a conjunct of the first phrase
        ("cat", "two cats chase the buses", ["bus"]),  # the object of a verb, plural
        ("cat", "a cat watching the sea from a bus", ["sea"]),  # "from a bus" is the setting
        ("airplane", "a white airplane hovering over a beach and a city", []),  # the paper's LE example
        ("cat", "a dog's bowl next to a cat", []),  # a possessor modifies "bowl"
        ("cat", "a can of food for a cat", ["can"]),  # "can" heads "a can of food"
        ("cat", "a maple tree beside a cat", ["maple tree"]),  # two-word names as one phrase
        ("maple tree", "a maple tree beside a tall tree", ["tree"]),
        ("cat", "a dog is sleeping next to a cat", []),  # the subject of "is sleeping"
    ],
)
def test_shown_classes_follow_the_noun_phrase_rule(own, sentence, shown):
    classes = ["cat", "dog", "bus", "sea", "airplane", "beach", "city", "can", "maple tree", "tree"]
    assert ClassNameMatcher(classes).shown_classes(sentence, classes.index(own)) == shown
