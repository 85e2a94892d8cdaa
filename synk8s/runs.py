"""The run folder: where a run's stage outputs live, and the ``manifest.json`` every stage writes beside them.

    <store.root>/runs/<run id>/               run id: <dataset>-<digest of the fields that name the run>
        <folder>/                             a stage whose fields the run id already pins
        <folder>-<digest of its fields>/      any other stage: one folder per setting of what it depends on
        configs/<sha256>.json                 a resolved config the shard tasks read (see put_config)
    <store.root>/shared/<dataset>/
        <folder>-<digest of its fields>/      a stage whose output does not depend on the seed, for every run

This module knows the naming rule only; which fields name the run and which fields each stage
depends on come from the stage table (:mod:`synk8s.stages.table`), which calls it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from synk8s import __version__, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import MissingDataError

RUNS_DIR = "runs"
SHARED_DIR = "shared"
CONFIGS_DIR = "configs"


def run_id(cfg: ExperimentConfig, key_fields: Iterable[str]) -> str:
    """``<dataset>-<digest of key_fields>``: configs that agree on ``key_fields`` share one run folder."""
    return f"{cfg.dataset.name}-{cfg.digest(*key_fields)}"


def run_dir(root: str, run: str) -> str:
    """The folder URI of run ``run`` under the store root ``root``: ``<root>/runs/<run>``."""
    return storage.join(root, RUNS_DIR, run)


def check_run_dir(root: str, run: str) -> str:
    """``run`` if it is a run folder of the store root ``root``: ``<root>/runs/<run id>``.

    A stage writes into its run folder and reads the shared folders of ``root``, so a run folder
    outside ``root`` would split one run over two stores.

    Raises:
        UsageError: ``run`` is not ``<root>/runs/<run id>`` for a run id without ``/``.
    """
    from synk8s.errors import UsageError

    parent, _, name = run.rstrip("/").rpartition("/")
    runs = storage.join(root, RUNS_DIR)
    if name in ("", ".", "..") or not _same_folder(parent, runs):
        raise UsageError(
            f"run folder {run} is not in store.root {root}: a run folder is {runs}/<run id>; "
            "set store.root (--store) to the store that holds the run, or pass a run id without '/'"
        )
    return run


def _same_folder(one: str, other: str) -> bool:
    """Whether two folder URIs name the same folder (local paths compared once resolved)."""
    if storage.is_remote(one) or storage.is_remote(other):
        return one.rstrip("/") == other.rstrip("/")
    return storage.to_path(one).expanduser().resolve() == storage.to_path(other).expanduser().resolve()


def stage_folder(run: str, folder: str, cfg: ExperimentConfig, fields: Iterable[str], pinned: Iterable[str]) -> str:
    """The output folder URI of a stage inside the run folder ``run``.

    Args:
        run: the run folder URI.
        folder: the stage's folder name (``images``, ``filter``, ...).
        cfg: the run's config.
        fields: every config field the stage's output depends on (its upstream stages' included).
        pinned: the fields the run id is the digest of.

    Returns:
        ``<run>/<folder>`` when ``pinned`` covers ``fields`` (the run folder's name already tells
        the settings apart), else ``<run>/<folder>-<digest of fields>``.
    """
    fields = set(fields)
    if fields <= set(pinned):
        return storage.join(run, folder)
    return storage.join(run, f"{folder}-{cfg.digest(*fields)}")


def shared_folder(root: str, folder: str, cfg: ExperimentConfig, fields: Iterable[str]) -> str:
    """The output folder URI of a stage whose output does not depend on the seed, outside every run folder.

    ``<root>/shared/<dataset>/<folder>-<digest of fields>``: the runs of several seeds (and any other
    runs agreeing on ``fields``) share it, so the stage runs once for all of them.
    """
    return storage.join(root, SHARED_DIR, cfg.dataset.name, f"{folder}-{cfg.digest(*fields)}")


def write_manifest(out: str, stage: str, cfg: ExperimentConfig, *, counts: dict[str, Any], **extra: Any) -> str:
    """Write ``<out>/manifest.json`` and return its URI.

    Args:
        out: the stage's output folder URI.
        stage: stage name (``prompts``, ``generate``, ...).
        cfg: the run's config; its digest, seed and model names are recorded.
        counts: the stage's counts (prompts, images, kept, ...); components copy them into KFP metrics.
        **extra: stage-specific fields (inputs, outputs, seconds, model identities).
    """
    body = {
        "stage": stage,
        "synk8s_version": __version__,
        "config_digest": cfg.digest(),
        "profile": cfg.profile,
        "dataset": cfg.dataset.name,
        "seed": cfg.seed,
        "models": cfg.models.model_dump(mode="json"),
        "counts": counts,
        **extra,
    }
    uri = storage.join(out, "manifest.json")
    storage.put_json(uri, body)
    return uri


def read_manifest(out: str, stage: str) -> dict[str, Any]:
    """Read ``<out>/manifest.json``; a missing one names the stage that should have written it."""
    uri = storage.join(out, "manifest.json")
    if not storage.exists(uri):
        raise MissingDataError(
            f"no {stage} output at {out}: run `synk8s stage {stage}` first with the same --profile and --set "
            f"options (the run folder is named by their digest), or pass --run-id (missing {uri})"
        )
    return storage.get_json(uri)


def config_uri(run: str, sha256: str) -> str:
    """Where :func:`put_config` stores the config of SHA-256 ``sha256`` in the run folder ``run``."""
    return storage.join(run, CONFIGS_DIR, f"{sha256}.json")


def put_config(run: str, config_json: str) -> str:
    """Store a resolved config in the run folder once, named by its content: ``<run>/configs/<sha256>.json``.

    A sharded stage's ParallelFor items then carry this digest instead of the config itself, so each
    item stays a few hundred bytes whatever the config holds. Equal configs give the same object;
    writing it again replaces it with the same bytes.

    Args:
        run: the run folder URI.
        config_json: the config as ``ExperimentConfig.model_dump_json`` gives it; stored byte for byte.

    Returns:
        The SHA-256 of the stored config (hex), which :func:`read_config` takes.
    """
    data = config_json.encode("utf-8")
    sha256 = hashlib.sha256(data).hexdigest()
    storage.put_bytes(config_uri(run, sha256), data)
    return sha256


def read_config(run: str, sha256: str) -> str:
    """The config JSON :func:`put_config` stored in ``run``, checked against ``sha256`` and the store's record.

    Raises:
        MissingDataError: no such config in the run folder (the store lost it after the shard list ran).
        IntegrityError: its bytes differ from ``sha256`` or from the hash recorded when it was written.
    """
    uri = config_uri(run, sha256)
    try:
        return storage.get_bytes(uri, sha256=sha256).decode("utf-8")
    except storage.ObjectNotFoundError:
        raise MissingDataError(
            f"no config at {uri}: the shard list task writes it; rerun the pipeline with caching off "
            "(the store lost it after the shard list ran)"
        ) from None
