"""Image decoding and CLIP preprocessing for the feature cache, inline or on DataLoader workers.

``features.workers`` (a speed switch: the features do not depend on it) moves decoding and
preprocessing off the process that runs the image encoder. Samples are cut into batches of
``features.batch_size``; with ``W`` workers, worker ``w`` decodes batches ``w, w + W, w + 2W, ...``
and a DataLoader hands them back in batch order, so the encoder sees the same batches as inline
decoding. Every worker walks the whole sample stream (reading, and for tars checking, every byte)
but decodes only its own batches: sources are zero-argument callables that decode on demand
(:func:`synk8s.shards.iter_samples` with ``lazy=True``; :func:`dataset_sources` for real data).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from synk8s import storage

if TYPE_CHECKING:
    import torch
    from PIL import Image

# (sample key or None, PIL image or a zero-argument callable returning one, class index)
Sample = tuple[str | None, Any, int]


def _image(source: Any) -> Image.Image:
    return source() if callable(source) else source


def _item_image(data_set: Any, index: int) -> Image.Image:
    return data_set[index][0]


def dataset_sources(data_set: Any) -> Iterator[Sample]:
    """``(None, lazy image, label)`` for every sample of a map-style dataset with a ``labels`` list."""
    for index, label in enumerate(data_set.labels):
        yield None, functools.partial(_item_image, data_set, index), int(label)


def _batches(samples: Callable[[], Iterable[Sample]], preprocess: Callable[[Any], torch.Tensor], batch_size: int,
             worker: int, workers: int) -> Iterator[tuple[torch.Tensor, list[str | None], list[int]]]:
    """The batches ``worker`` of ``workers`` owns, preprocessed: ``(pixels (B, 3, H, W), keys, labels)``."""
    import torch

    batch: list[Sample] = []
    index = 0

    def done() -> tuple[torch.Tensor, list[str | None], list[int]]:
        pixels = torch.stack([preprocess(_image(source)) for _, source, _ in batch])  # (B, 3, H, W)
        return pixels, [key for key, _, _ in batch], [label for _, _, label in batch]

    for sample in samples():
        batch.append(sample)
        if len(batch) == batch_size:
            if index % workers == worker:
                yield done()
            batch, index = [], index + 1
    if batch and index % workers == worker:
        yield done()


def preprocessed_batches(
    samples: Callable[[], Iterable[Sample]],
    preprocess: Callable[[Any], torch.Tensor],
    *,
    batch_size: int,
    workers: int,
) -> Iterator[tuple[torch.Tensor, list[str | None], list[int]]]:
    """Preprocessed batches of ``samples()`` in order, decoded inline (``workers=0``) or on worker processes.

    Args:
        samples: makes the sample stream (called once per worker, so it must be repeatable).
        preprocess: PIL image -> (3, H, W) float tensor.
        batch_size: images per batch (the last may be short).
        workers: DataLoader worker processes; 0 decodes in this process.

    Yields:
        ``(pixels (B, 3, H, W), keys, labels)`` per batch, in stream order.
    """
    if workers == 0:
        yield from _batches(samples, preprocess, batch_size, 0, 1)
        return
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info

    class Batches(IterableDataset):
        def __iter__(self) -> Iterator[tuple[torch.Tensor, list[str | None], list[int]]]:
            info = get_worker_info()
            storage.clear_cache()  # S3 clients of the parent hold its sockets: each worker opens its own
            return _batches(samples, preprocess, batch_size, info.id, info.num_workers)

    # fork: the workers inherit the sample factory and the transform, nothing is pickled.
    loader = DataLoader(Batches(), batch_size=None, num_workers=workers, multiprocessing_context="fork")
    for pixels, keys, labels in loader:
        yield pixels, list(keys), [int(label) for label in labels]
