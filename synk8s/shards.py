"""WebDataset tar shards: byte-reproducible writing and streaming reads through the store.

A shard is a POSIX (ustar) tar whose members come in sample order, each sample as
``<key>.<image ext>`` followed by ``<key>.json``. Every member header is fixed (mtime 0, uid and
gid 0, empty user and group names, mode 0644), images are encoded without timestamps, and JSON is
written with sorted keys, so the same samples always give the same tar bytes and the same SHA-256.

Reading streams the tar (``tarfile`` mode ``r|``) straight from :func:`synk8s.storage.open_read`,
so an S3 shard is never downloaded whole::

    for key, image, meta in iter_samples("s3://artifacts/runs/r1/images"):
        ...
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from synk8s import storage
from synk8s.errors import MissingDataError, StoreError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_EXTS = ("png", "jpg")
JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 6

# One sample: its key and its members as (extension, content) in the order they are written.
Sample = tuple[str, list[tuple[str, bytes]]]


@dataclass(frozen=True)
class TarRecord:
    """One tar of a collected generation output.

    Attributes:
        uri: where the tar is stored.
        count: samples in the tar.
        sha256: hex SHA-256 of the tar bytes.
    """

    uri: str
    count: int
    sha256: str


def sample_key(class_index: int, prompt_index: int, sample_index: int) -> str:
    """The WebDataset key of one generated image, e.g. ``c0003-p00012-s0001``."""
    return f"c{class_index:04d}-p{prompt_index:05d}-s{sample_index:04d}"


def encode_image(image: Image.Image, fmt: str) -> bytes:
    """Encode an image deterministically.

    Args:
        image: any PIL image; it is converted to RGB first.
        fmt: ``png`` (lossless, zlib level 6, no metadata chunks) or ``jpg`` (baseline JPEG,
            quality 95, 4:2:0 chroma subsampling, no EXIF).

    Returns:
        The encoded bytes; equal pixels give equal bytes with the same Pillow build.
    """
    if fmt not in IMAGE_EXTS:
        raise ValueError(f"image format must be one of {IMAGE_EXTS}, got {fmt!r}")
    buf = io.BytesIO()
    rgb = image.convert("RGB")
    if fmt == "png":
        rgb.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    else:
        rgb.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling="4:2:0", optimize=False, progressive=False)
    return buf.getvalue()


def decode_image(data: bytes) -> Image.Image:
    """Decode PNG or JPEG bytes into a fully loaded RGB image."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def encode_json(meta: dict[str, Any]) -> bytes:
    """Compact, key-sorted UTF-8 JSON: equal dicts give equal bytes."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def write_tar(fileobj: IO[bytes], samples: Iterable[Sample]) -> int:
    """Write samples as a reproducible ustar archive into an open binary file.

    Args:
        fileobj: a writable binary file, e.g. from :func:`synk8s.storage.writer`.
        samples: ``(key, [(ext, content), ...])`` in the order they should appear.

    Returns:
        The number of samples written.
    """
    count = 0
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            if "." in key or "/" in key:
                raise ValueError(f"sample key must not contain '.' or '/', got {key!r}")
            for ext, content in members:
                tar.addfile(_member(f"{key}.{ext}", len(content)), io.BytesIO(content))
            count += 1
    return count


def iter_tar(uri: str) -> Iterator[Sample]:
    """Stream the samples of one tar: consecutive members with the same key form a sample."""
    with storage.open_read(uri) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        key: str | None = None
        members: list[tuple[str, bytes]] = []
        for info in tar:
            if not info.isfile():
                continue
            base = info.name.rsplit("/", 1)[-1]
            stem, _, ext = base.partition(".")
            extracted = tar.extractfile(info)
            if extracted is None:
                raise StoreError(f"cannot read member {info.name} of {uri}")
            content = extracted.read()
            if stem != key and key is not None:
                yield key, members
                members = []
            key = stem
            members.append((ext, content))
        if key is not None:
            yield key, members


def manifest_tars(images_out: str) -> list[TarRecord]:
    """The tars of a collected generation output, in manifest order.

    Args:
        images_out: the generate stage's output folder (holding ``manifest.json``).

    Raises:
        MissingDataError: the folder has no collected manifest (run ``generate`` and its collect step).
    """
    from synk8s.runs import read_manifest

    manifest = read_manifest(images_out, "generate")
    if "tars" not in manifest:
        raise MissingDataError(f"{images_out}/manifest.json lists no tars; rerun the generate collect step")
    return [
        TarRecord(uri=storage.join(images_out, t["path"]), count=int(t["count"]), sha256=t["sha256"])
        for t in manifest["tars"]
    ]


def iter_samples(images_out: str) -> Iterator[tuple[str, Image.Image, dict[str, Any]]]:
    """Yield ``(key, RGB image, metadata)`` for every generated image, in manifest order.

    Args:
        images_out: the generate stage's output folder (holding ``manifest.json``).

    Raises:
        MissingDataError: no collected manifest in ``images_out``.
        StoreError: a tar sample lacks its image or its JSON.
    """
    for record in manifest_tars(images_out):
        for key, members in iter_tar(record.uri):
            found = dict(members)
            image_ext = next((ext for ext in IMAGE_EXTS if ext in found), None)
            if image_ext is None or "json" not in found:
                raise StoreError(f"sample {key} in {record.uri} lacks an image or its json; regenerate that tar")
            yield key, decode_image(found[image_ext]), json.loads(found["json"])
