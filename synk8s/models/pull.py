"""Filling a model cache on a machine with hub access: ``synk8s models pull``.

    pull("sd15", "s3://synk8s/models")           # save_pretrained copy under <cache>/<owner>--<name>/
    pull("rn50", "./models")                      # open_clip state dict under <cache>/open_clip/RN50-openai.pt
    pull("resnet50", "./models")                  # ImageNet-1K ResNet-50: <cache>/backbones/, <cache>/torchvision/
    pull("tiny-sd", "./models", seed=0)           # a tiny model, built from config: works offline
    cached(["sd15", "rn50"], "./models")          # which of them the cache holds

The layout is the one the loaders read (see :mod:`synk8s.models.cache`). Each model is first
written to a temporary folder and then copied file by file through :mod:`synk8s.storage`, whose
writes are atomic, so an interrupted pull leaves no half-written file behind.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from synk8s import storage
from synk8s.errors import UsageError
from synk8s.models.cache import backbone_entry, detection_entry, entry_name, has_entry
from synk8s.models.registry import BACKBONES, CLIPS, GENERATORS, LE_MODELS, get_generator_info, get_le_info
from synk8s.models.weights import clip_file

KINDS = ("generator", "clip", "le", "backbone")


@dataclass(frozen=True)
class CacheEntry:
    """A model and where it lives in a cache.

    Attributes:
        name: registry name or hub id.
        kind: ``generator``, ``clip``, ``le`` or ``backbone`` (ImageNet-1K weights of a ResNet).
        entry: its path below the cache root (a folder; a file for open_clip).
        tiny: built from config rather than downloaded.
    """

    name: str
    kind: str
    entry: str
    tiny: bool


def resolve(name: str, kind: str | None = None) -> CacheEntry:
    """The cache entry of ``name``: a registry name of any family, or a hub id with ``kind``.

    Raises:
        UsageError: an unknown name without ``kind``, or an unknown ``kind``.
    """
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown model kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if kind == "clip" or (kind is None and name in CLIPS):
        if name not in CLIPS:
            raise UsageError(f"unknown CLIP model {name!r}; choose one of: {', '.join(CLIPS)}")
        info = CLIPS[name]
        return CacheEntry(name, "clip", clip_file(info.arch, info.pretrained), info.tiny)
    if kind == "backbone" or (kind is None and name in BACKBONES):
        if name not in BACKBONES:
            raise UsageError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
        return CacheEntry(name, "backbone", backbone_entry(name), BACKBONES[name].tiny)
    if kind == "le" or (kind is None and name in LE_MODELS):
        le = get_le_info(name)
        return CacheEntry(name, "le", entry_name(le.model_id), le.tiny)
    if kind == "generator" or name in GENERATORS:
        generator = get_generator_info(name)
        return CacheEntry(name, "generator", entry_name(generator.model_id), generator.tiny)
    known = ", ".join([*GENERATORS, *CLIPS, *LE_MODELS, *BACKBONES])
    raise UsageError(f"unknown model {name!r}; choose one of: {known}, or a hub id with --kind generator|le")


def pull(name: str, cache: str, *, kind: str | None = None, seed: int = 0, revision: str | None = None) -> str:
    """Write model ``name`` into the model cache ``cache`` in the layout the loaders read; returns its URI.

    A backbone (``resnet50``) writes two files: its ImageNet-1K state dict (torchvision's
    ``IMAGENET1K_V2``), which pre-training and fine-tuning start from, and torchvision's
    ``IMAGENET1K_V1`` file, which detection starts from.

    Args:
        name: a registry name (``sd15``, ``rn50``, ``t5-commongen``, ``resnet50``, ``tiny-sd``, ...) or a hub id.
        cache: a folder or ``s3://`` prefix.
        kind: ``generator`` or ``le`` for a hub id that is not a registry name.
        seed: weights of a tiny model (ignored for real ones).
        revision: hub revision of a generator or LE model (default: the registry's).

    Raises:
        UsageError: unknown name or kind, or a tiny backbone (it has no ImageNet weights).
        MissingDataError: the hub cannot be reached (a real model on a machine without internet).
    """
    target = resolve(name, kind)
    if target.kind == "backbone":
        return _pull_backbone(target, cache)
    with tempfile.TemporaryDirectory(prefix="synk8s-pull-") as tmp:
        local = Path(tmp) / "entry"
        if target.kind == "generator":
            _save_generator(name, local, seed, revision)
        elif target.kind == "clip":
            _save_clip(name, local, seed)
        else:
            _save_le(name, local, seed, revision)
        uri = storage.join(cache, target.entry)
        if local.is_file():
            storage.put_file(uri, local)
            return uri
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            storage.put_file(storage.join(uri, path.relative_to(local).as_posix()), path)
    return uri


def cached(names: list[str], cache: str) -> dict[str, bool]:
    """Whether ``cache`` holds each of the registry models ``names``."""
    return {name: has_entry(cache, resolve(name).entry) for name in names}


def _pull_backbone(target: CacheEntry, cache: str) -> str:
    """Write a backbone's two ImageNet-1K files into ``cache``; returns the URI of its state dict."""
    if target.tiny:
        raise UsageError(f"backbone {target.name!r} has no ImageNet weights: there is nothing to pull")
    import torch
    from torchvision.models import ResNet50_Weights

    from synk8s.models.weights import weight_load

    files = {target.entry: ResNet50_Weights.IMAGENET1K_V2, detection_entry(): ResNet50_Weights.IMAGENET1K_V1}
    with tempfile.TemporaryDirectory(prefix="synk8s-pull-") as tmp:
        for entry, weights in files.items():
            local = Path(tmp) / entry
            local.parent.mkdir(parents=True, exist_ok=True)
            with weight_load("backbone", f"torchvision/{target.name} {weights.name}", entry):
                torch.save(weights.get_state_dict(progress=False), local)
            storage.put_file(storage.join(cache, entry), local)
    return storage.join(cache, target.entry)


def _save_generator(name: str, folder: Path, seed: int, revision: str | None) -> None:
    from synk8s.models.generators import load_generator

    info = get_generator_info(name, revision)
    if info.pipeline == "painter":
        raise UsageError(f"generator {name!r} paints images with no weights: there is nothing to pull")
    if info.tiny:
        load_generator(name, seed=seed).save_pretrained(folder)
        return
    from diffusers import DiffusionPipeline

    from synk8s.models.weights import pretrained_layout, weight_load

    with weight_load("generator", info.model_id, pretrained_layout(info.model_id)):
        DiffusionPipeline.from_pretrained(info.model_id, revision=info.revision).save_pretrained(folder)


def _save_clip(name: str, file: Path, seed: int) -> None:
    import torch

    from synk8s.models.clip import load_clip

    info = CLIPS[name]
    if info.tiny:
        model = load_clip(name, seed=seed).model
    else:
        import open_clip

        from synk8s.models.weights import clip_layout, weight_load

        with weight_load("CLIP model", f"{info.arch}/{info.pretrained}", clip_layout(info.arch, info.pretrained)):
            model = open_clip.create_model(info.arch, pretrained=info.pretrained)
    torch.save(model.state_dict(), file)


def _save_le(name: str, folder: Path, seed: int, revision: str | None) -> None:
    from synk8s.models.language import load_le

    info = get_le_info(name, revision)
    if info.tiny:
        model, tokenizer = load_le(name, seed=seed)
    else:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        from synk8s.models.weights import pretrained_layout, weight_load

        with weight_load("LE model", info.model_id, pretrained_layout(info.model_id)):
            model = AutoModelForSeq2SeqLM.from_pretrained(info.model_id, revision=info.revision)
            tokenizer = AutoTokenizer.from_pretrained(info.model_id, revision=info.revision)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
