"""Stage 1, prompts: the text each class's images are generated from (paper section 3.1).

Two modes (``prompts.mode``):

* **B** (basic): the class name in the dataset's first template, one prompt per class
  (``prompts.b_templates: first``, the paper's label-name input), e.g. ``"a photo of a {}."`` ->
  ``"a photo of a maple tree."``; ``all`` fills every template (an ablation). ``prompt_index`` is
  the template's index. A class of your own label space with a ``description`` fills ``{}`` with
  ``"<name>, <description>"`` (docs/custom-data.md).
* **LE** (language enhancement): a word-to-sentence T5 model (CommonGen style: the concept words in,
  one sentence out) samples sentences from ``prompts.le_prefix`` + the class name (official code:
  ``"a maple tree"``). With ``prompts.dataset_prefix`` the official code's dataset-specific LE text
  is used: its label names where they differ from the registry's
  (:data:`synk8s.stages.synth.prompt_text.LE_NAMES`, EuroSAT's "Herbaceous Vegetation Land" for "brushland
  or shrubland") and the dataset's generation prefix
  (:data:`synk8s.stages.synth.prompt_text.GENERATION_PREFIXES`, e.g. EuroSAT's "a centered satellite
  photo of ") goes before each kept sentence. Each class draws rounds of
  ``ceil(sentences_per_class * oversample)`` sentences, each seeded per (run seed, class, round,
  index), until ``sentences_per_class`` distinct ones are kept or :data:`MAX_ROUNDS` rounds are
  spent; the rows of many classes share each T5 ``generate`` call without changing what any row
  draws (:mod:`synk8s.stages.synth.le_sampling`). A sentence is
  dropped when it is empty, repeats an earlier one (whitespace and case ignored), or (with
  ``prompts.drop_other_classes``) shows another class of the dataset (its name, or an alias of your own
  label space, heads a noun phrase
  that is not the setting: :mod:`synk8s.stages.synth.noun_phrases`), which the paper names as
  LE's source of label noise (off in the ``paper`` profile: the paper leaves that noise to the
  CLIP filter). A class that ends short keeps what it has; ``stats.json`` records the
  shortfall. The LE input is the class name alone, never its description: the word-to-sentence
  model writes one sentence holding every input word, so a description's words would become concepts.

The fine-tuned T5 was trained to write sentences that contain the input words; the random-weight
``tiny-t5`` writes arbitrary characters. Sentences are kept as sampled (no class name is added), so
with ``tiny-t5`` the prompts carry no class information.

Outputs in ``out``: ``prompts.jsonl`` (one prompt a line, sorted by class then prompt index),
``stats.json`` (per-class counts) and ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import labelspace, storage
from synk8s.config import ExperimentConfig
from synk8s.runs import write_manifest
from synk8s.seeds import derive_seed
from synk8s.stages.synth.prompt_text import (
    ClassNameMatcher,
    concept_words,
    dedupe_key,
    generation_prefix,
    le_input,
    le_names,
    normalise_sentence,
)
from synk8s.stagetable.spec import Resources, StageSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

PROMPTS_FILE = "prompts.jsonl"
STATS_FILE = "stats.json"
MAX_ROUNDS = 10  # LE draw rounds per class before accepting a shortfall
LE_BATCH = 512  # (class, sentence) rows per generate() call; the prompts do not depend on it


class PromptsResult(BaseModel):
    """What the prompts stage wrote.

    Attributes:
        mode: ``B`` or ``LE``.
        classes: number of classes.
        prompts: prompts written, over all classes.
        short_classes: classes that kept fewer LE sentences than ``prompts.sentences_per_class``.
        prompts_uri: the ``prompts.jsonl`` URI.
        stats_uri: the ``stats.json`` URI.
        manifest_uri: the ``manifest.json`` URI.
        seconds: wall time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    mode: str
    classes: int
    prompts: int
    short_classes: int
    prompts_uri: str
    stats_uri: str
    manifest_uri: str
    seconds: float


@dataclasses.dataclass
class ClassStats:
    """Counts for one class; LE fills every field, B only ``drawn`` and ``kept``."""

    class_index: int
    class_name: str
    le_input: str = ""
    drawn: int = 0
    empty: int = 0
    duplicates: int = 0
    dropped_other_class: int = 0
    named_classes: dict[str, int] = dataclasses.field(default_factory=dict)
    kept: int = 0
    shortfall: int = 0
    rounds: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON form, with ``unused``: valid sentences drawn after the class was full."""
        unused = self.drawn - self.empty - self.duplicates - self.dropped_other_class - self.kept
        return {**dataclasses.asdict(self), "named_classes": dict(sorted(self.named_classes.items())), "unused": unused}


# ----------------------------------------------------------------------------- prompt builders


def template_prompts(
    classes: Sequence[str], templates: Sequence[str], descriptions: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[ClassStats]]:
    """Mode B: every template filled with every class name (and its description, where it has one).

    A class with a description fills ``{}`` with ``"<name>, <description>"``: ``"a photo of a {}."`` ->
    ``"a photo of a pallet jack, a hand-pushed truck with two forks."``.

    Args:
        classes: class names in class-index order.
        templates: format strings with one ``{}`` for the class name, in prompt-index order.
        descriptions: per class, a description or ``""`` (your own label space); empty: none.

    Returns:
        Prompt records sorted by (class_index, prompt_index), and per-class stats.
    """
    records = []
    stats = []
    for c, name in enumerate(classes):
        words = concept_words(name)
        if c < len(descriptions) and descriptions[c]:
            words = f"{words}, {descriptions[c]}"
        for p, template in enumerate(templates):
            records.append(_record(c, name, p, template.format(words), "B"))
        stats.append(ClassStats(c, name, drawn=len(templates), kept=len(templates)))
    return records, stats


def _record(class_index: int, class_name: str, prompt_index: int, prompt: str, source: str) -> dict[str, Any]:
    return {
        "class_index": class_index,
        "class_name": class_name,
        "prompt_index": prompt_index,
        "prompt": prompt,
        "source": source,
    }


class SentencePicker:
    """Keeps the first ``wanted`` acceptable sentences offered for one class and counts the rest.

    A sentence is refused when it is empty after :func:`normalise_sentence`, repeats an earlier one
    (compared by :func:`dedupe_key`), or, while ``drop_other_classes`` is set, shows another class:
    another class's name heads a noun phrase that is not the setting
    (:meth:`ClassNameMatcher.shown_classes`). Every whole-word mention of another class is counted in
    ``named_classes`` either way. Once ``wanted`` sentences are kept, later ones are only counted as drawn.

    Args:
        class_index: the class the sentences are for.
        matcher: finds other class names in a sentence.
        wanted: how many sentences to keep.
        drop_other_classes: refuse sentences that name another class (they are counted either way).
    """

    def __init__(self, class_index: int, matcher: ClassNameMatcher, wanted: int, drop_other_classes: bool) -> None:
        self.class_index = class_index
        self.matcher = matcher
        self.wanted = wanted
        self.drop_other_classes = drop_other_classes
        self.stats = ClassStats(class_index, matcher.classes[class_index])
        self.kept: list[str] = []
        self._seen: set[str] = set()

    @property
    def full(self) -> bool:
        """True once ``wanted`` sentences are kept."""
        return len(self.kept) >= self.wanted

    def offer(self, raw: str) -> None:
        """Consider one sampled sentence."""
        stats = self.stats
        stats.drawn += 1
        if self.full:
            return
        sentence = normalise_sentence(raw)
        if not sentence:
            stats.empty += 1
            return
        key = dedupe_key(sentence)
        if key in self._seen:
            stats.duplicates += 1
            return
        self._seen.add(key)
        named = self.matcher.other_classes(sentence, self.class_index)
        for other in named:
            stats.named_classes[other] = stats.named_classes.get(other, 0) + 1
        if named and self.drop_other_classes and self.matcher.shown_classes(sentence, self.class_index):
            stats.dropped_other_class += 1
            return
        self.kept.append(sentence)
        stats.kept = len(self.kept)

    def finish(self) -> ClassStats:
        """Record the shortfall and return the class's stats."""
        self.stats.kept = len(self.kept)
        self.stats.shortfall = self.wanted - len(self.kept)
        return self.stats


def enhanced_prompts(
    cfg: ExperimentConfig, classes: Sequence[str], model: Any, tokenizer: Any, *, batch_rows: int = LE_BATCH
) -> tuple[list[dict[str, Any]], list[ClassStats]]:
    """Mode LE: distinct T5 sentences per class, with other-class sentences dropped.

    Round ``r`` draws ``ceil(sentences_per_class * oversample)`` sentences for every class still
    short, ``batch_rows`` (class, sentence) rows per ``generate`` call; sentence ``j`` of class ``c``
    in round ``r`` is sampled from ``derive_seed(seed, "le", c, r, j)`` alone
    (:mod:`synk8s.stages.synth.le_sampling`), so ``batch_rows`` changes the speed, not the prompts. Each
    class is offered its sentences in (round, j) order.

    Args:
        cfg: the run config (``seed`` and the ``prompts`` section are used).
        classes: class names in class-index order.
        model: a transformers sequence-to-sequence model (from :func:`synk8s.models.load_le`).
        tokenizer: its tokenizer.
        batch_rows: sequences per ``generate`` call. Default :data:`LE_BATCH`.

    Returns:
        Prompt records sorted by (class_index, prompt_index), and per-class stats.
    """
    from tqdm import tqdm

    from synk8s.stages.synth.le_sampling import sample_rows

    per_round = math.ceil(cfg.prompts.sentences_per_class * cfg.prompts.oversample)
    official = cfg.prompts.dataset_prefix  # the official code's dataset-specific LE text: names and prefix
    prefix = generation_prefix(cfg.dataset.name) if official else ""
    names = le_names(cfg.dataset.name, classes) if official else list(classes)
    matcher = ClassNameMatcher(classes, labelspace.aliases(cfg))
    texts = [le_input(name, cfg.prompts.le_prefix) for name in names]
    pickers = [
        SentencePicker(c, matcher, cfg.prompts.sentences_per_class, cfg.prompts.drop_other_classes)
        for c in range(len(classes))
    ]
    for picker, text in zip(pickers, texts, strict=True):
        picker.stats.le_input = text
    with tqdm(total=0, desc="LE prompts", unit="sentence") as bar:
        for round_index in range(MAX_ROUNDS):
            active = [picker for picker in pickers if not picker.full]
            if not active:
                break
            rows = [(picker.class_index, j) for picker in active for j in range(per_round)]
            bar.total += len(rows)
            sentences: list[str] = []
            for start in range(0, len(rows), batch_rows):
                chunk = rows[start : start + batch_rows]
                seeds = [derive_seed(cfg.seed, "le", c, round_index, j) for c, j in chunk]
                sentences.extend(sample_rows(model, tokenizer, [texts[c] for c, _ in chunk], seeds, cfg.prompts))
                bar.update(len(chunk))
            for (c, _), sentence in zip(rows, sentences, strict=True):
                pickers[c].offer(sentence)
            for picker in active:
                picker.stats.rounds += 1
    records: list[dict[str, Any]] = []
    all_stats: list[ClassStats] = []
    for picker in pickers:
        stats = picker.finish()
        c = picker.class_index
        if stats.shortfall:
            log.warning(
                "class %r kept %d of %d LE sentences after %d rounds", classes[c], stats.kept, picker.wanted, stats.rounds
            )
        records.extend(_record(c, classes[c], p, prefix + s, "LE") for p, s in enumerate(picker.kept))
        all_stats.append(stats)
    return records, all_stats


# ----------------------------------------------------------------------------- stage


def run(cfg: ExperimentConfig, *, out: str) -> PromptsResult:
    """Write the prompts of every class of the run (:func:`synk8s.labelspace.class_names`).

    Args:
        cfg: the run config; ``prompts.mode`` picks B or LE, ``models.le`` the LE model and
            ``models.le_revision`` its hub revision (recorded in the manifest's ``le_model``).
        out: output folder URI (local path or ``s3://``).

    Returns:
        Counts and output URIs.

    Raises:
        UsageError: unknown dataset or LE model name.
        MissingDataError: the model cache lacks the LE model.
    """
    start = time.perf_counter()
    classes = list(labelspace.class_names(cfg))
    extra: dict[str, Any] = labelspace.manifest_fields(cfg)
    if cfg.prompts.mode == "B":
        templates = labelspace.templates(cfg)
        chosen = templates[:1] if cfg.prompts.b_templates == "first" else templates
        records, stats = template_prompts(classes, chosen, labelspace.descriptions(cfg))
    else:
        from synk8s.models import get_le_info, load_le, resolve_device

        device = resolve_device(cfg.device)
        le_info = get_le_info(cfg.models.le, cfg.models.le_revision)
        model, tokenizer = load_le(
            cfg.models.le, device=device, cache=cfg.models.cache, seed=cfg.seed, revision=le_info.revision
        )
        records, stats = enhanced_prompts(cfg, classes, model, tokenizer)
        extra["le_model"] = {
            "model_id": le_info.model_id,
            "revision": le_info.revision,
            "weights": f"random-seed-{cfg.seed}" if le_info.tiny else "pretrained",
            "device": device,
        }

    prompts_uri = storage.join(out, PROMPTS_FILE)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    storage.put_bytes(prompts_uri, lines.encode("utf-8"))
    stats_uri = storage.join(out, STATS_FILE)
    short = sum(1 for s in stats if s.shortfall)
    storage.put_json(
        stats_uri,
        {
            "mode": cfg.prompts.mode,
            "sentences_per_class": cfg.prompts.sentences_per_class if cfg.prompts.mode == "LE" else None,
            "per_class": [s.as_dict() for s in stats],
        },
    )
    seconds = time.perf_counter() - start
    counts = {"classes": len(classes), "prompts": len(records), "short_classes": short}
    manifest_uri = write_manifest(
        out,
        "prompts",
        cfg,
        counts=counts,
        mode=cfg.prompts.mode,
        outputs={"prompts": PROMPTS_FILE, "stats": STATS_FILE},
        seconds=round(seconds, 3),
        **extra,
    )
    log.info("wrote %d %s prompts for %d classes to %s", len(records), cfg.prompts.mode, len(classes), out)
    return PromptsResult(
        mode=cfg.prompts.mode,
        classes=len(classes),
        prompts=len(records),
        short_classes=short,
        prompts_uri=prompts_uri,
        stats_uri=stats_uri,
        manifest_uri=manifest_uri,
        seconds=seconds,
    )


def read_prompts(prompts_out: str) -> list[dict[str, Any]]:
    """Read ``prompts.jsonl`` of a prompts stage output folder.

    Raises:
        MissingDataError: the folder holds no prompts (run the prompts stage first).
    """
    from synk8s.errors import MissingDataError

    uri = storage.join(prompts_out, PROMPTS_FILE)
    if not storage.exists(uri):
        raise MissingDataError(f"no prompts at {prompts_out}: run `synk8s stage prompts` first (missing {uri})")
    text = storage.get_bytes(uri).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def needs_gpu(cfg: ExperimentConfig) -> bool:
    """LE samples classes x sentences_per_class x oversample sentences with T5 (40k for CIFAR-100):
    minutes on a GPU, hours on a CPU. B mode is string formatting."""
    return cfg.prompts.mode == "LE"


STAGE = StageSpec(
    name="prompts",
    run=run,
    help="Build the prompts (B: class names in a template; LE: T5 sentences).",
    depends=("seed", "device", "dataset.name", "models.le", "models.le_revision", "prompts"),
    depends_on=labelspace.digest_fields,
    gpu=needs_gpu,
    resources=Resources("2", "4", "8Gi", "16Gi"),
    outputs={PROMPTS_FILE: read_prompts, STATS_FILE: None},
)
