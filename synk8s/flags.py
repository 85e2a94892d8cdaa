"""The run flags: each names one config field, once, for the CLI and the pipelines alike.

A :class:`Flag` is a shortcut for ``--set key.path=value``. From :data:`FLAGS` come the options of
``synk8s submit``, ``synk8s plan`` and ``synk8s stage`` (:func:`synk8s.cli.kfp_client.with_run_flags`),
the typed parameters of the Kubeflow pipelines (:data:`PARAMETERS`, what the Kubeflow UI shows), and
the overrides both turn into (:func:`as_overrides`, applied by :func:`synk8s.resolve.resolve`)::

    as_overrides({"dataset": "eurosat", "seed": None})     # ['dataset.name="eurosat"']

Only the standard library is imported: components and pipelines read this module when they compile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: the environment variable holding the shared store root: ``--store``'s default, and in a cluster pod the
#: ConfigMap's ``s3://`` root in place of a local ``store_root`` (:func:`synk8s.components.params.pod_store_root`)
STORE_ROOT_ENV = "SYNK8S_STORE_ROOT"


@dataclass(frozen=True)
class Flag:
    """One config field with a name of its own.

    Attributes:
        name: the keyword and the pipeline parameter name (``images_per_class``).
        key: the config field it sets (``generate.images_per_class``).
        type: ``str``, ``int``, ``float`` or ``bool``: its type on the command line and in the pipeline spec.
        help: what ``--help`` and the Kubeflow UI say of it.
        option: its command-line spelling (``--images-per-class``); None: a pipeline parameter only.
        short: a one-letter command-line alias (``-d``), or None.
        minimum: the smallest value the command line takes, or None.
        envvar: the environment variable the command line falls back to, or None.
        parameter: a typed pipeline parameter; False: a command-line flag only (fixed when a pipeline compiles).
    """

    name: str
    key: str
    type: type
    help: str
    option: str | None = None
    short: str | None = None
    minimum: int | None = None
    envvar: str | None = None
    parameter: bool = True


FLAGS: tuple[Flag, ...] = (
    Flag("dataset", "dataset.name", str, "Dataset name (dataset.name), e.g. cifar100, eurosat; see "
         "`synk8s datasets list`.", option="--dataset", short="-d"),
    Flag("images_per_class", "generate.images_per_class", int, "Synthetic images generated per class "
         "(generate.images_per_class).", option="--images-per-class"),
    Flag("num_shards", "generate.num_shards", int, "Generation shards, one GPU task each (generate.num_shards).",
         option="--num-shards"),
    Flag("generator", "models.generator", str, "Text-to-image model (models.generator): sd15, sd21, sd-turbo, "
         "sdxl-turbo or a diffusers id.", option="--generator"),
    Flag("seed", "seed", int, "Run seed: every prompt's and image's seed derives from it (seed).", option="--seed"),
    Flag("store_root", "store.root", str, "Artifact store (store.root): s3://bucket/prefix or a folder; in a "
         f"cluster pod a folder means ${STORE_ROOT_ENV} of the synk8s-config ConfigMap.", option="--store",
         envvar=STORE_ROOT_ENV),
    Flag("prompts_mode", "prompts.mode", str, "Prompts (prompts.mode): B, the class name in a template, or LE, "
         "T5 sentences from the class name (Table 2)."),
    Flag("filter_enabled", "filter.enabled", bool, "CLIP filter (filter.enabled): drop synthetic images CLIP "
         "does not see as their class (Table 2's CF)."),
    Flag("tune_loss", "tune.loss", str, "Classifier-tuning loss (tune.loss): ce, or sce with CLIP's soft "
         "targets (Table 2)."),
    Flag("tune_epochs", "tune.epochs", int, "Classifier-tuning epochs (tune.epochs)."),
    Flag("shots", "fewshot.shots_per_class", int, "M: real training images per class (fewshot.shots_per_class).",
         option="--shots", minimum=1),
    Flag("fewshot_schedule", "fewshot.schedule", str, "How real and synthetic batches alternate "
         "(fewshot.schedule): mix, syn-then-real or real-then-syn (Table 7)."),
    Flag("fewshot_epochs", "fewshot.epochs", int, "Few-shot tuning epochs over the synthetic images "
         "(fewshot.epochs)."),
    Flag("label_space", "pretrain.label_space", str, "Classes to generate and pre-train on "
         "(pretrain.label_space): cifar100, imagenet-1k or imagenet-2k; dataset.name follows.",
         option="--label-space"),
    Flag("method", "pretrain.method", str, "Pre-training method (pretrain.method): supervised or moco.",
         option="--method"),
    Flag("transfer", "pretrain.transfer", str, "What the pretrain pipeline measures the trunk by "
         "(pretrain.transfer): cifar100 or voc.", option="--transfer", parameter=False),
    Flag("pretrain_images", "pretrain.images", int, "Synthetic images in total for pre-training "
         "(pretrain.images), spread evenly over the classes."),
    Flag("pretrain_epochs", "pretrain.epochs", int, "Supervised pre-training epochs (pretrain.epochs; MoCo: "
         "pretrain.moco.epochs in overrides)."),
    Flag("classes", "dataset.classes", str, "Your own label space: a classes file, one name per line or YAML "
         "(docs/custom-data.md); stored in the store as dataset.classes, and dataset.name becomes custom.", option="--classes",
         parameter=False),
    Flag("images", "dataset.images", str, "Your own images (dataset.images): an ImageFolder root or a CSV/JSONL "
         "manifest, a path or s3://; without --classes their class names are the label space.", option="--images",
         parameter=False),
)

#: flags that name files the resolve edge reads and stores (a label space, an image set) rather than a value
FILE_FLAGS = ("classes", "images")
#: every flag by name
BY_NAME: dict[str, Flag] = {flag.name: flag for flag in FLAGS}
#: the typed pipeline parameters (besides ``profile`` and ``overrides``) by name; each pipeline shows
#: the knobs its study changes most (its module's ``PARAMETERS``), every other field goes in ``overrides``
PARAMETERS: dict[str, Flag] = {flag.name: flag for flag in FLAGS if flag.parameter}


def as_overrides(values: Mapping[str, Any]) -> list[str]:
    """``key.path=<JSON value>`` for each flag given a value (None: not given).

    JSON is valid YAML, so :func:`synk8s.config.load` reads each value back with its type.

    Raises:
        KeyError: a name that is no flag's.
    """
    return [f"{BY_NAME[name].key}={json.dumps(value)}" for name, value in values.items() if value is not None]
