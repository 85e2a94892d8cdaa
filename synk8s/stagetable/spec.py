"""The row type of the stage table: what the CLI, the KFP components and the pipelines know of a stage.

Each stage module ends with its row, ``STAGE = StageSpec(...)``, beside the code it describes; the
table (:mod:`synk8s.stages.table`) lists the rows. Everything else is derived from them: the
``synk8s stage NAME`` commands, the KFP component of each stage, the pipeline's wiring, resources
and GPU requests, and the run layout (which folder a stage writes, named by the digest of the
config fields its output depends on). A row imports nothing heavy: stage functions import torch
inside their bodies, so the table loads in a process that only compiles pipelines.

The contract of a stage function (``run``)::

    run(cfg, *, <one folder URI per input>, out, <options>) -> <a pydantic result>

Its result's numbers (counts, seconds) are what the KFP component reports as metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from synk8s.config import ExperimentConfig
from synk8s.preflight import ImageNetStart

# Argument names the derived commands and components use themselves; a stage input or option may not take them.
RESERVED = frozenset(
    {"cfg", "out", "progress", "config_json", "config_sha256", "run_dir", "metrics", "report", "markdown",
     "shards", "folder", "attachments", "confusion"}
)


@dataclass(frozen=True)
class Resources:
    """Kubernetes CPU and memory of a stage's task (quantities such as ``"500m"``, ``"16Gi"``).

    Attributes:
        cpu_request: CPU the scheduler reserves.
        cpu_limit: most CPU the task may use.
        memory_request: memory the scheduler reserves.
        memory_limit: most memory; the task is killed above it.
    """

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


@dataclass(frozen=True)
class Option:
    """A keyword argument of a stage function offered as ``--<name>`` by ``synk8s stage``.

    Pipelines leave it at its default. A default of None makes the option optional.

    Attributes:
        name: the keyword (``num_shards`` becomes ``--num-shards``).
        type: its type (``int``, ``str``, ``float``, ``bool``).
        default: its value when the flag is absent.
        help: one line for ``--help``.
    """

    name: str
    type: type
    default: Any
    help: str

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--num-shards``."""
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Upstream:
    """An input that lives in another run folder, e.g. pre-training checkpoints read by detection.

    Attributes:
        stage: the stage whose output folder is read.
        run_config: the config of the run that holds it, made from this run's config (say, the
            pre-training label space as ``dataset.name``). It may read only fields that ``stage``'s
            output depends on, so the reading stage's digest still tells its inputs apart.
    """

    stage: str
    run_config: Callable[[ExperimentConfig], ExperimentConfig]


@dataclass(frozen=True)
class Choice:
    """An input read from one of several stages of the same run folder, picked by a config field.

    The few-shot stages read the images, features and selection that ``fewshot.strategy`` names
    (B: generate and filter, RF: realfilter's selection, RG: the real-guided images). The reading
    stage's folder digest covers the fields of every candidate, so it never depends on which one a
    config picks; a pipeline picks its task at compile time.

    Attributes:
        field: the dotted config field whose value picks the stage, e.g. ``fewshot.strategy``.
        stages: each value of the field -> the stage read for it.
    """

    field: str
    stages: Mapping[str, str]

    def value(self, cfg: ExperimentConfig) -> Any:
        """The value of :attr:`field` under ``cfg``."""
        value: Any = cfg
        for part in self.field.split("."):
            value = getattr(value, part)
        return value

    def pick(self, cfg: ExperimentConfig) -> str:
        """The stage read under ``cfg``."""
        return self.stages[self.value(cfg)]


@dataclass(frozen=True)
class When:
    """An input read only while a boolean config field is on (tune reads the leakage flags under ``leakage.drop``).

    While the field is off the stage function gets None for it, and the reading stage's folder
    digest leaves out the field and the fields of the stage read, so adding such an input never
    moves the digests of runs that leave it off. While it is on, both join the digest. A pipeline
    wires the input at compile time, like a :class:`Choice`.

    Attributes:
        field: the dotted boolean config field, e.g. ``leakage.drop``.
        stage: the stage whose output folder is read while it is on.
    """

    field: str
    stage: str

    def on(self, cfg: ExperimentConfig) -> bool:
        """Whether the input is read under ``cfg``."""
        value: Any = cfg
        for part in self.field.split("."):
            value = getattr(value, part)
        return bool(value)


@dataclass(frozen=True)
class Sharding:
    """A stage whose work splits into shards, one task each, and a collect step after them all.

    The stage function then takes ``shard`` (the shard index) and ``num_shards`` (None: ``count(cfg)``);
    every shard writes into the stage's one folder. A pipeline runs the shards in a ParallelFor, each
    retried ``cluster.generate_retries`` times, and then ``collect``.

    Attributes:
        count: the number of shards for a config.
        collect: ``collect(cfg, *, out, <collect options>) -> result``: checks that every shard
            finished and writes the stage's ``manifest.json``.
        collect_name: the collect step's command and component name (``synk8s stage collect``).
        collect_help: one line for its ``--help``.
        collect_resources: CPU and memory of the collect task (it never needs a GPU).
        collect_options: its command-line options.
    """

    count: Callable[[ExperimentConfig], int]
    collect: Callable[..., Any]
    collect_name: str
    collect_help: str
    collect_resources: Resources
    collect_options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class StageSpec:
    """One row of the stage table.

    Attributes:
        name: the stage's name: its ``synk8s stage`` command, KFP component, task and manifest name.
        run: the stage function (see the module docstring for its contract).
        help: one line: what the stage does (command help, component description).
        resources: CPU and memory of its task.
        inputs: keyword of ``run`` -> the stage whose output folder it reads (a stage name for the
            same run folder, an :class:`Upstream` for another one, a :class:`Choice` of stages picked
            by the config, a :class:`When` read only while a config switch is on). The stage's folder
            digest includes every field its inputs depend on.
        depends: the config fields (dotted paths, whole sections allowed) this stage's own output
            depends on, beyond those of its inputs.
        depends_on: more such fields that a config decides (e.g. a pre-training run's label space,
            which a zero-shot run's prompts do not depend on, so their digests stay as they were).
        gpu: whether its task needs a GPU: a constant, or a function of the config.
        shm: whether its task runs DataLoader worker processes, which pass batches through shared
            memory, so the task mounts a memory-backed ``/dev/shm`` of ``cluster.shm_size``: a
            constant, or a function of the config.
        outputs: the files it writes in its folder (glob patterns allowed) -> the function other
            code reads them with (first argument: the stage's folder URI), or None when people read
            them (JSON, Markdown, images). ``manifest.json`` is implied.
        folder: its folder name in the run folder; default ``name``.
        imagenet: how it asks for ImageNet-1K weights (a config field set to ``imagenet``), which
            ``synk8s submit`` checks are reachable before the run starts (:mod:`synk8s.preflight`).
        after: stages its task waits for without reading their folders (the filter, say, whose
            encoding fills the feature cache the features stage then reads); they join a pipeline with it.
        options: extra ``synk8s stage NAME`` options, passed to ``run`` as keywords.
        shards: set when the work splits into parallel shards (see :class:`Sharding`).
        markdown: a Markdown file of its folder that the KFP component shows in the run's UI.
        finish: ``finish(cfg, run, folders) -> uri`` runs after the stage with the run folder and
            the folders of this stage and every stage upstream of it (by stage name); its URI (a
            run report) is what the command logs and the component returns.
        artifact: the KFP artifact type its folder is shown as in the Kubeflow UI (``Dataset``,
            ``Model``); the artifact holds the folder's listing and its store URI in its metadata.
            For a sharded stage the collect task emits it.
        attachments: files of its folder the Kubeflow UI shows as artifacts of their own (a PNG grid).
        confusion: ``confusion(folder) -> (class names, matrix)``: the component logs it as KFP
            ``ClassificationMetrics`` (rows: true class, columns: predicted class).
    """

    name: str
    run: Callable[..., Any]
    help: str
    resources: Resources
    inputs: Mapping[str, str | Upstream | Choice | When] = field(default_factory=dict)
    depends: tuple[str, ...] = ()
    depends_on: Callable[[ExperimentConfig], tuple[str, ...]] | None = None
    gpu: bool | Callable[[ExperimentConfig], bool] = False
    shm: bool | Callable[[ExperimentConfig], bool] = False
    outputs: Mapping[str, Callable[..., Any] | None] = field(default_factory=dict)
    folder: str = ""
    after: tuple[str, ...] = ()
    imagenet: ImageNetStart | None = None
    options: tuple[Option, ...] = ()
    shards: Sharding | None = None
    markdown: str | None = None
    finish: Callable[..., str] | None = None
    artifact: str | None = None
    attachments: tuple[str, ...] = ()
    confusion: Callable[[str], tuple[list[str], list[list[int]]]] | None = None

    def own_fields(self, cfg: ExperimentConfig | None = None) -> tuple[str, ...]:
        """The fields of :attr:`depends`, and of :attr:`depends_on` for ``cfg`` when one is given."""
        extra = self.depends_on(cfg) if cfg is not None and self.depends_on else ()
        return (*self.depends, *extra)

    def needs_gpu(self, cfg: ExperimentConfig) -> bool:
        """Whether this stage's task asks for a GPU under ``cfg``."""
        return bool(self.gpu(cfg)) if callable(self.gpu) else bool(self.gpu)

    def needs_shm(self, cfg: ExperimentConfig) -> bool:
        """Whether this stage's task mounts a memory-backed ``/dev/shm`` under ``cfg``."""
        return bool(self.shm(cfg)) if callable(self.shm) else bool(self.shm)

    @property
    def folder_name(self) -> str:
        """The stage's folder name in the run folder (before any digest suffix)."""
        return self.folder or self.name

    def upstream_stage(self, param: str, cfg: ExperimentConfig | None = None) -> str:
        """The stage name that input ``param`` reads from (a :class:`Choice` is picked by ``cfg``).

        Raises:
            ValueError: ``param`` is a :class:`Choice` and no ``cfg`` was given.
        """
        source = self.inputs[param]
        if isinstance(source, Choice):
            if cfg is None:
                raise ValueError(f"stage {self.name}: input {param!r} is picked by {source.field}; pass the config")
            return source.pick(cfg)
        return source.stage if isinstance(source, Upstream | When) else source

    def candidate_stages(self, param: str) -> tuple[str, ...]:
        """Every stage input ``param`` may read: the stages of a :class:`Choice`, else the one stage."""
        source = self.inputs[param]
        if isinstance(source, Choice):
            return tuple(dict.fromkeys(source.stages.values()))
        return (source.stage if isinstance(source, Upstream | When) else source,)

    def active_inputs(self, cfg: ExperimentConfig | None) -> tuple[str, ...]:
        """The inputs read under ``cfg``: all but a :class:`When` whose switch is off (or no ``cfg``)."""
        return tuple(
            param for param, source in self.inputs.items()
            if not isinstance(source, When) or (cfg is not None and source.on(cfg))
        )
