"""Classify image files with an exported classifier: files, folders and ``s3://`` prefixes, in batches.

An image that cannot be read or decoded is reported with its reason and skipped; the others are
classified. ``synk8s predict`` prints the predictions and then the failures, and exits 1 when any
image failed (:mod:`synk8s.cli.predict`)::

    clf = load_classifier("exports/cifar10")
    result = predict(clf, image_sources(["photos/", "s3://bucket/more/"]), top_k=5)
    result.predictions[0].top     # [("cat", 0.91), ("dog", 0.04), ...]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from synk8s import storage
from synk8s.errors import MissingDataError, Synk8sError
from synk8s.shards import decode_checked

if TYPE_CHECKING:
    from PIL import Image

    from synk8s.models.classifier import Classifier

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
BATCH_SIZE = 64  # images per forward pass


@dataclass(frozen=True)
class Prediction:
    """The top classes of one image.

    Attributes:
        source: the image's path or URI.
        top: (class name, softmax probability) pairs, most probable first.
    """

    source: str
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class Failure:
    """An image that could not be classified, and why (one line)."""

    source: str
    reason: str


@dataclass
class PredictResult:
    """Predictions in input order, and the images that failed."""

    predictions: list[Prediction] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def image_sources(arguments: Sequence[str]) -> list[str]:
    """Expand files, folders (searched recursively) and ``s3://`` prefixes into image paths and URIs.

    A file or object named outright is kept whatever its suffix; in a folder or under a prefix only
    names ending in :data:`IMAGE_SUFFIXES` count (case-insensitive), sorted.

    Raises:
        MissingDataError: an argument names nothing, or a folder or prefix without images.
    """
    found: list[str] = []
    for argument in arguments:
        if storage.is_remote(argument):
            named = [argument] if storage.exists(argument) else _images(i.uri for i in storage.list(argument))
        else:
            path = Path(argument)
            if not path.exists():
                raise MissingDataError(f"no image file or folder at {argument}")
            named = [argument] if path.is_file() else _images(str(p) for p in path.rglob("*") if p.is_file())
        if not named:
            raise MissingDataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {argument}")
        found += named
    return found


def _images(names: Iterator[str]) -> list[str]:
    return sorted(name for name in names if name.lower().endswith(IMAGE_SUFFIXES))


def read_image(source: str) -> Image.Image:
    """Read and decode one image file or object (see :func:`synk8s.shards.decode_checked`).

    Raises:
        ValueError: the bytes are not a readable image; OSError or Synk8sError: the file cannot be read.
    """
    return decode_checked(storage.get_bytes(source) if storage.is_remote(source) else Path(source).read_bytes())


def predict(
    classifier: Classifier,
    sources: Sequence[str],
    *,
    top_k: int = 5,
    batch_size: int = BATCH_SIZE,
    progress: bool | None = None,
) -> PredictResult:
    """Classify ``sources`` in batches of ``batch_size``; unreadable images become failures.

    Args:
        classifier: a loaded classifier (:func:`synk8s.models.classifier.load_classifier`).
        sources: image paths or URIs (see :func:`image_sources`).
        top_k: classes kept per image, in [1, K].
        batch_size: images per forward pass.
        progress: a tqdm bar over the images on stderr; None shows it on a terminal only.

    Raises:
        UsageError: ``top_k`` outside [1, K].
    """
    from tqdm.auto import tqdm

    from synk8s.models.classifier import check_top_k

    check_top_k(top_k, len(classifier.classes))
    result = PredictResult()
    batch: list[tuple[str, Image.Image]] = []

    def flush() -> None:
        logits = classifier([image for _, image in batch])  # (B, K)
        for (source, _), top in zip(batch, classifier.top_k(logits, top_k), strict=True):
            result.predictions.append(Prediction(source, top))
        batch.clear()

    with tqdm(sources, desc="predict", unit="img", disable=None if progress is None else not progress) as bar:
        for source in bar:
            try:
                batch.append((source, read_image(source)))
            except (ValueError, OSError, Synk8sError) as error:
                result.failures.append(Failure(source, str(error).splitlines()[0]))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    return result
