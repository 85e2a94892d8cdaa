"""Readers of the features stages' outputs, and the CLIP model and real-image features they share.

The features stage (:mod:`.features`) and the test_features stage (:mod:`.eval_features`) write
``features.json`` (feature set name -> cache entry URI) and ``text_head.safetensors``; the stages
downstream (filter, leakage, tune, evaluate, the few-shot stages) read them through this module.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from synk8s import datasets, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import IntegrityError, MissingDataError
from synk8s.runs import read_manifest
from synk8s.stages.zeroshot.feature_cache import FeatureSet, cached_or_encode, entry_sha256, read_entry
from synk8s.stages.zeroshot.feature_workers import dataset_sources

if TYPE_CHECKING:
    import torch

    from synk8s.models.clip import ClipBundle

# Seed of the random weights of a tiny CLIP. Like pretrained weights they are the model's, not the run's:
# every seed of a run encodes with the same model, so the test features are shared by all seeds.
CLIP_WEIGHT_SEED = 0


def load_clip_for(cfg: ExperimentConfig) -> ClipBundle:
    """The run's CLIP model (``models.clip``) on the run's device; tiny weights drawn with :data:`CLIP_WEIGHT_SEED`."""
    from synk8s.models import load_clip, resolve_device

    return load_clip(
        cfg.models.clip, device=resolve_device(cfg.device), cache=cfg.models.cache, seed=CLIP_WEIGHT_SEED
    )


def real_features(
    cfg: ExperimentConfig,
    split: str,
    *,
    bundle: ClipBundle | None = None,
    root: str | None = None,
    progress: bool = True,
) -> FeatureSet:
    """CLIP features of a real dataset split, from the cache or freshly encoded.

    The dataset stand-in is written first when ``dataset.standin`` is on and the data is absent
    (see :func:`synk8s.realdata.ensure_dataset`).

    Args:
        cfg: the run's config (dataset, CLIP model, device, store root for the cache).
        split: a split of the dataset, e.g. its ``test_split``.
        bundle: an already loaded CLIP model to reuse; loaded from ``cfg`` when None.
        root: the local data root :func:`~synk8s.realdata.ensure_dataset` returned for ``cfg``;
            prepared from ``cfg`` when None.
        progress: show a progress bar while encoding.

    Raises:
        MissingDataError: the dataset files are absent and no stand-in is configured.
    """
    from synk8s.realdata import ensure_dataset

    root = root or ensure_dataset(cfg)
    data_set = datasets.load(datasets.info(cfg.dataset), split, root)
    data = {"kind": "real", "dataset": cfg.dataset.name, "split": split, "ident": data_set.ident}

    samples = dataset_sources(data_set)  # by index: decoding workers read only their own items
    clip = bundle or load_clip_for(cfg)
    return cached_or_encode(
        cfg, clip, data, samples, total=len(data_set), desc=f"{split} features", progress=progress
    )


def read_tensors(uri: str, sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors object from the store: (tensors on CPU, header metadata).

    Args:
        uri: the object.
        sha256: the SHA-256 a manifest recorded for it; the bytes read are checked against it and
            against the hash the store recorded when they were written.

    Raises:
        IntegrityError: the bytes differ from a recorded SHA-256, or do not parse as safetensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    data = storage.get_bytes(uri, sha256=sha256)
    try:
        header_len = int.from_bytes(data[:8], "little")  # safetensors layout: u64 length, JSON header, tensors
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
        return load(data), metadata
    except (SafetensorError, ValueError) as error:
        raise IntegrityError(f"{uri} is damaged: it does not read as safetensors ({error})") from None


def feature_set_uri(features: str, name: str) -> str:
    """URI of one FeatureSet (``synthetic``, ``test``, ...) listed in ``<features>/features.json``."""
    read_manifest(features, "features")
    listing = storage.get_json(storage.join(features, "features.json"))
    if name not in listing:
        raise MissingDataError(
            f"{storage.join(features, 'features.json')} lists no {name!r} features "
            f"(has: {', '.join(sorted(listing))}); rerun `synk8s stage features`"
        )
    return listing[name]


def load_feature_set(features: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The (N, D) float32 features and (N,) int64 labels of one FeatureSet of the features stage.

    Raises:
        IntegrityError: the cache entry differs from the SHA-256 recorded when it was written.
    """
    tensors = read_entry(feature_set_uri(features, name))
    return tensors["features"].float(), tensors["labels"].long()


def check_feature_sets(features: str) -> dict[str, str]:
    """Stream every feature set listed in ``<features>/features.json`` through SHA-256 (the resume check).

    Returns:
        The listing, name -> cache entry URI.

    Raises:
        IntegrityError: an entry differs from the SHA-256 recorded when it was written.
    """
    listing = storage.get_json(storage.join(features, "features.json"))
    for uri in listing.values():
        storage.verify(uri, entry_sha256(uri))
    return listing


def load_text_head(features: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The zero-shot head of the features stage: (K, D) weight (already x logit_scale), (K,) bias."""
    manifest = read_manifest(features, "features")
    uri = storage.join(features, "text_head.safetensors")
    tensors, _ = read_tensors(uri, sha256=(manifest.get("outputs") or {}).get("text_head.safetensors"))
    return tensors["weight"].float(), tensors["bias"].float()
