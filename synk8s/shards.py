"""WebDataset tar shards: byte-reproducible writing and streaming reads through the store.

A shard is a POSIX (ustar) tar whose members come in sample order, each sample as
``<key>.<image ext>`` followed by ``<key>.json``. Every member header is fixed (mtime 0, uid and
gid 0, empty user and group names, mode 0644), images are encoded without timestamps, and JSON is
written with sorted keys, so the same samples always give the same tar bytes and the same SHA-256.

Reading streams the tar (``tarfile`` mode ``r|``) straight from :func:`synk8s.storage.open_read`,
so an S3 shard is never downloaded whole::

    for key, image, meta in iter_samples("s3://artifacts/runs/r1/images"):
        ...

Every read is checked against the manifest that lists the tar: the bytes are hashed as they
stream, and at the end of the tar its SHA-256 and sample count must equal the recorded ones.
The last sample of a tar is yielded only after that check passes, so a consumer that iterates to
the end and writes its results afterwards never commits anything from a truncated, damaged or
replaced tar: it gets an :class:`~synk8s.errors.IntegrityError` instead.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from synk8s import storage
from synk8s.errors import IntegrityError, MissingDataError, StoreError
from synk8s.storage.objects import CHUNK

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

IMAGE_EXTS = ("png", "jpg")
JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 6

# One sample: its key and its members as (extension, content) in the order they are written.
Sample = tuple[str, list[tuple[str, bytes]]]

MISSING = "is missing"  # what tar_problem says of an absent tar
REPAIR = (
    "rerun `synk8s stage generate` for the shard that wrote it (a rerun regenerates damaged tars), "
    "then `synk8s stage collect`"
)


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


def decode_checked(data: bytes) -> Image.Image:
    """:func:`decode_image` for bytes from outside synk8s (your images, a request): a bad file is one ValueError.

    Raises:
        ValueError: the bytes are not an image Pillow reads, or a truncated or damaged one; its text says which.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        return decode_image(data)
    except UnidentifiedImageError:
        raise ValueError("not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"a damaged image ({error})") from None


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


class _HashingReader:
    """A read-only binary stream that hashes every byte read through it."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._digest.update(data)
        return data

    def drain(self) -> None:
        """Read (and hash) the rest of the stream."""
        while chunk := self._raw.read(CHUNK):
            self._digest.update(chunk)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class _Damaged(Exception):
    """A tar differs from its record; the message says how (without the URI)."""


def _members(tar: tarfile.TarFile, uri: str) -> Iterator[Sample]:
    """Group consecutive members with the same key into samples."""
    key: str | None = None
    members: list[tuple[str, bytes]] = []
    for info in tar:
        if not info.isfile():
            continue
        stem, _, ext = info.name.rsplit("/", 1)[-1].partition(".")
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


def _verified(record: TarRecord, limit: int | None) -> Iterator[Sample]:
    """Stream a tar's samples; raise _Damaged at the end when its bytes or count differ from ``record``."""
    if not record.sha256:
        raise _Damaged("has no recorded SHA-256")
    pending: Sample | None = None
    count = 0
    stopped = False  # True when ``limit`` ended the parse before the end of the tar
    with storage.open_read(record.uri) as raw:
        f = _HashingReader(raw)
        try:
            with tarfile.open(fileobj=f, mode="r|") as tar:
                for sample in _members(tar, record.uri):
                    if pending is not None:
                        yield pending
                    pending, count = sample, count + 1
                    if count == limit:
                        stopped = True
                        break
            f.drain()
        except tarfile.TarError as exc:
            raise _Damaged(f"is not a readable tar ({exc})") from None
        found = f.hexdigest()
    if found != record.sha256:
        raise _Damaged(f"has SHA-256 {found}, but {record.sha256} was recorded")
    if not stopped and count != record.count:
        raise _Damaged(f"holds {count} samples, but {record.count} were recorded")
    if pending is not None:
        yield pending


def iter_tar(record: TarRecord, *, limit: int | None = None) -> Iterator[Sample]:
    """Stream the samples of one tar, checked against its record.

    Consecutive members with the same key form a sample. The tar's bytes are hashed as they
    arrive; after the last member the rest of the object is read too, and the SHA-256 and sample
    count are compared with ``record`` before the last sample is yielded.

    Args:
        record: the tar's URI, recorded sample count and SHA-256.
        limit: stop after this many samples; the rest of the tar is still read and hashed (not
            decoded), so the samples yielded are checked all the same. None reads every sample.

    Raises:
        IntegrityError: the tar is truncated, damaged or replaced (its bytes or sample count differ
            from ``record``), or ``record`` has no SHA-256.
    """
    try:
        yield from _verified(record, limit)
    except _Damaged as exc:
        raise IntegrityError(f"{record.uri} {exc}; {REPAIR}") from None


def tar_problem(uri: str, count: int, sha256: str | None) -> str | None:
    """Why the stored tar at ``uri`` cannot be kept, or None when it is intact.

    The store's recorded hash answers when both it and ``sha256`` are known; otherwise the tar is
    streamed and checked (its structure and sample count, and its bytes against ``sha256`` when
    given). An S3 object without a recorded hash and with none expected was not written by
    synk8s and is never kept.

    Args:
        uri: the tar.
        count: samples it must hold.
        sha256: the SHA-256 recorded when it was written; None when no record survives.
    """
    try:
        stored = storage.stat(uri).sha256
    except storage.ObjectNotFoundError:
        return MISSING
    if stored is not None and sha256 is not None:
        return None if stored == sha256 else f"has SHA-256 {stored}, but {sha256} was recorded"
    if stored is None and sha256 is None:
        return "has no recorded SHA-256 (another program wrote it)"
    try:
        for _ in _verified(TarRecord(uri=uri, count=count, sha256=sha256 or stored or ""), None):
            pass
    except _Damaged as exc:
        return str(exc)
    return None


def manifest_tars(images_out: str) -> list[TarRecord]:
    """The tars of a collected generation output, in manifest order.

    Args:
        images_out: the generate stage's output folder (holding ``manifest.json``).

    Raises:
        MissingDataError: the folder has no collected manifest (run ``generate`` and its collect step).
        IntegrityError: the manifest lists a tar without its SHA-256 or sample count.
    """
    from synk8s.runs import read_manifest

    manifest = read_manifest(images_out, "generate")
    if "tars" not in manifest:
        raise MissingDataError(f"{images_out}/manifest.json lists no tars; rerun the generate collect step")
    records = []
    for t in manifest["tars"]:
        if not t.get("sha256") or not isinstance(t.get("count"), int):
            raise IntegrityError(
                f"{images_out}/manifest.json lists {t.get('path')} without its SHA-256 or sample count; "
                "rerun `synk8s stage collect`"
            )
        records.append(TarRecord(uri=storage.join(images_out, t["path"]), count=t["count"], sha256=t["sha256"]))
    return records


def iter_samples(
    images_out: str, *, limit: int | None = None, lazy: bool = False
) -> Iterator[tuple[str, Image.Image, dict[str, Any]]]:
    """Yield ``(key, RGB image, metadata)`` for every generated image, in manifest order.

    Each tar is checked against the manifest as it streams (see :func:`iter_tar`): iterate to the
    end before writing anything derived from the samples.

    Args:
        images_out: the generate stage's output folder (holding ``manifest.json``).
        limit: stop after this many images (the tar holding the last one is still read to its end
            and checked); None yields every image.
        lazy: yield a zero-argument callable that decodes the image instead of the image (a reader
            that skips some samples, or decodes elsewhere, does not pay for them).

    Raises:
        MissingDataError: no collected manifest in ``images_out``.
        IntegrityError: a tar differs from the manifest (truncated, damaged or replaced).
        StoreError: a tar sample lacks its image or its JSON.
    """
    remaining = limit
    for record in manifest_tars(images_out):
        if remaining == 0:
            return
        for key, members in iter_tar(record, limit=remaining):
            found = dict(members)
            image_ext = next((ext for ext in IMAGE_EXTS if ext in found), None)
            if image_ext is None or "json" not in found:
                raise StoreError(f"sample {key} in {record.uri} lacks an image or its json; regenerate that tar")
            if remaining is not None:
                remaining -= 1
            image = functools.partial(decode_image, found[image_ext])
            yield key, image if lazy else image(), json.loads(found["json"])
