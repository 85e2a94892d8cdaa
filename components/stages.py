"""The KFP components of the stages, derived from the stage table, plus ``plan``.

Every table row becomes one lightweight component, a thin adapter over the stage function. KFP
embeds a component's Python source in the compiled pipeline, and a component's inputs are its
function's parameters, so each adapter's source is rendered from the row: ``config_json`` and
``run_dir``, one folder URI per input, ``shard`` for a sharded stage, a ``Metrics`` output and, for
a stage with a Markdown report, a ``Markdown`` output. The body calls the shared
:func:`synk8s.components.run_stage.run_stage`, so what a rendered source says is only the wiring::

    def filter(config_json: str, run_dir: str, images: str, metrics: dsl.Output[dsl.Metrics]) -> str:
        from synk8s.components.run_stage import run_stage

        return run_stage("filter", config_json, run_dir, metrics, images=images)

A sharded row's component takes ``config_sha256`` in place of ``config_json`` and calls
:func:`~synk8s.components.run_stage.run_shard`: its ``<name>_shards`` component stores the config
once in the run folder, and the ParallelFor items carry only its digest. The row also gets its
collect component.

Each rendered source is written to a real module file, ``<name>_<sha256 prefix>.py`` in a private
folder of the process (removed when it exits), and imported from there, so ``inspect.getsource``
(and so KFP) and tracebacks read the function from its file. The module top imports only the
standard library and kfp; a pipeline compiles without torch::

    comps = make_components(cfg)                  # images and GPU needs from the config
    comps.stages["filter"](config_json=..., run_dir=..., images=...)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp import dsl

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig
    from synk8s.stagetable.spec import StageSpec

_METRICS = "metrics: dsl.Output[dsl.Metrics]"
_REPORT = "report: dsl.Output[dsl.Markdown]"
# What a rendered function's annotations name; KFP embeds only the function, with imports of its own.
_MODULE_HEADER = "from typing import NamedTuple\n\nfrom kfp import dsl\n\n\n"
_MODULE_PACKAGE = "synk8s.components.rendered"


@dataclass(frozen=True)
class Components:
    """The components of one config, bound to their container images.

    Attributes:
        plan: resolves the pipeline parameters of :data:`~synk8s.components.params.BASE_PARAMETERS`
            (``config_json``, ``run_dir`` outputs); a pipeline with other typed parameters makes its
            own with :func:`make_plan`.
        stages: one component per table row, by stage name.
        shard_lists: a sharded stage's ParallelFor items, by stage name.
        collects: a sharded stage's collect step, by stage name.
    """

    plan: Any
    stages: dict[str, Any]
    shard_lists: dict[str, Any]
    collects: dict[str, Any]


def _function(name: str, params: list[str], returns: str, doc: str, helper: str, arguments: list[str]) -> str:
    """Source of ``def name(params) -> returns`` whose body calls ``helper(arguments)`` of ``run_stage``."""
    signature = f"def {name}({', '.join(params)}) -> {returns}:"
    if len(signature) > 100:
        signature = f"def {name}(\n" + "".join(f"    {param},\n" for param in params) + f") -> {returns}:"
    call = f"    return {helper}({', '.join(arguments)})"
    if len(call) > 100:
        call = f"    return {helper}(\n" + "".join(f"        {argument},\n" for argument in arguments) + "    )"
    imports = f"    from synk8s.components.run_stage import {helper}"
    return f'{signature}\n    """{doc}"""\n{imports}\n\n{call}\n'


def _ui_outputs(spec: StageSpec, *, folder: bool) -> tuple[list[str], list[str]]:
    """Parameters and ``run_stage`` arguments of the Kubeflow UI outputs a row declares."""
    params, arguments = [], []
    if folder and spec.artifact:
        params.append(f"folder: dsl.Output[dsl.{spec.artifact}]")
        arguments.append("folder=folder")
    if spec.attachments:
        names = {name: _attachment_param(name) for name in spec.attachments}
        params += [f"{param}: dsl.Output[dsl.Artifact]" for param in names.values()]
        arguments.append("attachments={" + ", ".join(f'"{n}": {p}' for n, p in names.items()) + "}")
    if spec.confusion:
        params.append("confusion: dsl.Output[dsl.ClassificationMetrics]")
        arguments.append("confusion=confusion")
    return params, arguments


def _attachment_param(name: str) -> str:
    """The component output name of an attached file: ``grid.png`` -> ``grid``."""
    return name.rsplit(".", 1)[0].replace("-", "_")


def stage_source(spec: StageSpec, cfg: ExperimentConfig) -> str:
    """The adapter source of a stage's component: one folder parameter per input ``cfg`` reads."""
    inputs = spec.active_inputs(cfg)
    config = "config_sha256" if spec.shards else "config_json"  # a shard reads the config the shard list stored
    params = [f"{config}: str", "run_dir: str", *(f"{name}: str" for name in inputs)]
    arguments = [f'"{spec.name}"', config, "run_dir", "metrics"]
    if spec.markdown:
        arguments.append("markdown=report")
    arguments += [f"{name}={name}" for name in inputs]
    if spec.shards:
        params.append("shard: int")
        arguments.append("shard=shard")
    params.append(_METRICS)
    if spec.markdown:
        params.append(_REPORT)
    ui_params, ui_arguments = _ui_outputs(spec, folder=not spec.shards)
    helper = "run_shard" if spec.shards else "run_stage"
    return _function(spec.name, params + ui_params, "str", spec.help, helper, arguments + ui_arguments)


def shard_list_source(spec: StageSpec) -> str:
    """The source of a sharded stage's ``<name>_shards`` component (one ParallelFor item per shard)."""
    params = ["config_json: str", "run_dir: str", *(f"{name}: str" for name in spec.inputs)]
    arguments = [f'"{spec.name}"', "config_json", "run_dir", *(f"{name}={name}" for name in spec.inputs)]
    doc = f"The items of the {spec.name} ParallelFor: one per shard, each with the digest of the stored config."
    return _function(f"{spec.name}_shards", params, "list[dict]", doc, "shard_items", arguments)


def collect_source(spec: StageSpec) -> str:
    """The source of a sharded stage's collect component; ``shards`` gathers the shard tasks' outputs."""
    params = ["config_json: str", "run_dir: str", "shards: list", _METRICS]
    arguments = [f'"{spec.name}"', "config_json", "run_dir", "shards", "metrics"]
    if spec.artifact:
        params.append(f"folder: dsl.Output[dsl.{spec.artifact}]")
        arguments.append("folder=folder")
    return _function(spec.shards.collect_name, params, "str", spec.shards.collect_help, "collect_shards", arguments)


@functools.cache
def _module_folder() -> tempfile.TemporaryDirectory:
    """The process's private folder (mode 0700) of rendered component modules; removed at exit."""
    return tempfile.TemporaryDirectory(prefix="synk8s-components-")


def _imported(source: str) -> Callable[..., Any]:
    """The function that ``source`` defines, imported from a module file holding it.

    The file is named by the function and a digest of ``source``, so components of different
    configs never share one. The module has no postponed annotations: KFP reads the parameter types.
    """
    name = source.split("(", 1)[0].removeprefix("def ")
    module_name = f"{name}_{hashlib.sha256(source.encode()).hexdigest()[:16]}"
    path = Path(_module_folder().name) / f"{module_name}.py"
    if not path.exists():
        path.write_text(_MODULE_HEADER + source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"{_MODULE_PACKAGE}.{module_name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _component(source: str, image: str) -> Any:
    """A KFP component of the function defined by ``source``, running in ``image`` with nothing installed."""
    return dsl.component(_imported(source), base_image=image, install_kfp_package=False)


def make_plan(cfg: "ExperimentConfig", names: Sequence[str]) -> Any:
    """The ``plan`` component of a pipeline whose typed parameters are ``names``, in ``cluster.cpu_image``."""
    from synk8s.components.plan import plan_source

    return _component(plan_source(names), cfg.cluster.cpu_image)


def make_components(cfg: "ExperimentConfig") -> Components:
    """Build every component for ``cfg``.

    A stage that needs a GPU under ``cfg`` runs in ``cluster.image`` (CUDA torch, the diffusion
    stack); every other task in ``cluster.cpu_image``. ``install_kfp_package=False``: a task
    installs nothing when it starts.
    """
    from synk8s.components.params import BASE_PARAMETERS

    from synk8s.stages.table import TABLE

    stages, shard_lists, collects = {}, {}, {}
    for spec in TABLE:
        image = cfg.cluster.image if spec.needs_gpu(cfg) else cfg.cluster.cpu_image
        stages[spec.name] = _component(stage_source(spec, cfg), image)
        if spec.shards:
            shard_lists[spec.name] = _component(shard_list_source(spec), cfg.cluster.cpu_image)
            collects[spec.name] = _component(collect_source(spec), cfg.cluster.cpu_image)
    return Components(plan=make_plan(cfg, BASE_PARAMETERS), stages=stages, shard_lists=shard_lists, collects=collects)
