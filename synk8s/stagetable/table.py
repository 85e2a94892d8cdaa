"""The stage engine: an ordered table of stage rows and what is derived from it (run layout, inputs, execution).

The engine knows no stage: the rows are handed to :class:`StageTable` by :mod:`synk8s.stages.table`.

    table = StageTable(rows, run_key="generate")
    run = table.run_dir(cfg)                      # <store.root>/runs/<dataset>-<images digest>
    table.stage_dir(run, "filter", cfg)           # <run>/filter-<digest of what the filter depends on>
    table.execute("filter", cfg, run)             # reads its inputs' folders, writes its own

A row may only read stages listed before it. The run folder is named by the fields of the run
key's output, so stages that depend on nothing more (prompts, generate) need no digest in their
folder names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from synk8s import cost, runs
from synk8s.config import ExperimentConfig
from synk8s.errors import UsageError
from synk8s.stagetable import resume as resume_stage
from synk8s.stagetable.spec import RESERVED, Choice, StageSpec, Upstream, When

log = logging.getLogger(__name__)

SEED = "seed"  # the config field of the run's seed: a stage whose fields lack it is shared by every seed


@dataclass(frozen=True)
class Done:
    """What one stage call left behind.

    Attributes:
        result: the stage function's result.
        out: the stage's output folder URI.
        uri: what the call hands on: the ``finish`` hook's URI (a run report) if the stage has one, else ``out``.
    """

    result: Any
    out: str
    uri: str


class StageTable:
    """An ordered set of stage rows, checked once, and the layout and execution derived from them."""

    def __init__(self, rows: Sequence[StageSpec], *, run_key: str) -> None:
        """Check the rows: unique names, inputs that read earlier rows, no reserved argument names.

        Raises:
            ValueError: a row breaks one of these rules (a programming error, found at import).
        """
        self._rows: dict[str, StageSpec] = {}
        commands: set[str] = set()
        for row in rows:
            names = [row.name] + ([row.shards.collect_name] if row.shards else [])
            for name in names:
                if not name.isidentifier() or name in commands:
                    raise ValueError(f"stage name {name!r} is not a unique Python identifier")
                commands.add(name)
            for param in (*row.inputs, *(o.name for o in row.options)):
                if param in RESERVED:
                    raise ValueError(f"stage {row.name}: argument name {param!r} is reserved")
            for param in row.inputs:
                for stage in row.candidate_stages(param):
                    if stage not in self._rows:
                        raise ValueError(f"stage {row.name}: input {param!r} reads {stage!r}, "
                                         "which is not a row before it")
            for stage in row.after:
                if stage not in self._rows:
                    raise ValueError(f"stage {row.name} runs after {stage!r}, which is not a row before it")
            self._rows[row.name] = row
        if run_key not in self._rows:
            raise ValueError(f"run key {run_key!r} is not a stage of the table")
        self.run_key = run_key

    def __iter__(self) -> Iterator[StageSpec]:
        return iter(self._rows.values())

    @property
    def names(self) -> tuple[str, ...]:
        """Stage names in table order."""
        return tuple(self._rows)

    def get(self, name: str) -> StageSpec:
        """The row of stage ``name``.

        Raises:
            UsageError: no such stage.
        """
        if name not in self._rows:
            raise UsageError(f"unknown stage {name!r}; stages: {', '.join(self._rows)}")
        return self._rows[name]

    # ------------------------------------------------------------------------- layout

    def fields(self, name: str, cfg: ExperimentConfig | None = None) -> tuple[str, ...]:
        """Every config field the output of ``name`` depends on: its own and its inputs' (every candidate of a choice), sorted.

        With ``cfg``, the fields each row's ``depends_on`` adds for it are included, and a
        :class:`~synk8s.stagetable.spec.When` input that is on adds its switch and its stage's fields.
        Each row upstream is visited once per call, however many stages read it.
        """
        return self._fields(name, cfg, {})

    def _fields(self, name: str, cfg: ExperimentConfig | None, seen: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
        if name not in seen:
            spec = self.get(name)
            found = set(spec.own_fields(cfg))
            for param in spec.active_inputs(cfg):
                source = spec.inputs[param]
                if isinstance(source, When):
                    found.add(source.field)
                for stage in spec.candidate_stages(param):
                    found.update(self._fields(stage, cfg, seen))
            seen[name] = tuple(sorted(found))
        return seen[name]

    def closure(self, targets: Sequence[str], cfg: ExperimentConfig) -> tuple[str, ...]:
        """``targets`` and every stage they need under ``cfg``, in table order: what a pipeline runs to make them.

        A stage needs the stages its active inputs read (a :class:`~synk8s.stagetable.spec.Choice`
        picked, a :class:`~synk8s.stagetable.spec.When` read or not, by ``cfg``) and those of its
        row's ``after``, and all that they need in turn.
        """
        needed: set[str] = set()
        todo = list(targets)
        while todo:
            name = todo.pop()
            if name in needed:
                continue
            needed.add(name)
            spec = self.get(name)
            todo += [spec.upstream_stage(param, cfg) for param in spec.active_inputs(cfg)]
            todo += spec.after
        return tuple(name for name in self.names if name in needed)

    def default_run_id(self, cfg: ExperimentConfig) -> str:
        """``<dataset>-<digest>`` of the run key's fields: configs that make the same images share a run."""
        return runs.run_id(cfg, self.fields(self.run_key, cfg))

    def run_dir(self, cfg: ExperimentConfig, run_id: str | None = None) -> str:
        """The run folder URI under ``store.root``; ``run_id`` defaults to :meth:`default_run_id`."""
        return runs.run_dir(cfg.store.root, run_id or self.default_run_id(cfg))

    def stage_dir(self, run: str, name: str, cfg: ExperimentConfig) -> str:
        """The output folder URI of stage ``name`` for ``cfg`` inside the run folder ``run``.

        A stage whose output does not depend on the seed (:data:`SEED` is not among its fields, its
        inputs' included) gets one folder under ``<store.root>/shared/`` instead, which the runs of
        every seed share (:func:`synk8s.runs.shared_folder`).
        """
        spec = self.get(name)
        fields = self.fields(name, cfg)
        if SEED not in fields:
            return runs.shared_folder(cfg.store.root, spec.folder_name, cfg, fields)
        return runs.stage_folder(run, spec.folder_name, cfg, fields, self.fields(self.run_key, cfg))

    def folders(self, name: str, run: str, cfg: ExperimentConfig) -> dict[str, str]:
        """The folders of ``name`` and of every stage upstream of it, by stage name, in table order."""
        found = {name: self.stage_dir(run, name, cfg)}
        for param in self.get(name).active_inputs(cfg):
            source_run, source_cfg = self._source_run(name, param, run, cfg)
            upstream = self.get(name).upstream_stage(param, cfg)
            for stage, folder in self.folders(upstream, source_run, source_cfg).items():
                found.setdefault(stage, folder)
        return {stage: found[stage] for stage in self.names if stage in found}

    def input_dirs(self, name: str, run: str, cfg: ExperimentConfig) -> dict[str, str]:
        """The folder URI each input of stage ``name`` reads under ``cfg``, by the keyword of its function."""
        spec = self.get(name)
        dirs = {}
        for param in spec.active_inputs(cfg):
            source_run, source_cfg = self._source_run(name, param, run, cfg)
            dirs[param] = self.stage_dir(source_run, spec.upstream_stage(param, cfg), source_cfg)
        return dirs

    def _source_run(self, name: str, param: str, run: str, cfg: ExperimentConfig) -> tuple[str, ExperimentConfig]:
        source = self.get(name).inputs[param]
        if isinstance(source, Upstream):
            other = source.run_config(cfg)
            return self.run_dir(other), other
        return run, cfg

    # ------------------------------------------------------------------------- execution

    def execute(
        self,
        name: str,
        cfg: ExperimentConfig,
        run: str,
        *,
        inputs: Mapping[str, str] | None = None,
        collect: bool = False,
        resume: bool = True,
        **options: Any,
    ) -> Done:
        """Run stage ``name`` (or its collect step) into its folder of the run folder ``run``.

        A stage call (not a collect step) also leaves its cost record (:func:`synk8s.cost.record`).

        Args:
            name: the stage.
            cfg: the run's config.
            run: the run folder URI.
            inputs: the folder URI of each input; None derives them from the table (same config).
            collect: run the sharded stage's collect step instead of the stage function.
            resume: skip the stage when its folder already holds its complete output for ``cfg``
                and return the recorded result (see :mod:`synk8s.stagetable.resume`); False runs it anyway.
            **options: the stage's (or collect step's) options, e.g. ``shard=0``.

        Raises:
            UsageError: ``inputs`` does not name exactly the stage's inputs, or the stage has no shards to collect.
        """
        spec = self.get(name)
        out = self.stage_dir(run, name, cfg)
        if collect:
            if spec.shards is None:
                raise UsageError(f"stage {name} is not sharded: it has no collect step")
            result = self._resumed(name, cfg, out, spec.shards.collect, resume)
            if result is None:
                result = spec.shards.collect(cfg, out=out, **options)
                resume_stage.record(spec, out, self.stage_digest(name, cfg), result)
            return Done(result, out, out)
        dirs = self.input_dirs(name, run, cfg) if inputs is None else dict(inputs)
        wanted = set(spec.active_inputs(cfg))
        for param in set(dirs) ^ wanted:
            source = spec.inputs.get(param)
            if isinstance(source, When):
                raise UsageError(
                    f"stage {name}: {source.field}={source.on(cfg)} {'reads' if source.on(cfg) else 'does not read'} "
                    f"{param}; compile the pipeline with the config it runs"
                )
        if set(dirs) != wanted:
            raise UsageError(f"stage {name} reads {sorted(wanted)}, got {sorted(dirs)}")
        for param, source in spec.inputs.items():
            picked = self.stage_dir(run, spec.upstream_stage(param, cfg), cfg) if isinstance(source, Choice) else None
            if picked is not None and dirs[param].rstrip("/") != picked.rstrip("/"):
                raise UsageError(
                    f"stage {name}: {source.field}={source.value(cfg)!r} reads {param} from {picked}, "
                    f"got {dirs[param]}; compile the pipeline with the config it runs"
                )
        # A shard resumes inside the stage function (it keeps its finished tars); a whole stage resumes here.
        result = None if spec.shards else self._resumed(name, cfg, out, spec.run, resume)
        if result is None:
            start = time.perf_counter()
            result = spec.run(cfg, **dirs, out=out, **options)
            cost.record(cfg, run, out, name, result, time.perf_counter() - start, shard=options.get("shard"))
            if not spec.shards:
                resume_stage.record(spec, out, self.stage_digest(name, cfg), result)
        uri = spec.finish(cfg, run, self.folders(name, run, cfg)) if spec.finish else out
        return Done(result, out, uri)

    def stage_digest(self, name: str, cfg: ExperimentConfig) -> str:
        """The digest of every config field the output of ``name`` depends on (recorded when it completes)."""
        return cfg.digest(*self.fields(name, cfg))

    def complete(self, name: str, cfg: ExperimentConfig, run: str) -> bool:
        """Whether stage ``name``'s folder in ``run`` holds its complete, valid output for ``cfg``."""
        spec = self.get(name)
        func = spec.shards.collect if spec.shards else spec.run
        return self._resumed(name, cfg, self.stage_dir(run, name, cfg), func, True) is not None

    def _resumed(self, name: str, cfg: ExperimentConfig, out: str, func: Any, resume: bool) -> Any:
        """The recorded result of a complete output of ``name`` in ``out`` (see :mod:`synk8s.stagetable.resume`), or None."""
        if not resume:
            return None
        result = resume_stage.recorded(self.get(name), out, self.stage_digest(name, cfg), func)
        if result is not None:
            log.info("%s: complete in %s; not run again", name, out)
        return result


