"""Pipeline parameters <-> experiment config: one mapping for the cluster and the local runner.

A pipeline run is described by typed parameters (what the Kubeflow UI shows, each with its type
and description, and what ``synk8s submit`` passes; each pipeline has the knobs its study changes
most, see :data:`PARAMETERS`) plus ``overrides``, a JSON list of ``key.path=value`` strings for every
other field. The ``plan`` task turns them back into the config inside the cluster; ``synk8s submit
--local`` uses the same functions on the laptop, so both paths resolve a run identically::

    args = pipeline_arguments(cfg, ("dataset", "seed", "tune_epochs"))   # {"profile": "tiny", "dataset": ...}
    config_from_arguments(**args) == cfg           # True for every cfg and every choice of names

The pipeline runs classification datasets only. Inside a cluster pod a local ``store_root`` (the
profile's ``./synk8s-store``) would be that pod's own folder, so :func:`pod_store_root` replaces it
with ``$SYNK8S_STORE_ROOT`` from the ConfigMap ``synk8s-config``.

Only the standard library is imported at module level; synk8s.config is imported when needed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig

@dataclass(frozen=True)
class Parameter:
    """A typed pipeline parameter: the config field it sets, its type and what the Kubeflow UI says of it.

    Attributes:
        key: the config field (``tune.epochs``).
        type: ``str``, ``int``, ``float`` or ``bool``: the parameter's type in the pipeline spec.
        help: its description in the compiled spec.
    """

    key: str
    type: type
    help: str


# Typed pipeline parameters (besides ``profile`` and ``overrides``), by name. Each pipeline shows the
# knobs its study changes most (its module's ``PARAMETERS``); every other field goes in ``overrides``.
PARAMETERS: dict[str, Parameter] = {
    "dataset": Parameter("dataset.name", str, "Dataset name (dataset.name), e.g. cifar100, eurosat; see "
                         "`synk8s datasets list`."),
    "images_per_class": Parameter("generate.images_per_class", int, "Synthetic images generated per class "
                                  "(generate.images_per_class)."),
    "num_shards": Parameter("generate.num_shards", int, "Generation shards, one GPU task each (generate.num_shards)."),
    "generator": Parameter("models.generator", str, "Text-to-image model (models.generator): sd15, sd21, sd-turbo, "
                           "sdxl-turbo or a diffusers id."),
    "seed": Parameter("seed", int, "Run seed: every prompt's and image's seed derives from it (seed)."),
    "store_root": Parameter("store.root", str, "Artifact store (store.root), s3://bucket/prefix; a local folder "
                            "means $SYNK8S_STORE_ROOT of the synk8s-config ConfigMap."),
    "prompts_mode": Parameter("prompts.mode", str, "Prompts (prompts.mode): B, the class name in a template, or LE, "
                              "T5 sentences from the class name (Table 2)."),
    "filter_enabled": Parameter("filter.enabled", bool, "CLIP filter (filter.enabled): drop synthetic images CLIP "
                                "does not see as their class (Table 2's CF)."),
    "tune_loss": Parameter("tune.loss", str, "Classifier-tuning loss (tune.loss): ce, or sce with CLIP's soft "
                           "targets (Table 2)."),
    "tune_epochs": Parameter("tune.epochs", int, "Classifier-tuning epochs (tune.epochs)."),
    "shots": Parameter("fewshot.shots_per_class", int, "M: real training images per class "
                       "(fewshot.shots_per_class)."),
    "fewshot_schedule": Parameter("fewshot.schedule", str, "How real and synthetic batches alternate "
                                  "(fewshot.schedule): mix, syn-then-real or real-then-syn (Table 7)."),
    "fewshot_epochs": Parameter("fewshot.epochs", int, "Few-shot tuning epochs over the synthetic images "
                                "(fewshot.epochs)."),
    "label_space": Parameter("pretrain.label_space", str, "Classes to generate and pre-train on "
                             "(pretrain.label_space): cifar100, imagenet-1k or imagenet-2k; dataset.name follows."),
    "method": Parameter("pretrain.method", str, "Pre-training method (pretrain.method): supervised or moco."),
    "pretrain_images": Parameter("pretrain.images", int, "Synthetic images in total for pre-training "
                                 "(pretrain.images), spread evenly over the classes."),
    "pretrain_epochs": Parameter("pretrain.epochs", int, "Supervised pre-training epochs (pretrain.epochs; MoCo: "
                                 "pretrain.moco.epochs in overrides)."),
}
# Pipeline parameter -> the config key it sets.
NAMED_PARAMS: dict[str, str] = {name: parameter.key for name, parameter in PARAMETERS.items()}
# The typed parameters of :func:`pipeline_arguments` when no pipeline names its own.
BASE_PARAMETERS = ("dataset", "images_per_class", "num_shards", "generator", "seed", "store_root")

STORE_ROOT_ENV = "SYNK8S_STORE_ROOT"

# What the Kubeflow UI says of each pipeline parameter (see :func:`describe_parameters`).
PARAMETER_HELP: dict[str, str] = {
    "profile": "Shipped profile the run starts from: paper (the paper's settings) or tiny (random-weight demo).",
    **{name: parameter.help for name, parameter in PARAMETERS.items()},
    "overrides": "Every config field without a parameter of its own, as a JSON list of \"key.path=value\" "
    'strings, e.g. ["tune.lr=0.001", "filter.threshold=0.2"]; a typed parameter wins over the same key here; '
    "see `synk8s config show`.",
    "gpu_node_selector": "Node labels of the GPU node pool; GPU tasks (marked GPU) run there.",
    "gpu_tolerations": "Tolerations of the GPU node pool's taints, for the GPU tasks.",
}


def _leaves(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config to ``{"section.field": json_value}``, nested sections (``pretrain.moco``) too;
    mapping-valued fields stay whole."""
    from pydantic import BaseModel

    flat: dict[str, Any] = {}
    for name, field in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            flat.update(_leaves(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = cfg.model_dump(mode="json", include={name})[name]
    return flat


def describe_parameters(pipeline_func: Any) -> Any:
    """Give every input parameter of a ``@dsl.pipeline`` function its description; returns the function.

    Parameters of :data:`PARAMETER_HELP` get its text; any other one, the config field it sets
    when :data:`NAMED_PARAMS` names it, else a plain note. A description already set stays.
    """
    parameters = pipeline_func.pipeline_spec.root.input_definitions.parameters
    for name, parameter in parameters.items():
        if not parameter.description:
            key = NAMED_PARAMS.get(name)
            parameter.description = PARAMETER_HELP.get(name) or (
                f"Config field {key}." if key else f"Pipeline parameter {name}; see the pipeline's docs."
            )
    return pipeline_func


def config_diff(cfg: ExperimentConfig) -> list[str]:
    """Overrides that turn ``cfg.profile`` into ``cfg``, as ``key.path=<JSON value>`` strings.

    JSON is valid YAML, so :func:`synk8s.config.load` reads every value back with its type.
    """
    from synk8s import config

    base = _leaves(config.load(cfg.profile))
    return [
        f"{key}={json.dumps(value, sort_keys=True)}"
        for key, value in _leaves(cfg).items()
        if key != "profile" and base[key] != value
    ]


def pipeline_arguments(cfg: ExperimentConfig, names: Sequence[str] = BASE_PARAMETERS) -> dict[str, Any]:
    """The pipeline parameters that describe ``cfg``: profile, the typed ``names`` and the rest as overrides.

    Args:
        cfg: the run's config.
        names: typed parameters of :data:`PARAMETERS` the pipeline has (its module's ``PARAMETERS``).
    """
    leaves = _leaves(cfg)
    named_keys = {NAMED_PARAMS[name] for name in names}
    extra = [text for text in config_diff(cfg) if text.partition("=")[0] not in named_keys]
    return {
        "profile": cfg.profile,
        **{name: leaves[NAMED_PARAMS[name]] for name in names},
        "overrides": json.dumps(extra),
    }


def config_from_arguments(*, profile: str, overrides: str = "[]", **named: Any) -> ExperimentConfig:
    """Resolve pipeline parameters into a validated config.

    Args:
        profile: profile name (``paper``, ``tiny``).
        overrides: JSON list of ``key.path=value`` strings, applied first.
        **named: typed parameters of :data:`PARAMETERS`; applied after ``overrides``, so a value
            edited in the Kubeflow UI wins over the same key inside ``overrides``. ``label_space``
            also sets ``dataset.name`` to the dataset its class names come from.

    Raises:
        UsageError: unknown parameter, malformed ``overrides``, or a bad value.
    """
    from synk8s import config, datasets
    from synk8s.errors import UsageError
    from synk8s.labelspace import SOURCE_DATASETS

    unknown = sorted(set(named) - set(NAMED_PARAMS))
    if unknown:
        raise UsageError(f"unknown pipeline parameter {unknown[0]!r}; known: {', '.join(NAMED_PARAMS)}")
    try:
        extra = json.loads(overrides)
    except json.JSONDecodeError:
        extra = None
    if not isinstance(extra, list) or not all(isinstance(item, str) for item in extra):
        raise UsageError(f'overrides must be a JSON list of "key.path=value" strings, got {overrides!r}')
    as_text = [f"{NAMED_PARAMS[param]}={json.dumps(value)}" for param, value in named.items()]
    if named.get("label_space") in SOURCE_DATASETS:
        as_text.append(f"dataset.name={SOURCE_DATASETS[named['label_space']]}")
    cfg = config.load(profile, [*extra, *as_text])
    if cfg.dataset.name != datasets.CUSTOM:  # a custom label space is a classification one
        datasets.require_classification(cfg.dataset.name)
    return cfg


def pod_store_root(store_root: str) -> str:
    """The store root a task uses: ``store_root``, or ``$SYNK8S_STORE_ROOT`` for a local one in a pod.

    Outside a KFP task pod (no ``KFP_POD_NAME``, which the KFP backend sets in every task pod; a
    notebook pod running ``--local`` has none) and for an ``s3://`` root, ``store_root`` is returned
    as is. In a task pod a local folder is private to that pod, so the ConfigMap's
    ``SYNK8S_STORE_ROOT`` takes its place.

    Raises:
        UsageError: in a pod with a local ``store_root`` and no ``s3://`` ``SYNK8S_STORE_ROOT``.
    """
    from synk8s import storage
    from synk8s.errors import UsageError

    if not os.environ.get("KFP_POD_NAME") or storage.is_remote(store_root):
        return store_root
    shared = os.environ.get(STORE_ROOT_ENV, "").strip()
    if not shared or not storage.is_remote(shared):
        raise UsageError(
            f"store_root {store_root!r} is a folder inside this pod, which other tasks cannot read, and "
            f"{STORE_ROOT_ENV} is not an s3:// URI; pass store_root=s3://bucket/prefix"
        )
    return shared
