"""The tasks of a pipeline, read from its compiled spec: what ``submit --dry-run`` prints.

    for task in pipeline_tasks("zeroshot", cfg):
        print(task.display, task.stage, task.gpu, task.after)

Nothing here knows a pipeline by name: the tasks are those the pipeline function adds, matched to
the rows of the stage table by their component names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synk8s.config import ExperimentConfig
from synk8s.stages.table import TABLE


@dataclass(frozen=True)
class TaskInfo:
    """One task of a pipeline.

    Attributes:
        task: the task's name in the spec (``generate-shards``, ``for-loop-1``'s ``generate``, ...).
        display: the name the Kubeflow UI shows.
        stage: the stage of the table it runs (a collect step counts as its stage); None for
            ``plan``, shard lists and loops.
        gpu: whether it asks for a GPU.
        after: the tasks it waits for (loops resolved to the tasks before them).
        loop: True for a task inside a ParallelFor (one task per shard).
    """

    task: str
    display: str
    stage: str | None
    gpu: bool
    after: tuple[str, ...]
    loop: bool = False


def _stage_of(component: str) -> tuple[str | None, bool]:
    """The table stage a component runs (and whether it is that stage's own function), from its name."""
    name = component.removeprefix("comp-").replace("-", "_")
    for spec in TABLE:
        if name == spec.name:
            return spec.name, True
        if spec.shards and name == spec.shards.collect_name:
            return spec.name, False
    return None, False


def pipeline_tasks(name: str, cfg: ExperimentConfig) -> list[TaskInfo]:
    """The tasks of pipeline ``name`` under ``cfg``, each after the tasks it waits for."""
    from synk8s.pipelines import build

    spec = build(name, cfg).pipeline_spec
    found: list[TaskInfo] = []

    def walk(dag: Any, outer: tuple[str, ...], loop: bool) -> None:
        for task_name, task in dag.tasks.items():
            component = spec.components[task.component_ref.name]
            after = tuple(sorted({*task.dependent_tasks, *outer}))
            if component.HasField("dag"):  # a ParallelFor: its tasks wait for what the loop waits for
                walk(component.dag, after, True)
                continue
            stage, own = _stage_of(task.component_ref.name)
            gpu = bool(stage and own and TABLE.get(stage).needs_gpu(cfg))
            found.append(TaskInfo(task_name, task.task_info.name or task_name, stage, gpu, after, loop))

    walk(spec.root.dag, (), False)
    # A ParallelFor in ``after`` stands for the tasks inside it; names become display names.
    inside = _loop_members(spec)
    display = {t.task: t.display for t in found}
    resolved = []
    for info in found:
        after = []
        for name in info.after:
            after += [display[m] for m in inside.get(name, [name]) if m in display]
        resolved.append(TaskInfo(info.task, info.display, info.stage, info.gpu, tuple(sorted(set(after))), info.loop))
    ordered: list[TaskInfo] = []
    while len(ordered) < len(resolved):
        placed = {t.display for t in ordered}
        ordered += [t for t in resolved if t not in ordered and set(t.after) <= placed][:1]
    return ordered


def _loop_members(spec: Any) -> dict[str, list[str]]:
    """The tasks inside each ParallelFor of the pipeline's root, by the loop task's name."""
    members = {}
    for name, task in spec.root.dag.tasks.items():
        component = spec.components[task.component_ref.name]
        if component.HasField("dag"):
            members[name] = list(component.dag.tasks)
    return members

