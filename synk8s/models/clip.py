"""CLIP models from open_clip, wrapped with their preprocessing and tokenizer.

Real models load open_clip pretrained tags (``RN50``/``openai`` as in the paper) from the hub or from a
model cache file ``<cache>/open_clip/<arch>-<pretrained>.pt``. ``tiny-clip`` is an open_clip CLIP with a
small vision transformer image tower (32 px, 4 px patches, mean-pooled tokens) and a 2-layer text
tower, random weights from a seed, and open_clip's offline tokenizer. Its image features of different
images differ (mean pairwise cosine 0.2-0.3 over the drawn stand-in test images, where a random
ModifiedResNet gives 0.9999), so a linear head tuned on them learns the stand-in classes.

Example::

    clip = load_clip("rn50", device="cuda")
    image_features = clip.encode_image(torch.stack([clip.preprocess(im) for im in images]))  # (B, D)
    text_features = clip.encode_text(clip.tokenizer(["a photo of a fox."]))  # (T, D)
    logits = clip.logit_scale * image_features @ text_features.T  # (B, T)
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synk8s.models.cache import cached_file, has_entry
from synk8s.models.registry import ClipInfo, get_clip_info
from synk8s.models.weights import clip_file, clip_layout, weight_load

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

TINY_IMAGE_SIZE = 32  # pixels
_TINY_EMBED_DIM = 32
# tiny-vit (``tiny-clip``): mean pooling keeps each patch's colour and texture in the feature; a class
# token at random init carries little of the image (mean pairwise cosine 0.92 against 0.2).
# tiny-rn (``tiny-clip-rn``): RN50's ModifiedResNet shape with batch norm, for the code paths that
# freeze or train BN; its random features collapse (cosine 0.9999), so it shows no learning.
_TINY_VISION_CFGS = {
    "tiny-vit": {
        "image_size": TINY_IMAGE_SIZE,
        "patch_size": 4,
        "width": 64,
        "head_width": 32,
        "layers": 2,
        "mlp_ratio": 2.0,
        "pool_type": "avg",
    },
    "tiny-rn": {"image_size": TINY_IMAGE_SIZE, "layers": (1, 1, 1, 1), "width": 16},
}
_TINY_TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}


@dataclass(frozen=True)
class ClipBundle:
    """A frozen CLIP model with everything needed to encode images and texts.

    Attributes:
        model: the open_clip model, in eval mode with ``requires_grad`` off.
        preprocess: eval transform from a PIL image to a ``(3, image_size, image_size)`` float tensor.
        tokenizer: maps a list of strings to a ``(T, context_length)`` LongTensor.
        logit_scale: the learned temperature, already exponentiated (about 100 for OpenAI CLIP).
        identity: ``<arch>/<pretrained>`` for provenance; tiny models add their weight seed.
        image_size: side of the square input image in pixels.
        device: the device the model lives on; inputs are moved there.
    """

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    logit_scale: float
    identity: str
    image_size: int
    device: str

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features: ``(B, 3, H, W)`` preprocessed images to ``(B, D)`` float32."""
        import torch

        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            features = self.model.encode_image(images.to(self.device, dtype), normalize=True)
        return features.float()

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """L2-normalised text features: ``(T, context_length)`` token ids to ``(T, D)`` float32."""
        import torch

        with torch.no_grad():
            features = self.model.encode_text(tokens.to(self.device), normalize=True)
        return features.float()


def load_clip(name: str, *, device: str = "cpu", cache: str | None = None, seed: int = 0) -> ClipBundle:
    """Load a CLIP model by registry name, frozen and in eval mode, in float32.

    Args:
        name: a key of ``CLIPS`` (``rn50``, ``vit-b-16``, ``tiny-clip``).
        device: torch device. Default ``cpu``.
        cache: None to download the pretrained tag, or a model cache folder / ``s3://`` prefix holding
            ``open_clip/<arch>-<pretrained>.pt``; ``tiny-clip`` is read from it when it is there.
        seed: seed of the random weights of ``tiny-clip``; ignored for real models.

    Raises:
        UsageError: unknown ``name``.
        MissingDataError: ``cache`` lacks the weights file, or the weights cannot be fetched or read.
    """
    info = get_clip_info(name)
    if info.tiny and cache and has_entry(cache, clip_file(info.arch, info.pretrained)):
        import torch

        model, preprocess, tokenizer = _tiny_clip(info.arch, seed)
        hint = "synk8s models pull tiny-clip --cache {path}"
        source = cached_file(cache, clip_file(info.arch, info.pretrained), info.name, hint)
        model.load_state_dict(torch.load(source, map_location="cpu", weights_only=True))
        identity = f"{info.arch}/{info.pretrained}-cache-{hashlib.sha256(source.read_bytes()).hexdigest()[:12]}"
    elif info.tiny:
        model, preprocess, tokenizer = _tiny_clip(info.arch, seed)
        identity = f"{info.arch}/{info.pretrained}-seed-{seed}"
    else:
        model, preprocess, tokenizer = _pretrained_clip(info, device, cache)
        identity = f"{info.arch}/{info.pretrained}"
    model = model.to(device).eval().requires_grad_(False)
    size = model.visual.image_size
    image_size = size if isinstance(size, int) else size[0]
    log.info("CLIP %s on %s", identity, device)
    return ClipBundle(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        logit_scale=float(model.logit_scale.exp()),
        identity=identity,
        image_size=image_size,
        device=device,
    )


def _pretrained_clip(info: ClipInfo, device: str, cache: str | None) -> tuple[Any, Any, Any]:
    """Create an open_clip model with the tag's weights and preprocessing, from the hub or a cache."""
    import open_clip

    tag_cfg = open_clip.get_pretrained_cfg(info.arch, info.pretrained)
    # OpenAI weights were trained with QuickGELU; the plain architecture configs use GELU.
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    tag = f"{info.arch}/{info.pretrained}"
    source = None
    if cache is not None:
        hint = (
            f"torch.save(open_clip.create_model({info.arch!r}, pretrained={info.pretrained!r}).state_dict(), "
            "'{path}')"
        )
        source = cached_file(cache, clip_file(info.arch, info.pretrained), tag, hint)
    with weight_load("CLIP model", tag, clip_layout(info.arch, info.pretrained), source):
        model, _, preprocess = open_clip.create_model_and_transforms(
            info.arch,
            pretrained=info.pretrained if source is None else str(source),
            device=device,
            force_quick_gelu=quick_gelu,
            image_mean=tag_cfg.get("mean"),
            image_std=tag_cfg.get("std"),
            image_interpolation=tag_cfg.get("interpolation"),
            image_resize_mode=tag_cfg.get("resize_mode"),
        )
    return model, preprocess, open_clip.get_tokenizer(info.arch)


def _tiny_clip(arch: str, seed: int) -> tuple[Any, Any, Any]:
    """A small random-weight open_clip CLIP (32 px image tower ``arch``, 2-layer text tower, 32-d embeddings)."""
    import torch
    from open_clip.model import CLIP
    from open_clip.tokenizer import SimpleTokenizer
    from open_clip.transform import image_transform

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(
            embed_dim=_TINY_EMBED_DIM, vision_cfg=dict(_TINY_VISION_CFGS[arch]), text_cfg=dict(_TINY_TEXT_CFG)
        )
    preprocess = image_transform(TINY_IMAGE_SIZE, is_train=False)
    return model, preprocess, SimpleTokenizer(context_length=_TINY_TEXT_CFG["context_length"])


def preprocess_settings(bundle: ClipBundle) -> dict[str, Any]:
    """The eval preprocessing of a loaded CLIP, as arguments of :func:`eval_transform`.

    Returns:
        ``image_size`` (side of the square input, pixels), ``mean`` and ``std`` (per RGB channel, of
        pixels scaled to [0, 1]), ``interpolation`` (``bicubic`` or ``bilinear``) and ``resize_mode``
        (``shortest``: resize the short side, then centre-crop; ``longest``; ``squash``).
    """
    from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    cfg = getattr(bundle.model.visual, "preprocess_cfg", None) or {}  # set for pretrained tags, not tiny towers
    return {
        "image_size": bundle.image_size,
        "mean": [float(v) for v in cfg.get("mean", OPENAI_DATASET_MEAN)],
        "std": [float(v) for v in cfg.get("std", OPENAI_DATASET_STD)],
        "interpolation": cfg.get("interpolation", "bicubic"),
        "resize_mode": cfg.get("resize_mode", "shortest"),
    }


def eval_transform(settings: dict[str, Any]) -> Callable[[Any], torch.Tensor]:
    """open_clip's eval transform (PIL image to ``(3, size, size)`` float tensor) from :func:`preprocess_settings`."""
    from open_clip.transform import image_transform

    return image_transform(
        settings["image_size"],
        is_train=False,
        mean=tuple(settings["mean"]),
        std=tuple(settings["std"]),
        interpolation=settings["interpolation"],
        resize_mode=settings["resize_mode"],
    )


def image_tower(name: str) -> torch.nn.Module:
    """The image tower of the registry CLIP ``name`` with untrained weights, built offline to load a state dict into.

    Raises:
        UsageError: unknown ``name``.
    """
    info = get_clip_info(name)
    if info.tiny:
        return _tiny_clip(info.arch, 0)[0].visual
    import open_clip
    import torch

    quick_gelu = bool(open_clip.get_pretrained_cfg(info.arch, info.pretrained).get("quick_gelu", False))
    with torch.random.fork_rng(devices=[]):  # the untrained weights are replaced; the caller's RNG stays as it was
        return open_clip.create_model(info.arch, pretrained=None, force_quick_gelu=quick_gelu).visual


_DIGESTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def weights_digest(model: Any) -> str:
    """Hex SHA-256 over a model's state dict (names, dtypes, shapes and bytes, in key order).

    Names the weights actually loaded, whatever file or cache they came from, so a feature cache
    keyed by it never serves features of other weights under the same ``<arch>/<pretrained>``.
    Computed once per model object (about 0.1 GB of bytes for RN50); the frozen model never changes.
    """
    if model in _DIGESTS:
        return _DIGESTS[model]
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    _DIGESTS[model] = digest.hexdigest()
    return _DIGESTS[model]
