"""Pretrained trunks: the pre-training stage's output, and ImageNet-1K starting weights from the model cache.

A trunk is a backbone's ``state_dict`` without its head (``fc.*``), in torchvision's ResNet key names, so it
loads into ``build_backbone(name, num_classes)`` with ``strict=False`` (only ``fc`` missing) or into a
detector's ResNet body. The pre-training stage writes, under its output folder::

    backbone.safetensors   the trunk's tensors
    backbone.json          {"backbone": <registry name>, "method", "label_space", "images", "epochs",
                            "world_size", ...}

    state, meta = load_trunk("runs/r/pretrain")
    model = build_backbone(meta["backbone"], num_classes=100)
    model.load_state_dict(state, strict=False)

ImageNet-1K weights (``pretrain.init=imagenet``, ``pretrain.finetune.init=imagenet``) come from the model
cache (:mod:`synk8s.models.cache`), file ``backbones/<name>-imagenet1k.pth``: a ``torch.save`` of the
backbone's full ``state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from synk8s import storage
from synk8s.errors import MissingDataError

WEIGHTS_FILE = "backbone.safetensors"
META_FILE = "backbone.json"
HEAD_PREFIX = "fc."


def trunk_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without the head (``fc.*``), as contiguous CPU tensors."""
    return {
        name: tensor.detach().cpu().contiguous()
        for name, tensor in model.state_dict().items()
        if not name.startswith(HEAD_PREFIX)
    }


def save_trunk(model: nn.Module, out: str, meta: dict[str, Any]) -> str:
    """Write ``<out>/backbone.safetensors`` (the trunk) and ``<out>/backbone.json`` (``meta``).

    Args:
        model: a backbone with torchvision ResNet attribute names; ``fc.*`` is left out.
        out: the output folder URI.
        meta: JSON-serialisable facts: at least ``backbone`` (its registry name).

    Returns:
        The URI of ``backbone.safetensors``.
    """
    from safetensors.torch import save

    if "backbone" not in meta:
        raise ValueError("meta must name the backbone (its registry name)")
    uri = storage.join(out, WEIGHTS_FILE)
    storage.put_bytes(uri, save(trunk_state(model)))
    storage.put_json(storage.join(out, META_FILE), meta)
    return uri


def load_trunk(uri: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a trunk written by :func:`save_trunk`.

    Args:
        uri: the pre-training stage's output folder.

    Returns:
        (state_dict, meta).

    Raises:
        MissingDataError: the folder has no trunk.
    """
    from safetensors.torch import load

    weights, meta = storage.join(uri, WEIGHTS_FILE), storage.join(uri, META_FILE)
    if not (storage.exists(weights) and storage.exists(meta)):
        raise MissingDataError(
            f"no pretrained backbone at {uri}: it needs {WEIGHTS_FILE} and {META_FILE}; "
            "pass the output folder of a pre-training run (`synk8s stage pretrain`)"
        )
    return load(storage.get_bytes(weights)), storage.get_json(meta)


def imagenet_file(name: str) -> str:
    """The model-cache path of a backbone's ImageNet-1K weights, e.g. ``backbones/resnet50-imagenet1k.pth``."""
    from synk8s.models.cache import backbone_entry

    return backbone_entry(name)


def imagenet_trunk(name: str, cache: str | None) -> dict[str, torch.Tensor]:
    """ImageNet-1K weights of backbone ``name`` from the model cache, without the head.

    Raises:
        MissingDataError: no cache is set, or it lacks the file; the message says how to make it.
    """
    from synk8s.models.cache import cached_file

    relative = imagenet_file(name)
    hint = (
        'python -c "import torch, torchvision; '
        "torch.save(torchvision.models.resnet50(weights='IMAGENET1K_V2').state_dict(), '{path}')\""
    )
    if cache is None:
        raise MissingDataError(
            f"ImageNet-1K weights of {name!r} come from the model cache, but models.cache is not set; set it to a "
            f"folder or s3:// prefix holding {relative}, made with {hint.replace('{path}', relative)}"
        )
    path = cached_file(cache, relative, f"{name} ImageNet-1K weights", hint)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}


def load_into(model: nn.Module, trunk: dict[str, torch.Tensor]) -> None:
    """Load a trunk into ``model``, whose head stays as it is.

    Raises:
        MissingDataError: the trunk does not fit the model (another architecture).
    """
    try:
        result = model.load_state_dict(trunk, strict=False)
    except RuntimeError as error:  # tensors of other shapes
        first = str(error).strip().splitlines()[-1].strip()
        raise MissingDataError(
            f"the trunk does not fit this backbone ({first}); use weights of models.backbone"
        ) from None
    wrong = [k for k in result.missing_keys if not k.startswith(HEAD_PREFIX)] + list(result.unexpected_keys)
    if wrong:
        raise MissingDataError(
            f"the trunk does not fit this backbone ({len(wrong)} mismatched keys, e.g. {wrong[0]}); "
            "use weights of the same backbone (models.backbone)"
        )
