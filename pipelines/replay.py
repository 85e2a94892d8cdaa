"""A rerun without kfp.local: when every stage of the planned pipeline is complete, compute its output here.

kfp.local starts one Python process per task even when every stage then finds its folder complete
and resumes (a rerun of the README's zero-shot command spent about 24 s that way). While a pipeline
function is built, its :class:`~synk8s.pipelines.wiring.Wiring` records each task it adds as a
:class:`Step`: the plan and the small config tasks (which touch no store), the table stages (a
sharded one by its collect step), and the tasks that write a report from the stages' outputs.
:func:`complete_output` then replays those steps in this process::

    output = complete_output(build("zeroshot", cfg), arguments("zeroshot", cfg))
    if output is None: ...                            # some stage must run: start kfp.local

1. the config tasks are called (plan, config variants, a sweep's shot counts), so every stage gets
   the config its task would get;
2. every stage is checked with the test its resume uses (:meth:`synk8s.stages.table.StageTable.complete`:
   stage digest, recorded output hashes, readers); the first one that is not complete ends the
   replay with None, before anything is written;
3. only then the stages hand on what their tasks would (the ``finish`` hook's URI, e.g. the run
   report it writes again, or the folder) and the report tasks run, giving the pipeline's output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from synk8s.config import ExperimentConfig
from synk8s.stages.table import TABLE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One task of a pipeline as this process can replay it.

    Attributes:
        task: the pipeline task (its name keys the outputs that later tasks read).
        arguments: what the task was given: constants and channels of pipeline parameters or of
            earlier tasks' outputs.
        stage: the table stage it runs (for a sharded stage, its collect step); None for a call.
        func: the Python function of a call (``plan_run`` for the plan, a component's ``python_func``).
        store: the call reads or writes the store (a report); False for a pure config task.
    """

    task: Any
    arguments: dict[str, Any]
    stage: str | None = None
    func: Callable[..., Any] | None = None
    store: bool = True


@dataclass
class Recording:
    """The steps of one built pipeline, in the order they were added, and the channel of its output."""

    steps: list[Step] = field(default_factory=list)
    output: Any = None


class _Incomplete(Exception):
    """A stage of the pipeline must run."""


def _value(argument: Any, outputs: Mapping[tuple[str | None, str], Any]) -> Any:
    """A constant as it is; a channel as the pipeline argument or the earlier task output it stands for."""
    name = getattr(argument, "name", None)
    if name is None or not hasattr(argument, "task_name"):
        return argument
    return outputs[(argument.task_name, name)]


def _stage_output(step: Step, outputs: Mapping[tuple[str | None, str], Any], write: bool) -> str:
    """Check the stage's folder (``write`` False), or hand on what its task would (``write``: its ``finish`` hook)."""
    cfg = ExperimentConfig.model_validate_json(_value(step.arguments["config_json"], outputs))
    run = _value(step.arguments["run_dir"], outputs)
    if not write and not TABLE.complete(step.stage, cfg, run):
        log.debug("%s is not complete in %s: the pipeline runs", step.stage, run)
        raise _Incomplete(step.stage)
    spec = TABLE.get(step.stage)
    if write and spec.finish and not spec.shards:
        return spec.finish(cfg, run, TABLE.folders(step.stage, run, cfg))
    return TABLE.stage_dir(run, step.stage, cfg)


def _replay(recording: Recording, arguments: Mapping[str, Any], *, write: bool) -> Any:
    """Walk the steps; ``write`` False: check only (store calls are skipped); True: also produce the output."""
    outputs: dict[tuple[str | None, str], Any] = {(None, name): value for name, value in arguments.items()}
    for step in recording.steps:
        if step.stage is not None:
            result: Any = _stage_output(step, outputs, write)
        elif step.store and not write:
            continue
        else:
            result = _call(step, outputs)
        _keep(step, result, outputs)
    return _value(recording.output, outputs) if write else None


def _call(step: Step, outputs: Mapping[tuple[str | None, str], Any]) -> Any:
    return step.func(**{name: _value(value, outputs) for name, value in step.arguments.items()})


def _keep(step: Step, result: Any, outputs: dict[tuple[str | None, str], Any]) -> None:
    """Record what ``step``'s task returned under the names later tasks read it by."""
    if hasattr(result, "_fields"):  # a NamedTuple of outputs, e.g. the plan's config_json and run_dir
        outputs.update({(step.task.name, name): getattr(result, name) for name in result._fields})
    else:
        outputs[(step.task.name, "Output")] = result


def stage_configs(pipeline_func: Any, arguments: Mapping[str, Any]) -> list[tuple[str, ExperimentConfig]]:
    """Every table stage of the pipeline with the config its task runs with, in pipeline order.

    Only the config tasks are called (plan, config variants, a sweep's shot counts); nothing is read
    from the store. What preflight checks per stage (e.g. a variant's ``pretrain.finetune.init``).
    """
    outputs: dict[tuple[str | None, str], Any] = {(None, name): value for name, value in arguments.items()}
    found = []
    for step in pipeline_func.recording.steps:
        if step.stage is not None:
            config_json = _value(step.arguments["config_json"], outputs)
            found.append((step.stage, ExperimentConfig.model_validate_json(config_json)))
        elif not step.store:
            _keep(step, _call(step, outputs), outputs)
    return found


def complete_output(pipeline_func: Any, arguments: Mapping[str, Any]) -> Any:
    """The output of the pipeline run with ``arguments`` when every stage of it is complete; else None.

    Args:
        pipeline_func: a pipeline function built by :func:`synk8s.pipelines.build` (it carries its
            :class:`Recording` as ``recording``).
        arguments: the run's pipeline parameters (:func:`synk8s.pipelines.arguments`).

    Returns:
        What the pipeline would return (a report's URI), computed here; None when a stage is not
        complete, or the pipeline recorded nothing to replay.
    """
    recording = getattr(pipeline_func, "recording", None)
    if recording is None or not recording.steps:
        return None
    try:
        _replay(recording, arguments, write=False)
        return _replay(recording, arguments, write=True)
    except _Incomplete:
        return None
