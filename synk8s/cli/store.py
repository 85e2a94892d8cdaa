"""``synk8s store``: look at and copy artifacts in local folders and S3 buckets.

Examples::

    synk8s store ls s3://artifacts/run1 -r
    synk8s store cp ./prompts.jsonl s3://artifacts/run1/prompts.jsonl
    synk8s store cp s3://artifacts/run1/shards ./shards      # a whole prefix, recursively
    synk8s store mb s3://artifacts

S3 settings come from the environment (``SYNK8S_S3_ENDPOINT``, ``AWS_ACCESS_KEY_ID``, ...);
see :mod:`synk8s.storage`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from tqdm import tqdm

from synk8s import storage

app = typer.Typer(
    help="Inspect and copy artifacts in the store (local folders or s3://bucket/prefix).",
    no_args_is_help=True,
)

_HASH_CHARS = 12  # SHA-256 prefix shown by `ls`


def _line(size: str, sha256: str, uri: str) -> str:
    return f"{size:>12}  {sha256:<{_HASH_CHARS}}  {uri}"


@app.command("ls")
def ls(
    uri: str = typer.Argument(..., help="A folder, S3 prefix or single object."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="List all depths below URI."),
) -> None:
    """List objects: size in bytes, SHA-256 prefix, URI (sub-folders show as DIR)."""
    objects = storage.list(uri, recursive=recursive)
    folders = [] if recursive else storage.list_prefixes(uri)
    if not objects and not folders:
        if not storage.exists(uri):
            raise storage.ObjectNotFoundError(f"no object or folder at {uri}")
        objects = [storage.stat(uri)]
    for folder in folders:
        typer.echo(_line("DIR", "", folder))
    for obj in objects:
        typer.echo(_line(str(obj.size), (obj.sha256 or "-")[:_HASH_CHARS], obj.uri))


def _is_folder_target(dst: str) -> bool:
    return dst.endswith("/") or (not storage.is_remote(dst) and Path(dst.removeprefix("file://")).is_dir())


@app.command("cp")
def cp(
    src: str = typer.Argument(..., help="An object, or a folder/prefix to copy recursively."),
    dst: str = typer.Argument(..., help="Destination object, or folder/prefix for several objects."),
) -> None:
    """Copy between local paths and S3 in any direction, checking SHA-256.

    A single object copied onto a folder (an existing local folder, or a URI ending in ``/``)
    keeps its name. A folder or prefix SRC copies its contents into DST, keeping the layout below it.
    """
    if storage.exists(src):
        target = storage.join(dst, src.rstrip("/").rsplit("/", 1)[-1]) if _is_folder_target(dst) else dst
        info = storage.copy(src, target)
        typer.echo(f"copied {src} -> {info.uri} ({info.size} bytes)")
        return
    objects = storage.list(src, recursive=True)
    if not objects:
        raise storage.ObjectNotFoundError(f"no object or folder at {src}")
    base = src.rstrip("/") + "/"
    with tqdm(total=sum(o.size for o in objects), unit="B", unit_scale=True, desc="copy", disable=None) as bar:
        for obj in objects:
            storage.copy(obj.uri, storage.join(dst, obj.uri[len(base) :]))
            bar.update(obj.size)
    typer.echo(f"copied {len(objects)} objects ({sum(o.size for o in objects)} bytes) from {src} to {dst}")


@app.command("mb")
def mb(uri: str = typer.Argument(..., help="s3://bucket (or a local folder) to create if missing.")) -> None:
    """Create a bucket (or local folder) if it does not exist."""
    storage.ensure_bucket(uri)
    typer.echo(f"ready: {uri}")
