"""Before a run starts: are the weights and the data it needs reachable from where it runs?

``synk8s submit`` calls :func:`check` with the config fields its pipeline's stages depend on, so a
run that would fail after minutes of work (no model cache, no hub, no data) stops at once with one
line naming the command that fixes it::

    check(cfg, ("models.clip", "models.generator", "dataset", ...), local=True)

A model is reachable when it is a tiny model (built from config), when ``models.cache`` holds its
entry (see :mod:`synk8s.models.cache`), when the Hugging Face hub cache of this machine holds it,
or when the hub answers. The data is reachable when the profile draws a stand-in, when
``dataset.root`` is an ``s3://`` prefix holding the dataset, or (for a local run) when the folder
holds it or the dataset's download is reachable. A cluster run with a local ``dataset.root``
leaves the data to its pods.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from synk8s import storage
from synk8s.config import ExperimentConfig
from synk8s.errors import MissingDataError

HUB_HOST = "huggingface.co"


@dataclass(frozen=True)
class ModelNeed:
    """A model a run loads and where a model cache keeps it.

    Attributes:
        field: the config field naming it (``models.clip``).
        name: the registry name or hub id it is set to.
        entry: its path below a model cache root (a folder, or a file for open_clip).
        hub_id: the hub repository it is fetched from (for the hub cache); None for open_clip files.
        tiny: built from config: always reachable.
    """

    field: str
    name: str
    entry: str
    hub_id: str | None
    tiny: bool


def model_needs(cfg: ExperimentConfig, fields: Iterable[str]) -> list[ModelNeed]:
    """The models named by ``fields`` (``models.generator``, ``models.clip``, ``models.le``; a whole
    ``models`` section means all three)."""
    from synk8s import models
    from synk8s.models.cache import entry_name
    from synk8s.models.weights import clip_file

    fields = set(fields)
    needs = []

    def wanted(key: str) -> bool:
        return key in fields or "models" in fields

    if wanted("models.generator"):
        info = models.get_generator_info(cfg.models.generator, cfg.models.generator_revision)
        needs.append(ModelNeed("models.generator", info.name, entry_name(info.model_id), info.model_id, info.tiny))
    if wanted("models.clip"):
        clip = models.get_clip_info(cfg.models.clip)
        needs.append(ModelNeed("models.clip", clip.name, clip_file(clip.arch, clip.pretrained), None, clip.tiny))
    if wanted("models.le"):
        le = models.get_le_info(cfg.models.le)
        needs.append(ModelNeed("models.le", le.name, entry_name(le.model_id), le.model_id, le.tiny))
    return needs


def _in_hub_cache(hub_id: str | None) -> bool:
    """Whether this machine's Hugging Face hub cache holds a snapshot of ``hub_id``."""
    if hub_id is None:
        return False
    home = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    snapshots = home.expanduser() / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


@lru_cache(maxsize=8)
def online(host: str = HUB_HOST, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers on port 443 within ``timeout`` seconds (False when ``HF_HUB_OFFLINE`` is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_models(cfg: ExperimentConfig, fields: Iterable[str]) -> None:
    """Raise one line for the first model of ``fields`` that neither the cache nor the hub provides.

    Raises:
        MissingDataError: naming the model, where it was looked for, and ``synk8s models pull``.
    """
    from synk8s.models.cache import has_entry

    for need in model_needs(cfg, fields):
        if need.tiny:
            continue
        if cfg.models.cache and has_entry(cfg.models.cache, need.entry):
            continue
        if _in_hub_cache(need.hub_id) or online():
            continue
        where = f"not in the model cache {cfg.models.cache}" if cfg.models.cache else "no models.cache is set"
        target = cfg.models.cache or "DIR_OR_S3_PREFIX"
        raise MissingDataError(
            f"{need.field}={need.name} cannot be loaded: {where} and the Hugging Face hub is unreachable; on a "
            f"machine with internet run `synk8s models pull {need.name} --cache {target}`, then pass "
            f"--set models.cache={target} (see docs/air-gapped.md), or try the offline demo with --profile tiny"
        )


def check_data(cfg: ExperimentConfig, *, local: bool) -> None:
    """Raise one line when the run's dataset cannot be found where it runs.

    Args:
        cfg: the run's config (``dataset``).
        local: the run happens on this machine (a cluster run with a local root leaves the data to its pods).

    Raises:
        MissingDataError: naming the dataset, where it was looked for, and ``synk8s datasets download``.
    """
    from synk8s import datasets

    if cfg.dataset.standin:
        return
    name, root = cfg.dataset.name, cfg.dataset.resolved_root()
    info = datasets.get(name)
    if storage.is_remote(root):
        if not storage.list(storage.join(root, info.base_dir).rstrip("/") + "/"):
            raise MissingDataError(
                f"no {name} data under {root}: on a connected machine run `synk8s datasets download {name}` "
                f"and `synk8s store cp ./data/{name} {root}` (see docs/air-gapped.md)"
            )
        return
    if not local:
        return
    folder = Path(root).expanduser() / info.base_dir
    if folder.is_dir() and any(folder.iterdir()):
        return
    if not online(timeout=3.0):
        raise MissingDataError(
            f"no {name} data at {folder} and no internet to fetch it: run `synk8s datasets download {name} "
            f"--root {root}` on a connected machine and copy the folder here, or try the offline demo with "
            "--profile tiny"
        )


def check(cfg: ExperimentConfig, fields: Iterable[str], *, local: bool) -> None:
    """Check the models named by ``fields`` and (when ``fields`` reads the dataset) the data; see the module."""
    fields = tuple(fields)
    check_models(cfg, fields)
    if any(f == "dataset" or f.startswith("dataset.") and f != "dataset.name" for f in fields):
        check_data(cfg, local=local)
