"""Which parts of a CLIP image tower train: Table 3's parameter levels and Table 6's frozen BN.

Levels (``tune.trainable``), each including the ones before it:

* ``head``: the linear classifier alone; the encoder is frozen (features can be cached).
* ``proj``: plus the tower's output projection: ``attnpool`` of open_clip's ModifiedResNet (RN50),
  ``ln_post`` and ``proj`` (and ``attn_pool`` when present) of its VisionTransformer.
* ``last-block``: plus the last residual block (``layer4``'s last Bottleneck; the last transformer block).
* ``last-stage``: plus the last stage (all of ``layer4``; the last quarter of the transformer blocks).
* ``all``: every parameter of the image tower.

Batch norm (``fewshot.freeze_bn``): frozen BN keeps every BatchNorm layer in eval mode (running
statistics fixed) and its affine weight and bias out of training, whatever the level. Unfrozen BN
puts BatchNorm layers in train mode while training, so their running statistics follow the training
batches, and trains their affine parameters too. ViTs have no BatchNorm, so the switch changes nothing
there. Pure torch, imported lazily by the stages that train an encoder::

    params = prepare(clip.model.visual, "last-block", freeze_bn=True)   # sets requires_grad
    counts = parameter_counts(clip.model.visual, params, head_numel=K * (D + 1))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from synk8s.errors import UsageError

if TYPE_CHECKING:
    import torch

LEVELS = ("head", "proj", "last-block", "last-stage", "all")


def _tower_kind(visual: torch.nn.Module) -> str:
    if hasattr(visual, "attnpool") and hasattr(visual, "layer4"):
        return "resnet"
    if hasattr(visual, "transformer") and hasattr(visual, "ln_post"):
        return "vit"
    return type(visual).__name__


def level_prefixes(visual: torch.nn.Module, level: str) -> tuple[str, ...]:
    """Parameter-name prefixes of the image tower that train at ``level`` (``""`` means all).

    Raises:
        UsageError: unknown level, or a level between head and all for a tower of another kind.
    """
    if level not in LEVELS:
        raise UsageError(f"tune.trainable must be one of {', '.join(LEVELS)}, got {level!r}")
    if level == "head":
        return ()
    if level == "all":
        return ("",)
    kind = _tower_kind(visual)
    if kind == "resnet":
        stage = visual.layer4
        by_level = {
            "proj": ("attnpool.",),
            "last-block": ("attnpool.", f"layer4.{len(stage) - 1}."),
            "last-stage": ("attnpool.", "layer4."),
        }
        return by_level[level]
    if kind == "vit":
        blocks = len(visual.transformer.resblocks)
        proj = ("ln_post.", "proj", "attn_pool.", "ln_pool.")
        last = {"last-block": 1, "last-stage": max(1, blocks // 4)}.get(level, 0)
        return (*proj, *(f"transformer.resblocks.{i}." for i in range(blocks - last, blocks)))
    raise UsageError(f"tune.trainable={level} needs a ModifiedResNet or VisionTransformer image tower, got {kind}")


def batch_norms(visual: torch.nn.Module) -> list[torch.nn.Module]:
    """The BatchNorm layers of the tower, in module order."""
    from torch.nn.modules.batchnorm import _BatchNorm

    return [m for m in visual.modules() if isinstance(m, _BatchNorm)]


def _bn_param_names(visual: torch.nn.Module) -> set[str]:
    from torch.nn.modules.batchnorm import _BatchNorm

    names = set()
    for prefix, module in visual.named_modules():
        if isinstance(module, _BatchNorm):
            names.update(f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters(recurse=False))
    return names


def trainable_names(visual: torch.nn.Module, level: str, *, freeze_bn: bool) -> list[str]:
    """Names of the tower's parameters that train, in ``named_parameters`` order.

    Args:
        visual: the CLIP image tower (``clip.model.visual``).
        level: one of :data:`LEVELS`.
        freeze_bn: True keeps BatchNorm affine parameters out; False adds every one of them.
    """
    prefixes = level_prefixes(visual, level)
    bn = _bn_param_names(visual)
    names = []
    for name, _ in visual.named_parameters():
        if name in bn:
            if not freeze_bn:
                names.append(name)
        elif any(name == p or name.startswith(p) for p in prefixes if p) or "" in prefixes:
            names.append(name)
    return names


def prepare(visual: torch.nn.Module, level: str, *, freeze_bn: bool) -> list[torch.nn.Parameter]:
    """Turn ``requires_grad`` on for the parameters that train at ``level``, off for the rest.

    Returns:
        The trainable parameters, in ``named_parameters`` order.
    """
    chosen = set(trainable_names(visual, level, freeze_bn=freeze_bn))
    params = []
    for name, param in visual.named_parameters():
        param.requires_grad_(name in chosen)
        if name in chosen:
            params.append(param)
    return params


def set_mode(visual: torch.nn.Module, *, training: bool, freeze_bn: bool) -> None:
    """Eval mode everywhere, except BatchNorm layers while training with unfrozen BN.

    The tower's other layers have no train-mode behaviour in CLIP (no dropout), so eval mode for
    them changes nothing but keeps the rule simple: only BN statistics ever follow the batches.
    """
    visual.eval()
    if training and not freeze_bn:
        for module in batch_norms(visual):
            module.train()


def parameter_counts(
    visual: torch.nn.Module, params: Iterable[torch.nn.Parameter], *, head_numel: int
) -> dict[str, Any]:
    """How many parameters train, against the classifier model (image tower + head).

    Args:
        visual: the image tower.
        params: its trainable parameters (from :func:`prepare`).
        head_numel: parameters of the linear head, K x (D + 1).

    Returns:
        ``trained`` (head included), ``total`` (tower + head), ``fraction`` (trained / total, in [0, 1]),
        ``encoder_trained`` and ``encoder_total``.
    """
    encoder_trained = sum(p.numel() for p in params)
    encoder_total = sum(p.numel() for p in visual.parameters())
    trained, total = encoder_trained + head_numel, encoder_total + head_numel
    return {
        "trained": trained,
        "total": total,
        "fraction": trained / total,
        "encoder_trained": encoder_trained,
        "encoder_total": encoder_total,
    }
