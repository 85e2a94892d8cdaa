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
2. every stage is checked with the test its resume uses (:meth:`synk8s.stagetable.StageTable.complete`:
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
from synk8s.resolve import read_resolved
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


def _walk(
    recording: Recording,
    arguments: Mapping[str, Any],
    on_stage: Callable[[str, ExperimentConfig, str], Any],
    *,
    store: bool,
) -> dict[tuple[str | None, str], Any]:
    """Walk the steps in order: ``on_stage(stage, config, run folder)`` for every table stage, the
    config tasks called, the store tasks called only with ``store``; returns every task's outputs."""
    outputs: dict[tuple[str | None, str], Any] = {(None, name): value for name, value in arguments.items()}
    for step in recording.steps:
        if step.stage is not None:
            cfg = read_resolved(_value(step.arguments["config_json"], outputs))
            result: Any = on_stage(step.stage, cfg, _value(step.arguments["run_dir"], outputs))
        elif step.store and not store:
            continue
        else:
            result = step.func(**{name: _value(value, outputs) for name, value in step.arguments.items()})
        _keep(step, result, outputs)
    return outputs


def _check(stage: str, cfg: ExperimentConfig, run: str) -> str:
    """The stage's folder when it is complete (the test its resume uses); else the replay ends."""
    if not TABLE.complete(stage, cfg, run):
        log.debug("%s is not complete in %s: the pipeline runs", stage, run)
        raise _Incomplete(stage)
    return TABLE.stage_dir(run, stage, cfg)


def _hand_on(stage: str, cfg: ExperimentConfig, run: str) -> str:
    """What the stage's task hands on: its ``finish`` hook's URI (e.g. the run report, written again), else its folder."""
    spec = TABLE.get(stage)
    if spec.finish and not spec.shards:
        return spec.finish(cfg, run, TABLE.folders(stage, run, cfg))
    return TABLE.stage_dir(run, stage, cfg)


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
    found: list[tuple[str, ExperimentConfig]] = []

    def collect(stage: str, cfg: ExperimentConfig, run: str) -> str:
        found.append((stage, cfg))
        return TABLE.stage_dir(run, stage, cfg)

    _walk(pipeline_func.recording, arguments, collect, store=False)
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
        _walk(recording, arguments, _check, store=False)  # every stage checked before anything is written
    except _Incomplete:
        return None
    return _value(recording.output, _walk(recording, arguments, _hand_on, store=True))
