"""Kubeflow pipelines assembled from the stage components (installed as ``synk8s.pipelines``).

    build("zeroshot", cfg)                       # the @dsl.pipeline function
    compile_pipeline("zeroshot", cfg, "z.yaml")  # the YAML that Kubeflow Pipelines runs
    local.run_local("zeroshot", cfg)             # run it here with kfp.local

Each pipeline module defines ``build_pipeline(cfg, ...)``, which adds table stages through a
:class:`synk8s.pipelines.wiring.Wiring` that :func:`~synk8s.pipelines.wiring.planned_pipeline` has
planned, and ``PARAMETERS``, its typed pipeline parameters (:func:`arguments` gives a run's values). The compiled paper-profile pipelines are kept under
``pipelines/compiled/`` (see :func:`compiled_path`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synk8s.errors import UsageError

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig

PIPELINES = ("zeroshot", "fewshot", "fewshot_sweep", "pretrain")


def build(name: str, cfg: ExperimentConfig, **options: Any):
    """The ``@dsl.pipeline`` function of pipeline ``name`` for ``cfg``.

    Args:
        name: one of :data:`PIPELINES`.
        cfg: the resolved config.
        **options: keyword options of the pipeline's ``build_pipeline`` (``retry``, ``parallelism``, ``threads``).

    Raises:
        UsageError: unknown pipeline name.
    """
    from synk8s.components.params import describe_parameters

    return describe_parameters(_module(name).build_pipeline(cfg, **options))


def _module(name: str) -> Any:
    if name not in PIPELINES:
        raise UsageError(f"unknown pipeline {name!r}; choose one of: {', '.join(PIPELINES)}")
    return importlib.import_module(f"synk8s.pipelines.{name}")


def prepare(name: str, cfg: ExperimentConfig) -> ExperimentConfig:
    """The config pipeline ``name`` runs for ``cfg``: its ``prepare_config`` fills fields it needs (pretrain:
    the label space); submitting passes this config's parameters.

    Raises:
        UsageError: unknown pipeline name.
    """
    module = _module(name)
    return module.prepare_config(cfg) if hasattr(module, "prepare_config") else cfg


def arguments(name: str, cfg: ExperimentConfig) -> dict[str, Any]:
    """The parameters a run of pipeline ``name`` with ``cfg`` passes: profile, the pipeline's typed
    parameters (its module's ``PARAMETERS``) and every other field in ``overrides``.

    Raises:
        UsageError: unknown pipeline name.
    """
    from synk8s.components.params import pipeline_arguments

    return pipeline_arguments(cfg, _module(name).PARAMETERS)


def compile_pipeline(name: str, cfg: ExperimentConfig, path: str | Path) -> Path:
    """Compile pipeline ``name`` for ``cfg`` to the YAML file ``path``; returns the path.

    The same pipeline and config always give the same bytes, and ``path`` is written only once
    the YAML is complete (see :mod:`synk8s.pipelines.spec_file`).

    Raises:
        UsageError: unknown pipeline name, ``path`` not ending in ``.yaml``/``.yml``, or not writable.
    """
    from synk8s.pipelines.spec_file import write_pipeline_yaml

    return write_pipeline_yaml(build(name, cfg), path)


def compiled_path(name: str) -> Path:
    """Where the compiled paper-profile YAML of pipeline ``name`` is kept in the repository."""
    return Path(__file__).resolve().parent / "compiled" / f"{name}.yaml"
