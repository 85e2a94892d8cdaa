"""Model registries: names the config may use, and what each name stands for.

Registries are plain data, so listing or validating names imports no ML library. Every family has a
``tiny`` entry built from config with random weights and an offline tokenizer; the ``tiny`` profile
selects those, the ``paper`` profile the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from synk8s.errors import UsageError


@dataclass(frozen=True)
class GeneratorInfo:
    """A text-to-image generator and its default sampler settings.

    Attributes:
        name: registry name (or the raw model id for unregistered generators).
        model_id: diffusers model id on the hub, e.g. ``stabilityai/sd-turbo``.
        revision: hub revision (branch, tag or commit); None means the default branch.
        steps: default number of denoising steps.
        guidance: default classifier-free guidance scale; 0 turns guidance off.
        resolution: default image side in pixels (square images).
        pipeline: ``sd`` for Stable Diffusion 1.x/2.x pipelines, ``sdxl`` for SDXL pipelines, ``painter``
            for the class-conditional stand-in painter (:mod:`synk8s.models.painted`).
        tiny: built offline (random weights from config, or no weights at all) instead of loaded.
    """

    name: str
    model_id: str
    revision: str | None
    steps: int
    guidance: float
    resolution: int
    pipeline: Literal["sd", "sdxl", "painter"]
    tiny: bool = False


@dataclass(frozen=True)
class ClipInfo:
    """A CLIP model from open_clip.

    Attributes:
        name: registry name.
        arch: open_clip architecture name, e.g. ``RN50``.
        pretrained: open_clip pretrained tag, e.g. ``openai``.
        tiny: built from config with random weights instead of loaded.
    """

    name: str
    arch: str
    pretrained: str
    tiny: bool = False


@dataclass(frozen=True)
class LEInfo:
    """A sequence-to-sequence model for language enhancement (words to a sentence).

    Attributes:
        name: registry name (or the raw model id for hub ids).
        model_id: transformers model id on the hub.
        revision: hub revision (branch, tag or commit) of the model and its tokenizer; runs take it
            from ``models.le_revision``. None means the default branch.
        tiny: built from config with random weights instead of loaded.
    """

    name: str
    model_id: str
    revision: str | None = None
    tiny: bool = False


@dataclass(frozen=True)
class BackboneInfo:
    """An image classification backbone trained from scratch or fine-tuned.

    Attributes:
        name: registry name.
        tiny: a small ResNet for 32 px images instead of ResNet-50.
    """

    name: str
    tiny: bool = False


GENERATORS: dict[str, GeneratorInfo] = {
    info.name: info
    for info in (
        GeneratorInfo("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", None, 25, 7.5, 512, "sd"),
        GeneratorInfo("sd21", "stabilityai/stable-diffusion-2-1", None, 25, 7.5, 768, "sd"),
        GeneratorInfo("sd-turbo", "stabilityai/sd-turbo", None, 1, 0.0, 512, "sd"),
        GeneratorInfo("sdxl-turbo", "stabilityai/sdxl-turbo", None, 1, 0.0, 512, "sdxl"),
        GeneratorInfo("tiny-sd", "synk8s/tiny-sd", None, 2, 3.0, 32, "sd", tiny=True),
        GeneratorInfo("standin-drawn", "synk8s/standin-drawn", None, 1, 0.0, 32, "painter", tiny=True),
    )
}

CLIPS: dict[str, ClipInfo] = {
    info.name: info
    for info in (
        ClipInfo("rn50", "RN50", "openai"),
        ClipInfo("vit-b-16", "ViT-B-16", "openai"),
        ClipInfo("tiny-clip", "tiny-vit", "random", tiny=True),
        ClipInfo("tiny-clip-rn", "tiny-rn", "random", tiny=True),  # batch norm, as RN50: no signal
    )
}

LE_MODELS: dict[str, LEInfo] = {
    info.name: info
    for info in (
        LEInfo("t5-commongen", "mrm8488/t5-base-finetuned-common_gen"),
        LEInfo("tiny-t5", "synk8s/tiny-t5", tiny=True),
    )
}

BACKBONES: dict[str, BackboneInfo] = {
    info.name: info
    for info in (
        BackboneInfo("resnet50"),
        BackboneInfo("tiny-resnet", tiny=True),
    )
}

# Sampler defaults for a raw diffusers model id that is not in GENERATORS.
_RAW_SD_DEFAULTS = GENERATORS["sd15"]


def _unknown(kind: str, name: str, choices: dict[str, object], extra: str = "") -> UsageError:
    return UsageError(f"unknown {kind} {name!r}; choose one of: {', '.join(choices)}{extra}")


def get_generator_info(name_or_id: str, revision: str | None = None) -> GeneratorInfo:
    """Look up a generator by registry name; any other string is a raw diffusers model id.

    Args:
        name_or_id: a key of ``GENERATORS`` or a hub model id such as ``runwayml/stable-diffusion-v1-5``.
        revision: hub revision that overrides the registry's (ignored for tiny generators).

    Returns:
        The registry entry, or an ``sd`` entry with SD 1.5 sampler defaults for a raw id.

    Raises:
        UsageError: ``name_or_id`` is empty.
    """
    if not name_or_id.strip():
        raise _unknown("generator", name_or_id, GENERATORS, ", or a diffusers model id")
    info = GENERATORS.get(name_or_id)
    if info is None:
        info = replace(_RAW_SD_DEFAULTS, name=name_or_id, model_id=name_or_id, revision=None)
    if revision is not None and not info.tiny:
        info = replace(info, revision=revision)
    return info


def get_clip_info(name: str) -> ClipInfo:
    """Look up a CLIP model by registry name.

    Raises:
        UsageError: ``name`` is not a key of ``CLIPS``.
    """
    try:
        return CLIPS[name]
    except KeyError:
        raise _unknown("CLIP model", name, CLIPS) from None


def get_le_info(name_or_id: str, revision: str | None = None) -> LEInfo:
    """Look up a language-enhancement model by registry name or hub id (``owner/name``).

    Args:
        name_or_id: a key of ``LE_MODELS`` or a hub model id.
        revision: hub revision that overrides the registry's (ignored for tiny models).

    Raises:
        UsageError: ``name_or_id`` is neither a key of ``LE_MODELS`` nor contains ``/``.
    """
    info = LE_MODELS.get(name_or_id)
    if info is None:
        if "/" not in name_or_id.strip("/"):
            raise _unknown("language-enhancement model", name_or_id, LE_MODELS, ", or a hub id owner/name")
        info = LEInfo(name_or_id, name_or_id)
    if revision is not None and not info.tiny:
        info = replace(info, revision=revision)
    return info


def get_backbone_info(name: str) -> BackboneInfo:
    """Look up a backbone by registry name.

    Raises:
        UsageError: ``name`` is not a key of ``BACKBONES``.
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise _unknown("backbone", name, BACKBONES) from None
