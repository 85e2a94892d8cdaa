"""Prompt text: normalising sampled sentences, the LE model input, and finding class names in a sentence.

    concept_words("maple_tree")                       # "maple tree"
    le_input("maple_tree", "a ")                      # "a maple tree": the official LE input
    generation_prefix("eurosat")                      # "a centered satellite photo of "
    le_names("eurosat", classes)[2]                   # "Herbaceous Vegetation Land" (registry: brushland or shrubland)
    ClassNameMatcher(["cat", "dog"]).other_classes("a cat and a dog", 0)   # ["dog"]
    ClassNameMatcher(["cat", "road"]).shown_classes("a cat on the road", 0)   # []: the road is the setting

Used by the prompts stage (:mod:`synk8s.stages.synth.prompts`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from synk8s.stages.synth.noun_phrases import names_a_thing

if TYPE_CHECKING:
    from collections.abc import Sequence

# Text put before every generation prompt of a dataset where the paper's official code uses one.
GENERATION_PREFIXES = {"eurosat": "a centered satellite photo of "}

# The label names the official LE code feeds the T5 model where they differ from the registry's
# (CoOp's) class names, in class-index order: EuroSAT's own folder names, title case.
LE_NAMES = {
    "eurosat": (
        "Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Industrial Building",
        "Pasture Land", "Permanent Crop Land", "Residential Building", "River", "Sea or Lake",
    ),
}

def normalise_sentence(text: str) -> str:
    """Drop control and unassigned characters, collapse whitespace runs to one space, strip the ends."""
    kept = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C")
    return " ".join(kept.split())


def dedupe_key(sentence: str) -> str:
    """The form two sentences are compared in: normalised and case-folded."""
    return normalise_sentence(sentence).casefold()


def concept_words(class_name: str) -> str:
    """The LE model input for a class: its name with ``_`` as spaces (e.g. ``maple_tree`` -> ``maple tree``)."""
    return " ".join(class_name.replace("_", " ").split())


def _name_pattern(class_name: str) -> re.Pattern[str] | None:
    """Whole-word, case-insensitive pattern of a class name; the last word may take a plural ``s``/``es``.

    Words may be separated by spaces, ``_`` or ``-``. Irregular plurals (mice, people) are not matched.
    """
    words = concept_words(class_name).split(" ")
    if not any(re.search(r"\w", w) for w in words):
        return None
    body = r"[\s_-]+".join(re.escape(w) for w in words)
    return re.compile(rf"(?<!\w){body}(?:e?s)?(?!\w)", re.IGNORECASE)


def _first_word(class_name: str) -> str:
    words = re.findall(r"\w+", concept_words(class_name).casefold())
    return words[0] if words else ""


class ClassNameMatcher:
    """Finds which other classes of a dataset a sentence names.

    A match of another class's name does not count when it lies inside a match of the sentence's own
    class name, or inside a longer match of another class name: for the class ``maple tree`` the
    ``tree`` in "a maple tree" is not the class ``tree``, but in "a maple tree beside a tree" the
    second ``tree`` is, and "an oak tree" names ``oak tree`` only. Conversely, for the class ``tree``,
    "a maple tree" names the class ``maple tree``. Classes that share a name never flag each other.
    An alias names its class like the class name does ("a pump truck" names ``pallet jack`` when
    ``pump truck`` is its alias), and the own class's aliases are the own name.

    Args:
        classes: class names of the dataset, in class-index order.
        aliases: per class, other names it goes by (your own label space); empty: none.
    """

    def __init__(self, classes: Sequence[str], aliases: Sequence[Sequence[str]] = ()) -> None:
        self.classes = list(classes)
        # Candidate (class, pattern) by the first word of a name or alias, so each sentence runs only a few patterns.
        self._by_first_word: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
        for index, name in enumerate(self.classes):
            for spelling in (name, *(aliases[index] if index < len(aliases) else ())):
                pattern = _name_pattern(spelling)
                if pattern is not None:
                    self._by_first_word.setdefault(_first_word(spelling), []).append((index, pattern))

    def other_classes(self, sentence: str, class_index: int) -> list[str]:
        """Names of the other classes ``sentence`` mentions (sorted, each once).

        Every class name is matched; a match inside a match of the own name, or inside a longer match
        of another name (``tree`` within ``oak tree``), does not count.

        Args:
            sentence: the text to check.
            class_index: the class the sentence was made for.
        """
        return sorted({name for _, _, name in self._mentions(sentence, class_index)})

    def shown_classes(self, sentence: str, class_index: int) -> list[str]:
        """The other classes whose name heads a noun phrase naming a thing the sentence shows.

        The mentions of :meth:`other_classes`, less those that only modify a noun, act as the
        subject of a verb, or name the setting (:func:`synk8s.stages.synth.noun_phrases.names_a_thing`):
        for the class ``bicycle``, "a man rides a bicycle down the road" shows no other class, "a
        photo of a road next to a bicycle" shows ``road``.

        Args:
            sentence: the text to check.
            class_index: the class the sentence was made for.
        """
        return sorted({name for start, end, name in self._mentions(sentence, class_index)
                       if names_a_thing(sentence, start, end)})

    def _mentions(self, sentence: str, class_index: int) -> list[tuple[int, int, str]]:
        """(start, end, class name) of every other-class match not inside an own or a longer match."""
        own_name = concept_words(self.classes[class_index]).casefold()
        words = re.findall(r"\w+", sentence.casefold())
        lookup = set(words) | {w[:-1] for w in words if w.endswith("s")} | {w[:-2] for w in words if w.endswith("es")}
        matches: list[tuple[int, int, bool, str]] = []  # (start, end, is the own name, class name)
        for word in sorted(lookup):
            for index, pattern in self._by_first_word.get(word, ()):
                name = self.classes[index]
                is_own = index == class_index or concept_words(name).casefold() == own_name
                matches.extend((m.start(), m.end(), is_own, name) for m in pattern.finditer(sentence))
        found = []
        for start, end, is_own, name in matches:
            if is_own:
                continue
            covered = any(s <= start and end <= e and (own or e - s > end - start) for s, e, own, _ in matches)
            if not covered:
                found.append((start, end, name))
        return found


def le_input(class_name: str, prefix: str) -> str:
    """The LE model's input for a class: ``prefix`` (official code: ``"a "``) and the class's concept words."""
    return f"{prefix}{concept_words(class_name)}"


def le_names(dataset: str, classes: Sequence[str]) -> list[str]:
    """The names the LE model input is made from: :data:`LE_NAMES` of ``dataset`` when ``classes`` are
    its registry classes (not, say, a pre-training label space), else ``classes`` themselves."""
    from synk8s import datasets

    official = LE_NAMES.get(dataset)
    if official is None or list(classes) != list(datasets.get(dataset).classes):
        return list(classes)
    return list(official)


def generation_prefix(dataset: str) -> str:
    """The dataset's generation prefix (:data:`GENERATION_PREFIXES`), or ``""`` where it has none."""
    return GENERATION_PREFIXES.get(dataset, "")
