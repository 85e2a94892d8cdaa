"""Label spaces: the class names a run generates images for.

A zero-shot or few-shot run generates for its dataset's classes. A pre-training run
(``pretrain.label_space`` set) generates for a label space instead (paper section 3.3):

* ``cifar100``: CIFAR-100's 100 class names (downstream-aware pre-training, Table 8);
* ``imagenet-1k``: the 1000 ImageNet class names CLIP published (the registry's ``imagenet`` names);
* ``imagenet-2k``: ImageNet-1K plus 1000 other ImageNet-21K classes (Tables 9-10), listed in
  ``datasets/data/imagenet21k_extra.json``.

The extra 1000 classes were drawn once, offline, from timm 1.0.31's package data: every synset of
``imagenet21k_goog_synsets.txt`` that is not in ``imagenet_synsets.txt`` (ImageNet-1K), named by the
first lemma of ``imagenet_synset_to_lemma.txt``, keeping only synsets whose name is unique among the
21K synsets and differs (case-insensitively) from every ImageNet-1K CLIP name; 1000 of those 17727
were drawn with ``random.Random(0).sample`` over the sorted synset ids, and are listed sorted by id.

Images per class come from the total: ``pretrain.images // K`` (1.2M over CIFAR-100's 100 classes is
12000 per class), so the total is rounded down to a multiple of K. ``pretrain.classes`` K makes a
smaller run over K classes evenly spaced through the label space (the tiny profile's reduction);
null, the paper profile's value, keeps every class.

    cfg = config.load("paper", ["pretrain.label_space=imagenet-2k", "pretrain.images=4000000"])
    len(class_names(cfg)), images_per_class(cfg)   # (2000, 2000)
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from synk8s import datasets
from synk8s.config import ExperimentConfig
from synk8s.errors import UsageError

LABEL_SPACES = ("cifar100", "imagenet-1k", "imagenet-2k")
#: label space -> the registry dataset its class names come from (a pre-training run's ``dataset.name``)
SOURCE_DATASETS = {"cifar100": "cifar100", "imagenet-1k": "imagenet", "imagenet-2k": "imagenet"}
EXTRA_FILE = "imagenet21k_extra.json"


@functools.cache
def imagenet21k_extra() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The 1000 extra ImageNet-21K classes of ``imagenet-2k``: (WordNet ids, names), sorted by id."""
    text = resources.files("synk8s.datasets").joinpath("data", EXTRA_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    return tuple(data["synsets"]), tuple(data["names"])


def names(space: str) -> tuple[str, ...]:
    """Class names of a label space, in label order.

    Raises:
        UsageError: unknown label space.
    """
    if space == "cifar100":
        return datasets.get("cifar100").classes
    if space == "imagenet-1k":
        return datasets.get("imagenet").classes
    if space == "imagenet-2k":
        return datasets.get("imagenet").classes + imagenet21k_extra()[1]
    raise UsageError(f"unknown label space {space!r}; choose one of: {', '.join(LABEL_SPACES)}")


def is_pretraining(cfg: ExperimentConfig) -> bool:
    """True when the run generates for a label space rather than for its dataset."""
    return cfg.pretrain.label_space is not None


def evenly_spaced(count: int, k: int) -> list[int]:
    """``k`` class indices spread evenly over ``range(count)``: ``i * count // k`` for ``i < k``."""
    return [i * count // k for i in range(k)]


def class_names(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The class names the run's prompts and images are made for, in label order.

    A pre-training run with ``pretrain.classes`` K takes K classes evenly spaced through its label
    space (:func:`evenly_spaced`; CIFAR-100 with K 10: apple, bee, ..., every tenth name).

    Raises:
        UsageError: ``pretrain.classes`` exceeds the label space.
    """
    if not is_pretraining(cfg):
        return datasets.info(cfg.dataset).classes
    space = names(cfg.pretrain.label_space)
    k = cfg.pretrain.classes
    if k is None:
        return space
    if k > len(space):
        raise UsageError(
            f"pretrain.classes {k} exceeds the {len(space)} classes of {cfg.pretrain.label_space}; "
            "lower it or set it to null for the whole label space"
        )
    return tuple(space[i] for i in evenly_spaced(len(space), k))


def descriptions(cfg: ExperimentConfig) -> tuple[str, ...]:
    """Per class of :func:`class_names`, its description in your own label space's file, else ``""``."""
    found = () if is_pretraining(cfg) else datasets.info(cfg.dataset).descriptions
    return found or ("",) * len(class_names(cfg))


def aliases(cfg: ExperimentConfig) -> tuple[tuple[str, ...], ...]:
    """Per class of :func:`class_names`, the other names your own label space's file gives it, else none."""
    found = () if is_pretraining(cfg) else datasets.info(cfg.dataset).aliases
    return found or ((),) * len(class_names(cfg))


def templates(cfg: ExperimentConfig) -> tuple[str, ...]:
    """Prompt templates for mode B: the label space's source dataset's, else the run's dataset's."""
    if is_pretraining(cfg):
        source = "cifar100" if cfg.pretrain.label_space == "cifar100" else "imagenet"
        return datasets.get(source).templates
    return datasets.info(cfg.dataset).templates


def images_per_class(cfg: ExperimentConfig) -> int:
    """Images to generate per class: ``pretrain.images // K`` for a label space, else ``generate.images_per_class``.

    Raises:
        UsageError: ``pretrain.images`` is smaller than the number of classes.
    """
    if not is_pretraining(cfg):
        return cfg.generate.images_per_class
    count = len(class_names(cfg))
    if cfg.pretrain.images < count:
        sliced = "" if cfg.pretrain.classes is None else " (pretrain.classes)"
        raise UsageError(
            f"pretrain.images must be at least the {count} classes{sliced} of {cfg.pretrain.label_space}, "
            f"got {cfg.pretrain.images}"
        )
    return cfg.pretrain.images // count


def digest_fields(cfg: ExperimentConfig) -> tuple[str, ...]:
    """Config fields that prompts and images depend on beyond the zero-shot ones.

    Empty for a zero-shot run over a registry dataset, so its folder digests stay what they were; a run over
    your own label space adds its file's SHA-256 (``dataset.classes_sha256``); a pre-training run adds
    the label space and the image total, and ``pretrain.classes`` when it slices the label space
    (a run over the whole space keeps the folder names it had before the field existed).
    """
    if not is_pretraining(cfg):
        return ("dataset.classes_sha256",) if cfg.dataset.classes_sha256 is not None else ()
    sliced = ("pretrain.classes",) if cfg.pretrain.classes is not None else ()
    return ("pretrain.label_space", "pretrain.images", *sliced)


def manifest_fields(cfg: ExperimentConfig) -> dict[str, Any]:
    """Fields the prompts and generate manifests add for a pre-training run (none for zero-shot runs).

    ``classes`` is the number generated for, ``label_space_classes`` the size of the label space.
    """
    if not is_pretraining(cfg):
        return {}
    return {
        "label_space": cfg.pretrain.label_space,
        "classes": len(class_names(cfg)),
        "label_space_classes": len(names(cfg.pretrain.label_space)),
    }
