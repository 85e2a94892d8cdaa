"""``synk8s models``: fill a model cache for clusters without internet, and show what it holds.

    synk8s models pull sd15 rn50 t5-commongen --cache s3://synk8s/models    # on a connected machine
    synk8s models pull tiny-sd tiny-clip tiny-t5 --cache ./models            # offline: built from config
    synk8s models pull resnet50 --cache s3://synk8s/models                  # ImageNet-1K backbone weights
    synk8s models pull t5-commongen --revision SHA --cache ./models           # a pinned hub commit
    synk8s models list --cache s3://synk8s/models

Runs read the cache with ``--set models.cache=DIR_OR_S3_PREFIX``; see docs/air-gapped.md.
"""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from synk8s.cli.output import OUTPUT, Format, emit_json

app = typer.Typer(no_args_is_help=True)

CACHE_ENV = "SYNK8S_MODEL_CACHE"
CACHE = typer.Option(
    "./models", "--cache", envvar=CACHE_ENV, help=f"Model cache: a folder or s3://bucket/prefix (${CACHE_ENV})."
)


@app.command("pull")
def pull_cmd(
    names: list[str] = typer.Argument(
        ..., help="Registry names (sd15, rn50, t5-commongen, resnet50, tiny-sd, ...) or hub ids."
    ),
    cache: str = CACHE,
    kind: Optional[str] = typer.Option(None, "--kind", help="generator or le, for a hub id outside the registry."),
    seed: int = typer.Option(0, "--seed", help="Weights of a tiny model (built from config)."),
    revision: Optional[str] = typer.Option(
        None, "--revision", help="Hub revision (a commit sha pins it) of a generator or LE model; default: registry's."
    ),
) -> None:
    """Write models into the cache in the layout runs read (needs the hub, except for tiny models)."""
    from synk8s.models.pull import pull, resolve
    from synk8s.storage import check_root

    cache = check_root(cache)
    for name in names:
        resolve(name, kind)  # every name is checked before anything is downloaded
    for name in names:
        typer.echo(pull(name, cache, kind=kind, seed=seed, revision=revision))


@app.command("list")
def list_cmd(cache: str = CACHE, output: Format = OUTPUT) -> None:
    """Every registry model, its kind and cache entry, and whether the cache holds it."""
    from synk8s.models.pull import cached, resolve
    from synk8s.models.registry import BACKBONES, CLIPS, GENERATORS, LE_MODELS

    backbones = [name for name, info in BACKBONES.items() if not info.tiny]  # a tiny one has no ImageNet weights
    names = [*GENERATORS, *CLIPS, *LE_MODELS, *backbones]
    present = cached(names, cache)
    rows = [{"name": n, "kind": resolve(n).kind, "entry": resolve(n).entry, "cached": present[n]} for n in names]
    if output is Format.json:
        emit_json({"cache": cache, "models": rows})
        return
    table = Table(title=f"model cache {cache}", title_justify="left")
    for column in ("name", "kind", "entry", "cached"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["kind"], row["entry"], "yes" if row["cached"] else "-")
    Console(soft_wrap=True).print(table)
