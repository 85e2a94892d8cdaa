"""Before a run starts: are the weights and the data it needs reachable from where it runs?

``synk8s submit`` calls :func:`check` with the config fields its pipeline's stages depend on and
each stage's config, so a run that would fail after minutes of work (no model cache, no hub, no
data, no ImageNet backbone weights) stops at once with one line naming the command that fixes it,
and otherwise says what it checked::

    checked = check(cfg, ("models.clip", "models.generator", "dataset", ...), local=True,
                    stages=[("pretrain", cfg, ImageNetStart("pretrain.init")), ("finetune", cfg_scratch, ...), ...])

A model is reachable when it is a tiny model (built from config), when ``models.cache`` holds its
entry (see :mod:`synk8s.models.cache`; a set cache is the only place a run reads), or, without a
cache, for a local run when this machine's Hugging Face hub cache holds it or the hub answers; a
cluster run's pods download it themselves, which this machine does not test. ImageNet-1K backbone
weights (``pretrain.init``, ``pretrain.finetune.init`` or ``detect.init`` = ``imagenet`` in a stage
of the pipeline) come from the model cache (detection without a cache: torchvision's download,
checked for a local run only). The data is reachable when the profile draws a stand-in, when
``dataset.root`` is an ``s3://`` prefix holding the dataset, or (for a local run) when the folder
holds it or the dataset's download is reachable. A cluster run with a local ``dataset.root``
leaves the data to its pods.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from synk8s import storage
from synk8s.config import ExperimentConfig
from synk8s.errors import MissingDataError

HUB_HOST = "huggingface.co"
TORCH_DOWNLOAD_HOST = "download.pytorch.org"  # where torchvision fetches its weights


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


def check_models(cfg: ExperimentConfig, fields: Iterable[str], *, local: bool = True) -> list[str]:
    """Raise one line for the first model of ``fields`` that the run cannot load; else say where each is.

    Args:
        cfg: the run's config (``models``).
        fields: config fields the pipeline's stages depend on.
        local: the run happens on this machine; a cluster run without a cache leaves the hub to its pods.

    Returns:
        One phrase per model: where it was found, or that the pods fetch it.

    Raises:
        MissingDataError: naming the model, where it was looked for, and ``synk8s models pull``.
    """
    from synk8s.models.cache import has_entry

    checked = []
    for need in model_needs(cfg, fields):
        what = f"{need.field}={need.name}"
        if need.tiny:
            checked.append(f"{what} built from config")
            continue
        if cfg.models.cache:
            if has_entry(cfg.models.cache, need.entry):
                checked.append(f"{what} in the model cache")
                continue
            where = f"not in the model cache {cfg.models.cache} (a run with models.cache set reads only there)"
        elif not local:
            checked.append(f"{what} from the hub by the cluster's pods (not tested from this machine)")
            continue
        elif _in_hub_cache(need.hub_id):
            checked.append(f"{what} in this machine's hub cache")
            continue
        elif online():
            checked.append(f"{what} from the hub")
            continue
        else:
            where = "no models.cache is set and the Hugging Face hub is unreachable"
        target = cfg.models.cache or "DIR_OR_S3_PREFIX"
        raise MissingDataError(
            f"{what} cannot be loaded: {where}; on a machine with internet run `synk8s models pull {need.name} "
            f"--cache {target}`, then pass --set models.cache={target} (see docs/air-gapped.md), or try the "
            "offline demo with --profile tiny"
        )
    return checked


@dataclass(frozen=True)
class BackboneNeed:
    """ImageNet-1K weights of a backbone that a stage of the pipeline starts from.

    Attributes:
        stage: the stage (``pretrain``, ``finetune``, ``detect``).
        field: the config field that asks for them (``pretrain.init``).
        backbone: ``models.backbone``.
        entry: their path below a model cache root.
        cache_only: read only from the model cache; False: torchvision downloads them without a cache.
    """

    stage: str
    field: str
    backbone: str
    entry: str
    cache_only: bool


@dataclass(frozen=True)
class ImageNetStart:
    """How a stage's row asks for ImageNet-1K weights (its ``imagenet``): the config field set to ``imagenet``.

    Attributes:
        field: the dotted config field, e.g. ``pretrain.init``.
        detection: torchvision's detection trunk file (downloadable without a model cache) rather than
            ``models.backbone``'s classification weights (from the model cache only).
    """

    field: str
    detection: bool = False

    def need(self, stage: str, cfg: ExperimentConfig) -> BackboneNeed | None:
        """What ``stage`` reads under ``cfg``: the weights while the field is ``imagenet``; else None."""
        from synk8s.models.cache import backbone_entry, detection_entry

        value: object = cfg
        for part in self.field.split("."):
            value = getattr(value, part)
        if value != "imagenet":
            return None
        name = cfg.models.backbone
        entry = detection_entry() if self.detection else backbone_entry(name)
        return BackboneNeed(stage, self.field, name, entry, not self.detection)


StageStart = tuple[str, ExperimentConfig, "ImageNetStart | None"]  # a stage, its task's config, its row's start


def backbone_needs(stages: Iterable[StageStart]) -> list[BackboneNeed]:
    """The ImageNet backbone weights the stages of a pipeline start from, each under the config of its task."""
    needs = [start.need(stage, cfg) for stage, cfg, start in stages if start is not None]
    return list(dict.fromkeys(need for need in needs if need is not None))


def _in_torch_cache(entry: str) -> bool:
    """Whether torch's hub cache of this machine (``$TORCH_HOME``/hub/checkpoints) holds the file of ``entry``."""
    home = Path(os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "torch")
    return (home.expanduser() / "hub" / "checkpoints" / entry.rsplit("/", 1)[-1]).is_file()


def check_backbones(cfg: ExperimentConfig, stages: Sequence[StageStart], *, local: bool) -> list[str]:
    """Raise one line for ImageNet backbone weights a stage needs and cannot read; else say where they are.

    Args:
        cfg: the run's config (``models.cache``).
        stages: each table stage of the pipeline, the config its task runs with and its row's ``imagenet``.
        local: the run happens on this machine (a cluster's pods download torchvision's file themselves).

    Raises:
        UsageError: a tiny backbone, which has no ImageNet weights.
        MissingDataError: the weights are not in the model cache (or, for detection without a cache,
            neither in this machine's torch cache nor downloadable), naming ``synk8s models pull``.
    """
    from synk8s import models
    from synk8s.errors import UsageError
    from synk8s.models.cache import has_entry

    checked = []
    for need in backbone_needs(stages):
        what = f"{need.backbone} ImageNet-1K weights for {need.stage} ({need.field}=imagenet)"
        if models.get_backbone_info(need.backbone).tiny:
            raise UsageError(
                f"{need.field}=imagenet, but models.backbone={need.backbone} has no ImageNet weights; "
                f"set {need.field}=scratch or models.backbone=resnet50"
            )
        cache = cfg.models.cache
        if cache and has_entry(cache, need.entry):
            checked.append(f"{what} in the model cache")
            continue
        if not cache and not need.cache_only:
            if not local:
                checked.append(f"{what} downloaded by the cluster's pods (not tested from this machine)")
                continue
            if _in_torch_cache(need.entry) or online(TORCH_DOWNLOAD_HOST):
                checked.append(f"{what} from torchvision (this machine's torch cache or its download)")
                continue
        where = f"not in the model cache {cache}" if cache else "no models.cache is set"
        target = cache or "DIR_OR_S3_PREFIX"
        raise MissingDataError(
            f"{what} cannot be read: {where} (expected {need.entry} there); on a machine with internet run "
            f"`synk8s models pull {need.backbone} --cache {target}`, then pass --set models.cache={target}"
        )
    return checked


def check_data(cfg: ExperimentConfig, *, local: bool) -> str:
    """Raise one line when the run's dataset cannot be found where it runs; else say where it is.

    Args:
        cfg: the run's config (``dataset``).
        local: the run happens on this machine (a cluster run with a local root leaves the data to its pods).

    Raises:
        MissingDataError: naming the dataset, where it was looked for, and ``synk8s datasets download``.
    """
    from synk8s import datasets

    if cfg.dataset.name == datasets.CUSTOM:
        return _check_own_images(cfg.dataset.images, local=local)
    if cfg.dataset.standin:
        return f"{cfg.dataset.name} stand-in data (drawn)"
    name, root = cfg.dataset.name, cfg.dataset.resolved_root()
    info = datasets.get(name)
    if storage.is_remote(root):
        if not storage.list(storage.join(root, info.base_dir).rstrip("/") + "/"):
            raise MissingDataError(
                f"no {name} data under {root}: on a connected machine run `synk8s datasets download {name}` "
                f"and `synk8s store cp ./data/{name} {root}` (see docs/air-gapped.md)"
            )
        return f"{name} data under {root}"
    if not local:
        return f"{name} data under {root} on the cluster's pods (not tested from this machine)"
    folder = Path(root).expanduser() / info.base_dir
    if folder.is_dir() and any(folder.iterdir()):
        return f"{name} data in {folder}"
    if not online(timeout=3.0):
        raise MissingDataError(
            f"no {name} data at {folder} and no internet to fetch it: run `synk8s datasets download {name} "
            f"--root {root}` on a connected machine and copy the folder here, or try the offline demo with "
            "--profile tiny"
        )
    return f"{name} data to download into {folder}"


def _check_own_images(images: str | None, *, local: bool) -> str:
    """Where ``--images`` are, once their listing reads (a folder's layout, a manifest's rows); no image is decoded.

    Raises:
        MissingDataError: the folder or manifest is absent, holds no class folders, has an empty class, or
            (``s3://``) nothing is stored under the prefix.
    """
    from synk8s.datasets.imagefolder import listing

    if images is None:
        return "no real images (custom label space)"
    if storage.is_remote(images):
        if not storage.list(images.rstrip("/") + "/") and not storage.exists(images):
            raise MissingDataError(f"dataset.images {images} holds nothing; upload it with `synk8s store cp DIR {images}`")
        return f"your images under {images}"
    if not local:
        return f"your images at {images} on the cluster's pods (not tested from this machine)"
    _, samples = listing(Path(images).expanduser())
    return f"your images at {images} ({len(samples)} files)"


def check(
    cfg: ExperimentConfig,
    fields: Iterable[str],
    *,
    local: bool,
    stages: Sequence[StageStart] = (),
) -> list[str]:
    """Check the models named by ``fields``, the ImageNet backbone weights of ``stages`` and (when
    ``fields`` reads the dataset) the data; see the module.

    Returns:
        What was checked and where each item was found, one phrase each (e.g. ``models.clip=rn50 in
        the model cache``).
    """
    fields = tuple(fields)
    checked = check_models(cfg, fields, local=local)
    checked += check_backbones(cfg, stages, local=local)
    if any(f == "dataset" or f.startswith("dataset.") and f != "dataset.name" for f in fields):
        checked.append(check_data(cfg, local=local))
    return checked
