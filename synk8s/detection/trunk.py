"""Where the detector's ResNet trunk gets its weights: a pre-training run, ImageNet, or nowhere.

A pre-training output folder (local or ``s3://``) holds ``backbone.safetensors`` (the trunk's
state dict under torchvision ResNet names, without ``fc.*``) and ``backbone.json``
(``{"backbone": <registry name>, "method", "label_space", "images", "num_images", "init", ...}``);
:func:`read_pretrained_trunk` reads the pair with the pre-training stage's own reader,
:func:`synk8s.models.checkpoints.load_trunk`.
:func:`imagenet_state_dict` gives torchvision's ImageNet-1k ResNet-50 (``IMAGENET1K_V1``, 76.1 %
top-1) from the model cache, where it is the file torchvision downloads, at
``<cache>/torchvision/resnet50-0676ba61.pth``; with no cache configured torchvision fetches it.
:func:`build_trunk` puts either into a fresh backbone from :func:`synk8s.models.build_backbone`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from synk8s import models, storage
from synk8s.errors import MissingDataError, UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trunk:
    """Trunk weights and where they came from.

    Attributes:
        backbone: registry name of the architecture (``resnet50``, ``tiny-resnet``).
        state_dict: parameters and buffers under torchvision ResNet names, no ``fc.*``; empty for scratch.
        source: ``scratch``, ``imagenet`` or the pre-training folder URI.
        info: the pre-training folder's ``backbone.json`` (empty otherwise).
    """

    backbone: str
    state_dict: dict[str, torch.Tensor]
    source: str
    info: dict[str, Any] = field(default_factory=dict)


def read_pretrained_trunk(folder: str) -> Trunk:
    """The trunk of a pre-training output folder, read with :func:`synk8s.models.checkpoints.load_trunk`.

    Raises:
        MissingDataError: the folder holds no trunk, or its weights cannot be read.
        UsageError: ``backbone.json`` names no registered backbone.
    """
    from synk8s.models.checkpoints import META_FILE, load_trunk

    try:
        state, info = load_trunk(folder)
    except MissingDataError:
        raise
    except Exception as error:  # safetensors raises its own error types on a damaged file
        raise MissingDataError(f"cannot read the trunk in {folder} ({type(error).__name__}: {error})") from None
    name = info.get("backbone") if isinstance(info, dict) else None
    if not isinstance(name, str):
        meta = storage.join(folder, META_FILE)
        raise MissingDataError(f'{meta} names no backbone; it should hold {{"backbone": "resnet50", ...}}')
    models.get_backbone_info(name)
    return Trunk(backbone=name, state_dict=state, source=folder, info=info)


def imagenet_state_dict(cache: str | None) -> dict[str, torch.Tensor]:
    """Return torchvision's ImageNet-1k ResNet-50 weights (``IMAGENET1K_V1``), from the model cache if one is set.

    Raises:
        MissingDataError: the cache lacks the file, or (no cache) it cannot be downloaded.
    """
    from torchvision.models import ResNet50_Weights

    from synk8s.models.cache import cached_file
    from synk8s.models.weights import weight_load

    weights = ResNet50_Weights.IMAGENET1K_V1
    file = PurePosixPath(urlparse(weights.url).path).name
    if cache is None:
        with weight_load("backbone", "torchvision/resnet50 IMAGENET1K_V1", f"torchvision/{file} in the cache"):
            return weights.get_state_dict(progress=False)
    hint = (
        "`python -c \"import torchvision; torchvision.models.resnet50(weights='IMAGENET1K_V1')\"` and copy "
        f"~/.cache/torch/hub/checkpoints/{file} to {{path}}"
    )
    path = cached_file(cache, f"torchvision/{file}", "resnet50 IMAGENET1K_V1", hint)
    return torch.load(path, map_location="cpu", weights_only=True)


def resolve_trunk(backbone_folder: str | None, *, init: str, backbone: str, cache: str | None) -> Trunk:
    """The trunk weights a detection run starts from.

    Args:
        backbone_folder: a pre-training output folder URI, or None to use ``init``.
        init: ``scratch`` (random) or ``imagenet`` (torchvision's ImageNet-1k ResNet-50); ``pretrained``
            requires ``backbone_folder``.
        backbone: the configured architecture (``models.backbone``); a pre-training folder must match it.
        cache: the model cache (``models.cache``), for ``imagenet``.

    Raises:
        UsageError: the folder's architecture differs from ``backbone``, or ``imagenet`` with a tiny backbone.
        MissingDataError: see :func:`read_pretrained_trunk` and :func:`imagenet_state_dict`.
    """
    if backbone_folder is None and init == "pretrained":
        raise UsageError("detect.init=pretrained needs the output folder of a pre-training run (backbone)")
    if backbone_folder is not None:
        trunk = read_pretrained_trunk(backbone_folder)
        if trunk.backbone != backbone:
            raise UsageError(
                f"{backbone_folder} holds a {trunk.backbone} trunk but models.backbone is {backbone}; "
                f"pass --set models.backbone={trunk.backbone}"
            )
        return trunk
    if init == "scratch":
        return Trunk(backbone=backbone, state_dict={}, source="scratch")
    if models.get_backbone_info(backbone).tiny:
        raise UsageError(
            f"backbone {backbone!r} has no ImageNet weights; set detect.init=scratch or pass a backbone folder"
        )
    return Trunk(backbone=backbone, state_dict=imagenet_state_dict(cache), source="imagenet")


def build_trunk(trunk: Trunk) -> nn.Module:
    """A ResNet of ``trunk.backbone`` with ``trunk.state_dict`` loaded (random weights where it is empty).

    Random weights come from the global torch RNG; seed it first. The classification head ``fc``
    stays random and is dropped by the detector.

    Raises:
        MissingDataError: the state dict does not fit the architecture (names or shapes).
    """
    model = models.build_backbone(trunk.backbone, num_classes=1)
    if not trunk.state_dict:
        return model
    state = {k: v for k, v in trunk.state_dict.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise MissingDataError(f"trunk weights from {trunk.source} do not fit {trunk.backbone}: {first}") from error
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise MissingDataError(
            f"trunk weights from {trunk.source} do not fit {trunk.backbone} ({detail}); expected a torchvision-named "
            "ResNet state dict without fc.*"
        )
    log.info("trunk %s: %d tensors from %s", trunk.backbone, len(state), trunk.source)
    return model
