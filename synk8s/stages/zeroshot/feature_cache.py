"""The feature cache: CLIP image features encoded once per model, preprocessing and data.

An entry is ``<store.root>/cache/features/<key>.safetensors`` (tensors ``features`` (N, D) float32,
L2-normalised, and ``labels`` (N,) int64) with ``<key>.json`` beside it (what went into the key, and
the sample keys, and the SHA-256 of the ``.safetensors`` bytes). Keys are made in
:mod:`synk8s.stages.zeroshot.feature_keys`. An entry is written only once every expected image was encoded, so
a damaged tar never leaves a short feature set behind. A hit is hashed as it is read and checked
against the recorded SHA-256: a damaged or truncated entry is deleted, one warning says so, and the
images are encoded again. Used by the features stage and by every stage that encodes images with the
run's CLIP model.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synk8s import storage
from synk8s.config import ExperimentConfig
from synk8s.errors import IntegrityError, StoreError, UsageError
from synk8s.stages.zeroshot.feature_keys import cache_key, key_parts
from synk8s.stages.zeroshot.feature_workers import Sample, preprocessed_batches

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from synk8s.models.clip import ClipBundle

logger = logging.getLogger(__name__)

CACHE_DIR = ("cache", "features")

@dataclass(frozen=True)
class FeatureSet:
    """CLIP features of one image set, as stored in the feature cache.

    Attributes:
        features: (N, D) float32 L2-normalised image features, in data order.
        labels: (N,) int64 class indices.
        uri: the cache object ``<key>.safetensors``.
        key: the cache key (hex SHA-256).
        sample_keys: WebDataset keys of synthetic images in order; empty for real data.
        from_cache: True when read from the cache, False when encoded by this call.
    """

    features: torch.Tensor
    labels: torch.Tensor
    uri: str
    key: str
    sample_keys: tuple[str, ...]
    from_cache: bool


# ----------------------------------------------------------------------------- cache keys (see feature_keys)


def cache_uri(cfg: ExperimentConfig, key: str, suffix: str) -> str:
    """``<store.root>/cache/features/<key><suffix>``."""
    return storage.join(cfg.store.root, *CACHE_DIR, f"{key}{suffix}")


# ----------------------------------------------------------------------------- encoding


def compute_dtype(cfg: ExperimentConfig, device: str) -> torch.dtype:
    """Autocast dtype of the image encoder: half precision on CUDA by default, float32 on CPU.

    bfloat16 also runs on a CPU (torch's CPU autocast supports it); float16 needs CUDA.

    Raises:
        UsageError: ``features.dtype`` asks for float16 on a CPU device.
    """
    import torch

    from synk8s.models import resolve_dtype

    dtype = resolve_dtype(cfg.features.dtype, device)
    if dtype == torch.float16 and not device.startswith("cuda"):
        raise UsageError(
            f"features.dtype={cfg.features.dtype} needs a CUDA device, got device {device}; "
            "set features.dtype=auto, float32 or bfloat16"
        )
    return dtype


def encode_batch(bundle: ClipBundle, pixels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """L2-normalised float32 CPU features (B, D) of preprocessed images (B, 3, H, W), autocast to ``dtype``."""
    import torch
    import torch.nn.functional as F

    device_type = "cuda" if bundle.device.startswith("cuda") else "cpu"
    with torch.inference_mode(), torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32):
        return F.normalize(bundle.encode_image(pixels).float(), dim=-1).cpu()  # (B, D)


def encode_images(
    bundle: ClipBundle,
    images: Iterable[Image.Image],
    *,
    batch_size: int,
    dtype: torch.dtype,
    total: int | None = None,
    desc: str = "encode",
    progress: bool = True,
) -> torch.Tensor:
    """Encode PIL images with the CLIP image tower, in batches.

    Args:
        bundle: the CLIP model.
        images: PIL images in order (a stream is fine).
        batch_size: images per forward pass.
        dtype: ``torch.float32``, or a half dtype used through autocast (CUDA; bfloat16 also on CPU).
        total: number of images, for the progress bar's ETA; optional.
        desc: progress bar label.
        progress: show a tqdm progress bar (images/s, ETA).

    Returns:
        (N, D) float32 CPU tensor of L2-normalised features.
    """
    import torch
    from tqdm.auto import tqdm

    chunks: list[torch.Tensor] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        chunks.append(encode_batch(bundle, torch.stack(batch), dtype))  # (B, D)
        bar.update(len(batch))
        batch.clear()

    with torch.inference_mode(), tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for image in images:
            batch.append(bundle.preprocess(image))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    if not chunks:
        raise ValueError(f"{desc}: no images to encode")
    return torch.cat(chunks)  # (N, D)


# ----------------------------------------------------------------------------- cached feature sets


def entry_info(uri: str) -> dict[str, Any]:
    """The ``<key>.json`` written beside the cache entry ``<key>.safetensors`` (its ``sha256`` among others)."""
    return storage.get_json(uri.removesuffix(".safetensors") + ".json")


def entry_sha256(uri: str) -> str | None:
    """The SHA-256 recorded for ``<key>.safetensors`` in its ``<key>.json``; None when neither records one.

    Without it (an entry written before hashes were recorded, or tensors saved by hand) reads are
    still checked against the store's recorded SHA-256.
    """
    info_uri = uri.removesuffix(".safetensors") + ".json"
    return storage.get_json(info_uri).get("sha256") if storage.exists(info_uri) else None


def read_entry(uri: str) -> dict[str, torch.Tensor]:
    """The tensors of a cache entry, its bytes checked against the SHA-256 recorded when it was written.

    Raises:
        IntegrityError: the entry is truncated, damaged or does not parse.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(storage.get_bytes(uri, sha256=entry_sha256(uri)))
    except SafetensorError as error:
        raise IntegrityError(f"{uri} is damaged: {error}") from None


def _read_cached(uri: str, key: str) -> FeatureSet:
    tensors = read_entry(uri)
    info = entry_info(uri)
    return FeatureSet(
        features=tensors["features"],
        labels=tensors["labels"],
        uri=uri,
        key=key,
        sample_keys=tuple(info["sample_keys"]),
        from_cache=True,
    )


def cached_or_encode(
    cfg: ExperimentConfig,
    bundle: ClipBundle,
    data: dict[str, Any],
    samples: Callable[[], Iterable[Sample]],
    *,
    total: int,
    desc: str,
    progress: bool,
) -> FeatureSet:
    """Read the cached features of ``data`` or encode ``samples()`` (yielding (key, image, label)).

    An image may be a zero-argument callable that decodes it; with ``features.workers`` above 0,
    DataLoader workers decode and preprocess (see :mod:`synk8s.stages.zeroshot.feature_workers`);
    ``samples`` is called once, in this process, so each tar is read and checked once.

    The cache entry is written only when ``samples()`` ran to its end and gave exactly ``total``
    images; a cached entry of another size is encoded again, and one whose bytes differ from the
    SHA-256 recorded in its ``<key>.json`` (or that does not read back) is deleted, named in one
    warning line, and encoded again.
    """
    import torch
    from safetensors.torch import save
    from tqdm.auto import tqdm

    device = bundle.device
    dtype = compute_dtype(cfg, device)
    parts = key_parts(bundle, str(dtype).removeprefix("torch."), data)
    key = cache_key(parts)
    uri = cache_uri(cfg, key, ".safetensors")
    if storage.exists(uri):
        try:
            cached = _read_cached(uri, key)
        except (StoreError, KeyError) as error:  # damaged, truncated, or its JSON is missing or damaged
            reason = error if isinstance(error, StoreError) else f"{uri} lacks {error}"
            logger.warning("%s: feature cache entry discarded, encoding again: %s", desc, reason)
            storage.delete(uri)
        else:
            if len(cached.labels) == total:
                logger.info("%s: feature cache hit %s", desc, uri)
                return cached
            logger.warning("%s: %s holds %d images, not %d; encoding again", desc, uri, len(cached.labels), total)

    sample_keys: list[str] = []
    labels: list[int] = []
    chunks: list[torch.Tensor] = []
    batches = preprocessed_batches(
        samples, bundle.preprocess, batch_size=cfg.features.batch_size, workers=cfg.features.workers
    )
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for pixels, keys, batch_labels in batches:
            chunks.append(encode_batch(bundle, pixels, dtype))  # (B, D)
            sample_keys.extend(k for k in keys if k is not None)
            labels.extend(batch_labels)
            bar.update(len(batch_labels))
    if not chunks:
        raise ValueError(f"{desc}: no images to encode")
    feats = torch.cat(chunks)  # (N, D)
    if len(labels) != total:
        raise IntegrityError(f"{desc}: encoded {len(labels)} images where {total} were expected; nothing cached")
    label_tensor = torch.tensor(labels, dtype=torch.int64)  # (N,)
    # One metadata entry only: safetensors writes several in a random order, and the bytes must not vary.
    blob = save({"features": feats, "labels": label_tensor}, metadata={"key": key})
    # The JSON goes first: a visible .safetensors object means the entry is complete.
    entry = {"key": key, "parts": parts, "count": len(labels), "sample_keys": sample_keys,
             "sha256": hashlib.sha256(blob).hexdigest()}
    storage.put_json(cache_uri(cfg, key, ".json"), entry)
    storage.put_bytes(uri, blob)
    logger.info("%s: encoded %d images into %s", desc, len(labels), uri)
    return FeatureSet(feats, label_tensor, uri, key, tuple(sample_keys), from_cache=False)
