"""Image decoding and CLIP preprocessing for the feature cache, inline or on DataLoader workers.

``features.workers`` (a speed switch: the features do not depend on it) moves decoding and
preprocessing off the process that runs the image encoder. This process walks the sample stream
once (for tars: reads every byte from the store once and checks it against the manifest, see
:func:`synk8s.shards.iter_samples` with ``lazy=True``) and cuts it into batches of
``features.batch_size``; each batch goes to a worker as its encoded bytes (zero-argument callables
that decode on demand), and a DataLoader hands the preprocessed batches back in batch order, so the
encoder sees the same batches as inline decoding. The DataLoader's prefetch bounds the read-ahead
to ``2 * workers`` batches. Map-style datasets (:func:`dataset_sources`) are sent by index instead:
each worker reads only its own items from the dataset it inherited when it was forked.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synk8s import storage

if TYPE_CHECKING:
    import torch
    from PIL import Image

# (sample key or None, PIL image or a zero-argument callable returning one, class index)
Sample = tuple[str | None, Any, int]
# A preprocessed batch: (pixels (B, 3, H, W), keys, labels)
Batch = tuple["torch.Tensor", list[str | None], list[int]]


def _image(source: Any) -> Image.Image:
    return source() if callable(source) else source


def _item_image(data_set: Any, index: int) -> Image.Image:
    return data_set[index][0]


@dataclass(frozen=True)
class DatasetSamples:
    """The samples of a map-style dataset with a ``labels`` list; calling it streams ``(None, lazy image, label)``.

    Workers get indices, not images: the dataset itself reaches them when they are forked.

    Attributes:
        data_set: ``data_set[index]`` gives ``(PIL image, label)``.
    """

    data_set: Any

    def __call__(self) -> Iterator[Sample]:
        for index, label in enumerate(self.data_set.labels):
            yield None, functools.partial(_item_image, self.data_set, index), int(label)


def dataset_sources(data_set: Any) -> DatasetSamples:
    """A repeatable sample source over a map-style dataset (see :class:`DatasetSamples`)."""
    return DatasetSamples(data_set)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _preprocessed(batch: list[Sample], preprocess: Callable[[Any], torch.Tensor]) -> Batch:
    import torch

    pixels = torch.stack([preprocess(_image(source)) for _, source, _ in batch])  # (B, 3, H, W)
    return pixels, [key for key, _, _ in batch], [label for _, _, label in batch]


class _Stream:
    """The DataLoader's sampler: batches of ``samples()`` as they stream in this process.

    Map-style datasets give ``(index, label)`` lists. An error of the stream (a damaged tar) ends
    it and is kept in ``error``, so the DataLoader shuts its workers down cleanly before it is raised.
    """

    def __init__(self, samples: Callable[[], Iterable[Sample]], batch_size: int):
        self.samples, self.batch_size = samples, batch_size
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[list[Any]]:
        if isinstance(self.samples, DatasetSamples):
            labels = [int(label) for label in self.samples.data_set.labels]
            yield from _chunks(enumerate(labels), self.batch_size)
            return
        try:
            yield from _chunks(self.samples(), self.batch_size)
        except Exception as error:  # raised again, by preprocessed_batches, once the workers are done
            self.error = error


def preprocessed_batches(
    samples: Callable[[], Iterable[Sample]],
    preprocess: Callable[[Any], torch.Tensor],
    *,
    batch_size: int,
    workers: int,
) -> Iterator[Batch]:
    """Preprocessed batches of ``samples()`` in order, decoded inline (``workers=0``) or on worker processes.

    Args:
        samples: makes the sample stream; called once, in this process (it reads the store, the
            workers do not). A :class:`DatasetSamples` is read by index on the workers instead.
        preprocess: PIL image -> (3, H, W) float tensor.
        batch_size: images per batch (the last may be short).
        workers: DataLoader worker processes; 0 decodes in this process.

    Yields:
        ``(pixels (B, 3, H, W), keys, labels)`` per batch, in stream order.
    """
    if workers == 0:
        for batch in _chunks(samples(), batch_size):
            yield _preprocessed(batch, preprocess)
        return
    from torch.utils.data import DataLoader, Dataset

    data_set = samples.data_set if isinstance(samples, DatasetSamples) else None

    class Decode(Dataset):
        """``Decode()[batch]``: the preprocessed batch; ``batch`` is a list of samples, or of (index, label)."""

        def __getitem__(self, batch: list[Any]) -> Batch:
            if data_set is not None:
                batch = [(None, functools.partial(_item_image, data_set, index), label) for index, label in batch]
            return _preprocessed(batch, preprocess)

    def worker_init(_: int) -> None:
        storage.clear_cache()  # S3 clients of the parent hold its sockets: a worker that reads opens its own

    # fork: the workers inherit the transform (and a map-style dataset); only batches are pickled.
    # The sampler runs here: each batch of encoded bytes is read from the store once and sent to one worker.
    stream = _Stream(samples, batch_size)
    loader = DataLoader(
        Decode(),
        batch_size=None,
        sampler=stream,
        num_workers=workers,
        worker_init_fn=worker_init,
        multiprocessing_context="fork",
    )
    for pixels, keys, labels in loader:
        yield pixels, list(keys), [int(label) for label in labels]
    if stream.error is not None:
        raise stream.error
