"""``synk8s stage NAME``: run one stage alone; one command per row of the stage table.

Every stage reads its inputs from, and writes its outputs to, the run folder
``<store.root>/runs/<run id>/``; the run id defaults to ``<dataset>-<images digest>``,
so running the stages in order with the same options chains them:

    synk8s stage prompts  --profile tiny --dataset cifar10
    synk8s stage generate --profile tiny --dataset cifar10 --shard 0 --num-shards 2
    synk8s stage generate --profile tiny --dataset cifar10 --shard 1 --num-shards 2
    synk8s stage collect  --profile tiny --dataset cifar10 --num-shards 2
    synk8s stage filter   --profile tiny --dataset cifar10
    synk8s stage test_features --profile tiny --dataset cifar10   # one folder for every seed
    synk8s stage features --profile tiny --dataset cifar10
    synk8s stage tune     --profile tiny --dataset cifar10
    synk8s stage evaluate --profile tiny --dataset cifar10

The commands are built from the table (:mod:`synk8s.stages.table`): the common options below, plus
the options a row declares (generate's ``--shard`` and ``--num-shards``), and a collect command for
each sharded stage.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from typing import Any, Optional

import typer

from synk8s import runs
from synk8s.cli.kfp_client import PROFILE, SET, flag_option
from synk8s.flags import BY_NAME
from synk8s.resolve import resolve
from synk8s.stages.table import TABLE

log = logging.getLogger(__name__)

app = typer.Typer(no_args_is_help=True)

# The run flags every stage command takes (synk8s.flags.FLAGS).
_RUN_FLAGS = ("dataset", "store_root", "classes", "images")
_COMMON = (
    ("profile", str, PROFILE),
    ("overrides", list[str], SET),
    *((name, Optional[BY_NAME[name].type], flag_option(BY_NAME[name])) for name in _RUN_FLAGS),
    ("run_id", Optional[str], typer.Option(None, "--run-id", help="Run folder name; default <dataset>-<digest>.")),
)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _command(stage: str, options: tuple, collect: bool) -> Callable[..., None]:
    """A command function running ``stage`` (or its collect step) whose signature typer reads for its options."""

    def command(**values: Any) -> None:
        cfg = resolve(values["profile"], values["overrides"], **{name: values[name] for name in _RUN_FLAGS})
        run = runs.check_run_dir(cfg.store.root, TABLE.run_dir(cfg, values["run_id"]))
        done = TABLE.execute(stage, cfg, run, collect=collect, **{o.name: values[o.name] for o in options})
        typer.echo(json.dumps(_rounded(done.result.model_dump(mode="json")), indent=2))
        if done.uri != done.out:
            log.info("%s wrote %s", stage, done.uri)

    params = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in _COMMON
    ]
    for option in options:
        annotation = Optional[option.type] if option.default is None else option.type
        default = typer.Option(option.default, option.flag, help=option.help)
        keyword = inspect.Parameter.KEYWORD_ONLY
        params.append(inspect.Parameter(option.name, keyword, default=default, annotation=annotation))
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return command


def register_stages(target: typer.Typer) -> None:
    """Add one command per stage of the table (and a collect command per sharded stage) to ``target``."""
    for spec in TABLE:
        target.command(spec.name, help=spec.help)(_command(spec.name, spec.options, collect=False))
        if spec.shards:
            sharding = spec.shards
            collect = _command(spec.name, sharding.collect_options, collect=True)
            target.command(sharding.collect_name, help=sharding.collect_help)(collect)


register_stages(app)
