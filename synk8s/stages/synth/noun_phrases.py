"""Whether a class name found in an LE sentence names a thing the sentence shows, by a small word rule.

The prompts stage's ``prompts.drop_other_classes`` ablation drops a sentence that names another class.
A whole-word match also fires on words that only give context or play another role, e.g. for
CIFAR-100 "a man rides a bicycle down the road" (man, road), "apple slices on a plain white plate"
(plain, plate) and "a boy can play" (can). No part-of-speech tagger with an English model installs
offline from PyPI alone (NLTK's and spaCy's models download from their own hosts), so this module
decides from the words around the match, using closed word classes only (determiners, numbers,
prepositions, conjunctions, auxiliaries), which a short list covers:

1. **The name must end its noun phrase** (:func:`heads_phrase`). The word after it must be the end of
   the sentence, punctuation, a preposition, a conjunction, a determiner or a relative word. Any other
   word means the name modifies a noun ("plain white plate", "road bike"), is followed by a verb it
   is the subject of ("a man rides", "a boy can play": ``can`` followed by ``play``; "a dog is
   sleeping") or is a possessor ("a dog's bowl"). The subject of a verb is the sentence's actor
   around the own class; the paper's own LE example, "a white airplane hovering over a beach and a
   city", is a sentence whose other nouns are context.
2. **The phrase must not be a setting** (:func:`in_setting`). A noun phrase governed by a place or
   path preposition (on, in, at, down, along, over, under, ...), directly or as a later conjunct
   ("over a beach and a city"), is the scene the class is placed in. A phrase governed by a
   preposition of company or depiction (with, beside, next to, near, by, of: "a photo of a road"),
   a verb ("chasing a cat", "two cats chase the buses") or nothing (the sentence's first phrase, or
   a conjunct of it: "a cat and a dog") is a thing shown beside the class, and counts.

Multi-word names are matched as phrases by the caller (:class:`synk8s.stages.synth.prompt_text.ClassNameMatcher`)
and judged here by the words before their first and after their last word; a plural ``s``/``es``
belongs to the match. Known limits: a verb in its bare form directly before a phrase without a
determiner is not recognised ("kids play football"); "a dog chasing a cat" does not name ``dog``
for the class ``cat`` (rule 1: the dog is the actor).

    names_a_thing("a man rides a bicycle down the road", 31, 35)    # False: "road" is the setting
    names_a_thing("a photo of a road next to a bicycle", 13, 17)    # True: "road" is what the photo shows
"""

from __future__ import annotations

import re

DETERMINERS = frozenset(
    "a an the this that these those some any each every no another many several few both all its his her "
    "their our my your one two three four five six seven eight nine ten dozen".split()
)
# Place and path prepositions: their object is the scene the class is placed in.
SETTING = frozenset(
    "on in at down along across through over under into onto inside outside around above below beneath "
    "underneath upon within throughout up off from toward towards past atop amid amidst".split()
)
# Prepositions (and their first words) whose object is a thing shown with the class: company, depiction.
SHOWN_WITH = frozenset("with beside besides near next close of by behind against among between like for to".split())
CONJUNCTIONS = frozenset("and or nor but".split())
AUXILIARIES = frozenset(
    "is are was were be been being am has have had can could will would may might must shall should does do did".split()
)
RELATIVES = frozenset("that which who whose where while when as".split())
# Words after which a phrase has ended: the name before them is its head.
PHRASE_END = SETTING | SHOWN_WITH | CONJUNCTIONS | DETERMINERS | RELATIVES

_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")


def _tokens(sentence: str) -> list[tuple[int, int, str]]:
    """(start, end, case-folded text) of every word and punctuation mark of ``sentence``."""
    return [(m.start(), m.end(), m.group().casefold()) for m in _TOKEN.finditer(sentence)]


def _is_word(text: str) -> bool:
    return bool(re.match(r"\w", text))


def heads_phrase(tokens: list[tuple[int, int, str]], last: int, end: int) -> bool:
    """Whether the match ending at character ``end`` in token ``last`` ends its noun phrase (rule 1)."""
    if tokens[last][1] > end:  # the match stops inside a word: "dog's"
        return False
    if last + 1 == len(tokens):
        return True
    after = tokens[last + 1][2]
    return not _is_word(after) or after in PHRASE_END


def in_setting(tokens: list[tuple[int, int, str]], first: int) -> bool:
    """Whether the phrase starting at token ``first`` is the object of a place or path preposition (rule 2).

    Walks left over determiners, numbers, modifiers and earlier conjuncts to the word that governs
    the phrase: a preposition decides by its kind; a verb (a word ending in ``ing``/``ed``, an
    auxiliary, or a word directly followed by a determiner: "rides a"), punctuation or the start of
    the sentence make the phrase a thing shown.
    """
    for j in range(first - 1, -1, -1):
        word = tokens[j][2]
        if word in SETTING:
            return True
        if word in SHOWN_WITH or word in AUXILIARIES or not _is_word(word):
            return False
        if word in CONJUNCTIONS or word in DETERMINERS or word.isdigit():
            continue
        if word.endswith(("ing", "ed")):
            return False
        if j + 1 < len(tokens) and (tokens[j + 1][2] in DETERMINERS or tokens[j + 1][2].isdigit()):
            return False  # a word that opens a determined phrase governs it: a verb ("rides a bicycle")
    return False


def names_a_thing(sentence: str, start: int, end: int) -> bool:
    """Whether the class name matched at ``sentence[start:end]`` names a thing the sentence shows.

    Args:
        sentence: the LE sentence.
        start: character offset of the match (the whole class name, plural ending included).
        end: character offset just past the match.

    Returns:
        True when the name heads its noun phrase (rule 1) and that phrase is not a setting (rule 2).
    """
    tokens = _tokens(sentence)
    inside = [i for i, (s, e, _) in enumerate(tokens) if s < end and e > start]
    if not inside:
        return False
    return heads_phrase(tokens, inside[-1], end) and not in_setting(tokens, inside[0])
