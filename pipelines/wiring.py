"""Wiring table stages into a pipeline: inputs, resources, GPU, store access, shards, retries, threads.

A pipeline module writes one body over a :class:`Wiring` that :func:`planned_pipeline` has
already planned (the pipeline's typed parameters, ``profile`` and ``overrides`` feed the ``plan`` task), and
adds stages by name; each stage's inputs are the outputs of the stages the table says it reads,
added before it::

    @planned_pipeline(cfg, parameters=("dataset", "seed", ...), name="synk8s-zeroshot", description="...")
    def zeroshot(wire: Wiring) -> Any:
        wire.add("prompts")
        wire.add("generate")                      # sharded: shard list, ParallelFor, collect
        wire.add("filter")
        return wire.add("evaluate").outputs["Output"]

Everything a task needs is taken from the stage's table row and the config: its component and
image, CPU and memory, a GPU with the GPU node pool's selector and tolerations when the stage
needs one, a memory-backed ``/dev/shm`` of ``cluster.shm_size`` when it runs DataLoader workers, the
store's ConfigMap and credentials Secret, caching, and for a sharded stage the
ParallelFor limit and generation retries.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

from kfp import dsl, kubernetes
from synk8s.components.params import pipeline_arguments
from synk8s.components.stages import make_components, make_plan
from synk8s.components.transfer import make_transfer_components
from synk8s.pipelines.replay import Recording, Step

from synk8s.config import ExperimentConfig
from synk8s.errors import UsageError
from synk8s.flags import PARAMETERS, STORE_ROOT_ENV
from synk8s.stages.table import TABLE
from synk8s.stagetable.spec import Resources

# plan and a shard list only turn parameters into small strings (the shard list also stores the config once).
LIGHT = Resources("250m", "1", "512Mi", "1Gi")
SHM_VOLUME = "dshm"  # the emptyDir mounted at /dev/shm (see Wiring.configure)


class Wiring:
    """Adds table stages as tasks of the pipeline being defined (call inside a ``@dsl.pipeline`` function)."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        *,
        gpu_node_selector: Any,
        gpu_tolerations: Any,
        retry: bool = True,
        parallelism: int | None = None,
        threads: int | None = None,
    ) -> None:
        """Bind the wiring to a config and the pipeline's GPU node-pool parameters.

        Args:
            cfg: the compile-time config (images, accelerator, Secret and ConfigMap names, retries,
                shard counts).
            gpu_node_selector: the pipeline parameter (or value) selecting GPU nodes.
            gpu_tolerations: the pipeline parameter (or value) tolerating the GPU nodes' taints.
            retry: retry a failed shard task ``cluster.generate_retries`` times with exponential
                backoff from 60 s (a preempted GPU node).
            parallelism: shard tasks that run at once; None: all shards of ``cfg``.
            threads: set ``OMP_NUM_THREADS`` (torch's intra-op threads) in every task; None leaves
                the image's default.
        """
        self.cfg = cfg
        self.comps = make_components(cfg)
        self.extra = make_transfer_components(cfg)
        self.gpu = {"node_selector_json": gpu_node_selector, "toleration_json": gpu_tolerations}
        self.retry = retry
        self.parallelism = parallelism
        self.threads = threads
        self.tasks: dict[str, dsl.PipelineTask] = {}
        self.recording = Recording()  # what a rerun replays here (see synk8s.pipelines.replay); branches share it
        self.config_json: Any = None
        self.run_dir: Any = None
        self.label = ""  # display-name suffix of a branch's tasks (see branch)

    @classmethod
    def planned(
        cls,
        cfg: ExperimentConfig,
        parameters: dict[str, Any],
        *,
        retry: bool = True,
        parallelism: int | None = None,
        threads: int | None = None,
    ) -> Wiring:
        """A wiring bound to ``cfg`` whose ``plan`` task already reads the pipeline ``parameters``.

        Args:
            cfg: the compile-time config (see :meth:`__init__`).
            parameters: the pipeline function's parameters by name: ``gpu_node_selector`` and
                ``gpu_tolerations`` go to the GPU tasks, every other one to ``plan``.
            retry, parallelism, threads: see :meth:`__init__`.
        """
        plan = dict(parameters)
        wire = cls(
            cfg,
            gpu_node_selector=plan.pop("gpu_node_selector"),
            gpu_tolerations=plan.pop("gpu_tolerations"),
            retry=retry,
            parallelism=parallelism,
            threads=threads,
        )
        wire.plan(**plan)
        return wire

    def branch(self, cfg: ExperimentConfig, config_json: Any, label: str) -> Wiring:
        """A wiring for a variant of the run (e.g. one shot count of a sweep) in the same run folder.

        Its stages read ``config_json`` (a task output resolving the variant's config) and its tasks'
        display names end in `` label``; the stages added so far are shared, and what the branch adds
        stays its own.

        Args:
            cfg: the variant's compile-time config (it picks the branch's :class:`~synk8s.stagetable.spec.Choice` inputs).
            config_json: the variant's resolved config at run time.
            label: appended to the display names of the branch's tasks, e.g. ``M=4``.
        """
        other = copy.copy(self)  # the components, GPU parameters, run folder and settings are shared
        other.cfg, other.config_json, other.label = cfg, config_json, f"{self.label} {label}".strip()
        other.tasks = dict(self.tasks)
        return other

    def configure(
        self,
        task: dsl.PipelineTask,
        name: str,
        resources: Resources,
        *,
        gpu: bool = False,
        store: bool = True,
        shm: bool = False,
    ) -> dsl.PipelineTask:
        """Display name, caching, CPU and memory, store access; with ``gpu``, one GPU on the GPU pool.

        With ``shm``, a memory-backed ``/dev/shm`` of ``cluster.shm_size``: DataLoader workers hand
        batches over through it, and a container's default of 64 MiB stops them (it counts against the
        task's memory limit only as far as it is filled).

        A GPU task's display name says so (``filter [GPU]``), so the Kubeflow UI shows which tasks wait
        for the GPU node pool.
        """
        shown = f"{name} {self.label}".strip()
        task.set_display_name(f"{shown} [GPU]" if gpu else shown).set_caching_options(True)
        task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
        task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
        _store_access(task, self.cfg, credentials=store)
        if gpu:
            task.set_accelerator_type(self.cfg.cluster.accelerator).set_accelerator_limit(1)
            kubernetes.add_node_selector_json(task, node_selector_json=self.gpu["node_selector_json"])
            kubernetes.add_toleration_json(task, toleration_json=self.gpu["toleration_json"])
        if shm:
            # The pod's shared-memory mount point for data-loader workers, not a temporary file path.
            shm_path = "/dev/shm"  # nosec B108
            size = self.cfg.cluster.shm_size
            kubernetes.empty_dir_mount(task, volume_name=SHM_VOLUME, mount_path=shm_path, medium="Memory", size_limit=size)
        if self.threads:
            task.set_env_variable("OMP_NUM_THREADS", str(self.threads))  # torch's intra-op threads follow it
        return task

    def call(
        self, component: Any, name: str, *, store: bool = True, after: tuple[Any, ...] = (), **arguments: Any
    ) -> dsl.PipelineTask:
        """A small CPU task of a component of the pipeline's own (not a table stage), e.g. a report.

        Args:
            component: a ``dsl.component`` of a plain function.
            name: the task's display name.
            store: it reads or writes the store (credentials); False for a config task.
            after: tasks it waits for without reading their outputs.
            **arguments: the component's arguments (constants, parameters or task outputs).
        """
        task = component(**arguments)
        if after:
            task.after(*after)
        self.configure(task, name, LIGHT, store=store)
        self.recording.steps.append(Step(task, arguments, func=component.python_func, store=store))
        return task

    def plan(self, **parameters: Any) -> dsl.PipelineTask:
        """The ``plan`` task: the pipeline parameters -> ``config_json`` and ``run_dir`` for every stage.

        Its component takes exactly the typed parameters given (besides ``profile`` and ``overrides``).
        """
        from synk8s.components.plan import plan_run

        names = [name for name in parameters if name in PARAMETERS]
        task = self.configure(make_plan(self.cfg, names)(**parameters), "plan", LIGHT, store=False)
        self.recording.steps.append(Step(task, dict(parameters), func=plan_run, store=False))
        self.config_json, self.run_dir = task.outputs["config_json"], task.outputs["run_dir"]
        return task

    def add(
        self, name: str, *, after: tuple[str, ...] = (), overrides: tuple[str, ...] = (), label: str | None = None
    ) -> dsl.PipelineTask:
        """Add stage ``name``, reading the outputs of its inputs' stages; returns the task whose output is its folder.

        Args:
            name: a stage of the table.
            after: stages (or labels) it must also wait for without reading them, beyond its row's ``after``.
            overrides: ``key.path=value`` strings this task's config sets on top of the run's (a ``variant``
                task makes that config); the stage's folder digest tells the variant apart.
            label: the task's display name and its key for ``after``; default ``name``. A variant needs
                its own label when the stage is added twice.

        Raises:
            UsageError: :meth:`plan` was not called, an input's stage (or an ``after`` stage) was not added
                before, the label is taken, or ``overrides`` are given for a sharded stage.
        """
        spec = TABLE.get(name)
        key = label or name
        after = (*spec.after, *after)
        if self.config_json is None:
            raise UsageError(f"plan the run before adding stage {name}")
        if key in self.tasks:
            raise UsageError(f"the pipeline already has a task {key!r}; give the variant another label")
        # a Choice is picked, a When read or not, by self.cfg
        upstream = {param: spec.upstream_stage(param, self.cfg) for param in spec.active_inputs(self.cfg)}
        missing = [s for s in (*upstream.values(), *after) if s not in self.tasks]
        if missing:
            raise UsageError(f"stage {name} needs {', '.join(missing)}: add it to the pipeline first")
        inputs = {param: self.tasks[stage].outputs["Output"] for param, stage in upstream.items()}
        if spec.shards:
            if overrides:
                raise UsageError(f"stage {name} is sharded: its shards share the run's config, so no overrides")
            task = self._sharded(name, inputs)
        else:
            config_json = self.config_json
            if overrides:
                made = self.call(
                    self.extra.variant,
                    f"{key}_config",
                    store=False,
                    config_json=self.config_json,
                    overrides=json.dumps(list(overrides)),
                )
                config_json = made.output
            task = self.comps.stages[name](config_json=config_json, run_dir=self.run_dir, **inputs)
            self.configure(task, key, spec.resources, gpu=spec.needs_gpu(self.cfg), shm=spec.needs_shm(self.cfg))
            self.recording.steps.append(Step(task, {"config_json": config_json, "run_dir": self.run_dir}, stage=name))
        for stage in after:
            task.after(self.tasks[stage])
        self.tasks[key] = task
        return task

    def add_through(self, *targets: str) -> dict[str, dsl.PipelineTask]:
        """Add ``targets`` and every stage they need that is not added yet, in table order (see
        :meth:`synk8s.stagetable.StageTable.closure`); returns the tasks added, by stage name."""
        added = {}
        for name in TABLE.closure(targets, self.cfg):
            if name not in self.tasks:
                added[name] = self.add(name)
        return added

    def _sharded(self, name: str, inputs: dict[str, Any]) -> dsl.PipelineTask:
        """Shard list -> one task per shard in a ParallelFor -> the collect task (returned)."""
        spec = TABLE.get(name)
        shards = self.comps.shard_lists[name](config_json=self.config_json, run_dir=self.run_dir, **inputs)
        self.configure(shards, f"{name}_shards", LIGHT)  # it stores the config the shard tasks read
        # All shards of the compiled config run at once; shards added at submit time queue behind them.
        with dsl.ParallelFor(shards.output, parallelism=self.parallelism or spec.shards.count(self.cfg)) as item:
            # Every argument from the loop item: see synk8s.components.run_stage.shard_items.
            shard = self.comps.stages[name](
                config_sha256=item.config_sha256,
                run_dir=item.run_dir,
                shard=item.shard,
                **{param: getattr(item, param) for param in spec.inputs},
            )
            self.configure(shard, name, spec.resources, gpu=spec.needs_gpu(self.cfg), shm=spec.needs_shm(self.cfg))
            if self.retry:
                shard.set_retry(num_retries=self.cfg.cluster.generate_retries, backoff_duration="60s", backoff_factor=2)
        collect = self.comps.collects[name](
            config_json=self.config_json, run_dir=self.run_dir, shards=dsl.Collected(shard.outputs["Output"])
        )
        self.recording.steps.append(Step(collect, {"config_json": self.config_json, "run_dir": self.run_dir}, stage=name))
        return self.configure(collect, spec.shards.collect_name, spec.shards.collect_resources)


def pipeline_parameters(cfg: ExperimentConfig, names: Sequence[str]) -> list[inspect.Parameter]:
    """The parameters of a pipeline function with the typed parameters ``names``, their defaults from ``cfg``.

    ``profile``, ``names`` (typed as :data:`~synk8s.flags.PARAMETERS` says) and
    ``overrides`` go to the plan; ``gpu_node_selector`` and ``gpu_tolerations`` to the GPU tasks.
    """
    values = {
        **pipeline_arguments(cfg, names),
        "gpu_node_selector": dict(cfg.cluster.gpu_node_selector),
        "gpu_tolerations": [dict(t) for t in cfg.cluster.gpu_tolerations],
    }
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    typed = {name: PARAMETERS[name].type for name in names}
    return [
        inspect.Parameter(name, kind, default=value, annotation=typed.get(name, type(value)))
        for name, value in values.items()
    ]


def planned_pipeline(
    cfg: ExperimentConfig,
    *,
    parameters: Sequence[str],
    name: str,
    description: str,
    retry: bool = True,
    parallelism: int | None = None,
    threads: int | None = None,
) -> Callable[[Callable[[Wiring], Any]], Any]:
    """Decorator: ``body(wire) -> output`` becomes a ``@dsl.pipeline`` function over a planned :class:`Wiring`.

    KFP reads a pipeline's parameters from its function's signature and calls it with one channel
    per parameter, in order; the function made here has the signature of
    :func:`pipeline_parameters` (defaults from ``cfg``), hands its arguments to
    :meth:`Wiring.planned` and returns what ``body`` returns (the pipeline's output). The function
    made carries its tasks' :class:`~synk8s.pipelines.replay.Recording` as ``recording``.

    Args:
        cfg: the compile-time config.
        parameters: the pipeline's typed parameters (names of
            :data:`~synk8s.flags.PARAMETERS`); every other config field is in ``overrides``.
        name: the pipeline's name in Kubeflow Pipelines.
        description: the pipeline's description.
        retry, parallelism, threads: see :meth:`Wiring.__init__`.
    """
    signature = pipeline_parameters(cfg, parameters)

    def decorate(body: Callable[[Wiring], Any]) -> Any:
        built: list[Wiring] = []

        def pipeline_func(*arguments: Any) -> Any:
            given = dict(zip((p.name for p in signature), arguments))
            wire = Wiring.planned(cfg, given, retry=retry, parallelism=parallelism, threads=threads)
            wire.recording.output = body(wire)
            built.append(wire)
            return wire.recording.output

        pipeline_func.__name__ = pipeline_func.__qualname__ = body.__name__
        pipeline_func.__signature__ = inspect.Signature(signature, return_annotation=str)  # type: ignore[attr-defined]
        component = dsl.pipeline(name=name, description=description)(pipeline_func)
        component.recording = built[-1].recording  # KFP called pipeline_func once while building it
        return component

    return decorate


def _store_access(task: dsl.PipelineTask, cfg: ExperimentConfig, credentials: bool = True) -> None:
    """Store settings from the ConfigMap and credentials from the Secret; no values in the YAML.

    Every task gets ``SYNK8S_S3_ENDPOINT`` and ``SYNK8S_STORE_ROOT`` (``plan`` puts the latter in
    place of a local ``store_root``); tasks that read or write the store also get the credentials.
    """
    if credentials:
        kubernetes.use_secret_as_env(
            task,
            secret_name=cfg.cluster.s3_secret,
            secret_key_to_env={
                "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
            },
        )
    kubernetes.use_config_map_as_env(
        task,
        config_map_name=cfg.cluster.s3_config_map,
        config_map_key_to_env={"SYNK8S_S3_ENDPOINT": "SYNK8S_S3_ENDPOINT", STORE_ROOT_ENV: STORE_ROOT_ENV},
    )
