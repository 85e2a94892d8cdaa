"""Model registries and loaders: generators, CLIP, language enhancement, backbones.

Importing this package is cheap: registries are plain data, and the loaders (with torch, diffusers,
transformers and open_clip behind them) are imported on first use.

Example::

    from synk8s import models

    models.get_generator_info("sd-turbo").steps      # 1
    pipe = models.load_generator("tiny-sd", seed=0)   # 32 px random-weight Stable Diffusion
    clip = models.load_clip("tiny-clip")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from synk8s.models.registry import (
    BACKBONES,
    CLIPS,
    GENERATORS,
    LE_MODELS,
    BackboneInfo,
    ClipInfo,
    GeneratorInfo,
    LEInfo,
    get_backbone_info,
    get_clip_info,
    get_generator_info,
    get_le_info,
)

if TYPE_CHECKING:
    from synk8s.models.backbones import build_backbone
    from synk8s.models.clip import ClipBundle, load_clip
    from synk8s.models.device import auto_device, resolve_device, resolve_dtype
    from synk8s.models.generators import generator_identity, load_generator, loaded_revision
    from synk8s.models.language import load_le

# Public name -> submodule that defines it, imported on first attribute access.
_LAZY = {
    "build_backbone": "backbones",
    "ClipBundle": "clip",
    "load_clip": "clip",
    "auto_device": "device",
    "resolve_device": "device",
    "resolve_dtype": "device",
    "generator_identity": "generators",
    "load_generator": "generators",
    "loaded_revision": "generators",
    "load_le": "language",
}

__all__ = [
    "BACKBONES",
    "CLIPS",
    "GENERATORS",
    "LE_MODELS",
    "BackboneInfo",
    "ClipBundle",
    "ClipInfo",
    "GeneratorInfo",
    "LEInfo",
    "auto_device",
    "build_backbone",
    "generator_identity",
    "get_backbone_info",
    "get_clip_info",
    "get_generator_info",
    "get_le_info",
    "load_clip",
    "load_generator",
    "load_le",
    "loaded_revision",
    "resolve_device",
    "resolve_dtype",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
