"""The edge where a run's config is made: profile, ``--set`` overrides and flags in, a checked config out.

    cfg = resolve("tiny", ["tune.epochs=3"], dataset="eurosat")        # the CLI commands
    cfg = config_from_arguments(profile="tiny", overrides="[]", seed=1)  # the pipelines' plan task

Every entry point resolves a run's config here once: ``synk8s submit``, ``plan``, ``compile``,
``stage``, ``config show`` and ``runs`` call :func:`resolve`; a pipeline's ``plan`` task calls
:func:`config_from_arguments` with its typed parameters (they can be edited in the Kubeflow UI, so
it checks them again). :func:`synk8s.config.load` checks what a config says on its own (keys, types,
ranges); :func:`check` adds what needs the registries and the store:

- ``dataset.name`` and ``pretrain.finetune.dataset`` are registered classification datasets;
- ``models.generator``, ``clip``, ``le`` and ``backbone`` are registered (the generator and LE
  model may also be hub ids);
- ``store.root`` and ``models.cache`` are folders or ``s3://bucket[/prefix]`` (a ``file:`` URI
  becomes its local path).

What comes out travels on as JSON (``config_json`` between pipeline tasks, a file for distributed
workers) and is read back by :func:`read_resolved`, which trusts it: below the edge nothing checks
a dataset or model name again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from synk8s import config, datasets, models, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import UsageError
from synk8s.flags import FILE_FLAGS, PARAMETERS, as_overrides
from synk8s.labelspace import SOURCE_DATASETS


def resolve(profile: str, overrides: Sequence[str] = (), *, upload: bool = True, **flags: Any) -> ExperimentConfig:
    """The checked config of a profile, ``key.path=value`` overrides and run flags.

    Args:
        profile: a shipped profile (``paper``, ``tiny``) or a profile file that extends one.
        overrides: ``key.path=value`` strings, applied in order.
        **flags: values of :data:`synk8s.flags.FLAGS` by name (None: not given), applied after
            ``overrides``, so a flag wins over the same key there. ``label_space`` also sets
            ``dataset.name`` to the dataset its class names come from. ``classes`` and ``images``
            (``--classes``, ``--images``) name your own label space and images: the classes file is
            checked and copied into the store, and ``dataset.name`` becomes ``custom``
            (:func:`synk8s.datasets.custom.overrides`).
        upload: copy the classes file into the store; False only names where it would go (``plan``).

    Raises:
        UsageError: a bad profile, override or value, or a name no registry knows (see :func:`check`).
    """
    files = {name: flags.pop(name, None) for name in FILE_FLAGS}
    named = as_overrides(flags)
    space = flags.get("label_space")
    if space in SOURCE_DATASETS:
        named.append(f"dataset.name={json.dumps(SOURCE_DATASETS[space])}")
    cfg = config.load(profile, [*overrides, *named])
    if any(value is not None for value in files.values()):
        from synk8s.datasets.custom import overrides as custom_overrides

        found = custom_overrides(files["classes"], files["images"], cfg.store.root, upload=upload)
        cfg = config.load(profile, [*overrides, *named, *found])
    return check(cfg)


def config_from_arguments(*, profile: str, overrides: str = "[]", **named: Any) -> ExperimentConfig:
    """The checked config of a pipeline run's parameters (the inverse of
    :func:`synk8s.components.params.pipeline_arguments`).

    Args:
        profile: profile name (``paper``, ``tiny``).
        overrides: JSON list of ``key.path=value`` strings, applied first.
        **named: typed parameters of :data:`synk8s.flags.PARAMETERS`; applied after ``overrides``, so
            a value edited in the Kubeflow UI wins over the same key inside ``overrides``.

    Raises:
        UsageError: unknown parameter, malformed ``overrides``, or what :func:`resolve` refuses.
    """
    unknown = sorted(set(named) - set(PARAMETERS))
    if unknown:
        raise UsageError(f"unknown pipeline parameter {unknown[0]!r}; known: {', '.join(PARAMETERS)}")
    try:
        extra = json.loads(overrides)
    except json.JSONDecodeError:
        extra = None
    if not isinstance(extra, list) or not all(isinstance(item, str) for item in extra):
        raise UsageError(f'overrides must be a JSON list of "key.path=value" strings, got {overrides!r}')
    return resolve(profile, extra, **named)


def check(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` once its names are known to the registries and its roots are sound; ``file:`` roots become paths.

    Raises:
        UsageError: one line naming the first bad value: an unknown or detection dataset, an
            unknown model, or a store root or model cache that is no folder or ``s3://`` URI.
    """
    if cfg.dataset.name != datasets.CUSTOM:  # a custom label space is checked where its file is read
        datasets.require_classification(cfg.dataset.name)
    models.get_generator_info(cfg.models.generator)  # also takes any diffusers model id
    models.get_clip_info(cfg.models.clip)
    models.get_le_info(cfg.models.le)  # also takes any hub id of the form owner/name
    models.get_backbone_info(cfg.models.backbone)
    cache = None if cfg.models.cache is None else _checked_root("models.cache", cfg.models.cache)
    if cfg.pretrain.finetune.dataset != datasets.CUSTOM:
        datasets.require_classification(cfg.pretrain.finetune.dataset)
    root = _checked_root("store.root", cfg.store.root)
    if (root, cache) == (cfg.store.root, cfg.models.cache):
        return cfg
    store, cached = cfg.store.model_copy(update={"root": root}), cfg.models.model_copy(update={"cache": cache})
    return cfg.model_copy(update={"store": store, "models": cached})


def _checked_root(key: str, uri: str) -> str:
    """``uri`` if it is a folder or ``s3://bucket[/prefix]``; otherwise a one-line UsageError naming ``key``."""
    try:
        return storage.check_root(uri)
    except UsageError as err:
        raise UsageError(f"{key}: {err}") from None


def read_resolved(config_json: str | bytes) -> ExperimentConfig:
    """A config that came through this edge, read back from its JSON.

    Its keys, types and ranges are validated as any config's; its names are not looked up again
    (:func:`check` did that where it was resolved).
    """
    return ExperimentConfig.model_validate_json(config_json)
