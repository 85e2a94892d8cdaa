"""Feature cache keys: what identifies a set of CLIP image features.

A key is the SHA-256 of the canonical JSON of its parts: the CLIP name, a digest of the loaded
weights, the open_clip version, the preprocessing, the compute precision and the data identity.
Used by the features stage (:mod:`synk8s.stages.zeroshot.features`).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synk8s.models.clip import ClipBundle


def describe_preprocess(transform: Any) -> str:
    """A stable text description of an image transform (its repr without memory addresses)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(transform))


def cache_key(parts: dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``parts``; any changed part changes the key."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_parts(bundle: ClipBundle, precision: str, data: dict[str, Any]) -> dict[str, Any]:
    """What a feature cache key is made of.

    Args:
        bundle: the CLIP model (its identity, a digest of its weights and preprocessing go into the
            key, with the open_clip version).
        precision: compute precision, e.g. ``float32`` or ``float16`` (autocast on CUDA).
        data: identity of the images, e.g. ``{"kind": "synthetic", "tars": [sha256, ...]}``.
    """
    import open_clip

    from synk8s.models.clip import weights_digest

    return {
        "clip": bundle.identity,
        "weights": weights_digest(bundle.model),
        "open_clip": open_clip.__version__,
        "preprocess": describe_preprocess(bundle.preprocess),
        "precision": precision,
        "data": data,
    }
