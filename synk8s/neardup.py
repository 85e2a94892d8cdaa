"""Near-duplicate search between two image sets: CLIP cosine similarity and a perceptual difference hash.

    hashes = dhash_all(images)                                   # (N,) uint64, one 64-bit dHash per image
    close = hash_pairs(syn_hashes, test_hashes, max_distance=4)  # [(i, j, bits differing)]
    similar = cosine_pairs(syn_feats, test_feats, threshold=0.95)  # [(i, j, cosine)]

dHash (Krawetz's difference hash): the image in grey, resized to (size + 1) x size with a box
filter, one bit per horizontally adjacent pair (left brighter than right). Two images whose hashes
differ in few bits look alike at a coarse scale, whatever their size or JPEG quality; CLIP cosine
finds the same content under larger changes (crop, colour).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from PIL import Image

HASH_SIZE = 8  # 8 x 8 = 64 bits
CHUNK = 4096  # rows compared at once (memory: CHUNK x other rows)


def dhash(image: Image.Image, size: int = HASH_SIZE) -> int:
    """The ``size * size``-bit difference hash of one image, as an int (bit 0: the first pixel pair)."""
    from PIL import Image

    grey = np.asarray(image.convert("L").resize((size + 1, size), Image.Resampling.BOX), dtype=np.int16)
    bits = (grey[:, :-1] > grey[:, 1:]).flatten()  # (size, size + 1) -> (size * size,)
    return int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")


def dhash_all(images: Iterable[Image.Image]) -> np.ndarray:
    """(N,) uint64 dHashes of the images, in order."""
    return np.array([dhash(image) for image in images], dtype=np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits differing between each hash of ``a`` (N,) and each of ``b`` (M,): (N, M) int64."""
    xor = np.bitwise_xor(a[:, None], b[None, :])  # (N, M) uint64
    return np.unpackbits(xor.view(np.uint8).reshape(*xor.shape, 8), axis=-1).sum(axis=-1).astype(np.int64)


def hash_pairs(a: np.ndarray, b: np.ndarray, *, max_distance: int) -> list[tuple[int, int, int]]:
    """Pairs ``(i, j, distance)`` whose hashes differ in at most ``max_distance`` bits, by (distance, i, j)."""
    found = []
    for start in range(0, len(a), CHUNK):
        dist = hamming(a[start : start + CHUNK], b)  # (chunk, M)
        rows, cols = np.nonzero(dist <= max_distance)
        found.extend((int(r) + start, int(c), int(dist[r, c])) for r, c in zip(rows, cols, strict=True))
    return sorted(found, key=lambda p: (p[2], p[0], p[1]))


def cosine_pairs(a: torch.Tensor, b: torch.Tensor, *, threshold: float) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, cosine)`` of L2-normalised rows of ``a`` (N, D) and ``b`` (M, D) with cosine above ``threshold``.

    Sorted by cosine, highest first (ties by i, j).
    """
    import torch

    found = []
    for start in range(0, len(a), CHUNK):
        sims = a[start : start + CHUNK].float() @ b.float().T  # (chunk, M)
        rows, cols = torch.nonzero(sims > threshold, as_tuple=True)
        found.extend((int(r) + start, int(c), round(float(sims[r, c]), 6)) for r, c in zip(rows, cols, strict=True))
    return sorted(found, key=lambda p: (-p[2], p[0], p[1]))


def closest(a: torch.Tensor, b: torch.Tensor, count: int) -> list[tuple[int, int, float]]:
    """The ``count`` most similar ``(i, j, cosine)`` pairs, each row of ``a`` at most once, highest first."""
    import torch

    best = torch.full((len(a),), -2.0)
    best_j = torch.zeros(len(a), dtype=torch.int64)
    for start in range(0, len(a), CHUNK):
        sims = a[start : start + CHUNK].float() @ b.float().T  # (chunk, M)
        values, index = sims.max(dim=1)
        best[start : start + len(values)], best_j[start : start + len(values)] = values, index
    order = torch.sort(best, descending=True, stable=True).indices[:count]
    return [(int(i), int(best_j[i]), round(float(best[i]), 6)) for i in order]
