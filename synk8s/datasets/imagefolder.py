"""Your own images: an ImageFolder tree or a CSV/JSONL manifest, read as one more dataset format.

Layouts of ``dataset.images`` (a local path; an ``s3://`` one is copied here first by
:func:`synk8s.realdata.ensure_dataset`):

* ``root/<split>/<class>/*.{jpg,jpeg,png,webp}`` with splits ``train`` and ``test``;
* ``root/<class>/*``: a seeded split (:data:`TEST_FRACTION` of each class to test, at least one image
  kept for training) is drawn once and saved beside the data as ``synk8s-split.json``; later runs
  read it, so the split never changes under a run (a file it does not list trains);
* a manifest ``*.csv`` (header ``path,label``, optional ``split``) or ``*.jsonl`` (one
  ``{"path": ..., "label": ...}`` per line); relative paths are relative to the manifest. Without a
  ``split`` column the split is drawn and saved as ``<manifest>.split.json``.

A class folder name or label must be a class name (or alias) of the label space, ignoring case.
Every file is decoded once per process; unreadable files and labels outside the label space are
returned as :class:`Bad` entries (the caller decides whether they fail the run), never dropped
silently. Each sample's identity is the SHA-256 of its bytes, so the features cache tells
changed images apart.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synk8s.datasets.registry import DatasetInfo
from synk8s.errors import MissingDataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MANIFEST_SUFFIXES = (".csv", ".jsonl")
SPLITS = ("train", "test")
SPLIT_FILE = "synk8s-split.json"
TEST_FRACTION = 0.3
SPLIT_SEED = 0


@dataclass(frozen=True)
class Sample:
    """One image of the listing: path relative to the base folder, its label text and split (None: drawn)."""

    rel: str
    label: str
    split: str | None


@dataclass(frozen=True)
class Bad:
    """A file that cannot be used, and why."""

    rel: str
    reason: str


@dataclass(frozen=True)
class Checked:
    """The usable images of ``dataset.images``: (rel, label index, split, sha256) each, and the bad ones."""

    base: Path
    good: tuple[tuple[str, int, str, str], ...]
    bad: tuple[Bad, ...]


def is_manifest(images: str) -> bool:
    """Whether ``dataset.images`` names a manifest file rather than a folder."""
    return images.lower().endswith(MANIFEST_SUFFIXES)


def split_file(images: str) -> str:
    """Where the drawn split of ``images`` is saved: in the folder, or beside the manifest."""
    return f"{images}.split.json" if is_manifest(images) else f"{images.rstrip('/')}/{SPLIT_FILE}"


def listing(images: Path) -> tuple[Path, list[Sample]]:
    """The base folder and the samples of a local folder or manifest.

    Raises:
        MissingDataError: the path is absent, a folder holds no class folders, a class folder is empty,
            or a manifest is malformed.
    """
    if not images.exists():
        raise MissingDataError(f"dataset.images {images} does not exist; pass --images a folder or a CSV/JSONL manifest")
    if images.is_file():
        return images.parent, _manifest(images)
    tops = sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not tops:
        raise MissingDataError(f"dataset.images {images} holds no class folders; lay it out as <root>/<class>/*.jpg")
    if {p.name for p in tops} <= set(SPLITS) and "test" in {p.name for p in tops}:
        return images, [s for top in tops for s in _class_folders(images, top, top.name)]
    return images, _class_folders(images, images, None)


def _class_folders(base: Path, parent: Path, split: str | None) -> list[Sample]:
    """Samples of ``parent/<class>/*``; an empty class folder is an error."""
    samples = []
    for folder in sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
        if not files:
            raise MissingDataError(f"class folder {folder} is empty; add images of {folder.name!r} or remove the folder")
        samples += [Sample(f.relative_to(base).as_posix(), folder.name, split) for f in files]
    return samples


def _manifest(path: Path) -> list[Sample]:
    """Samples of a CSV (``path,label[,split]``) or JSONL manifest."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        first_line = 2
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            try:
                rows.append(json.loads(line) if line.strip() else None)
            except json.JSONDecodeError:
                raise MissingDataError(f"{path}:{number}: not a JSON object; write one {{\"path\", \"label\"}} per line") from None
        rows = [r for r in rows if r is not None]
        first_line = 1
    samples = []
    for number, row in enumerate(rows, start=first_line):
        if not isinstance(row, dict) or not row.get("path") or not row.get("label"):
            raise MissingDataError(f"{path}:{number}: each entry needs 'path' and 'label' (CSV header: path,label)")
        split = row.get("split") or None
        if split is not None and split not in SPLITS:
            raise MissingDataError(f"{path}:{number}: split {split!r}; use one of {', '.join(SPLITS)}")
        samples.append(Sample(str(row["path"]), str(row["label"]).strip(), split))
    if not samples:
        raise MissingDataError(f"manifest {path} lists no images")
    return samples


def draw_split(samples: list[Sample]) -> dict[str, list[str]]:
    """A seeded train/test split of samples without one: per label, :data:`TEST_FRACTION` to test.

    A label with n >= 2 images gives ``max(1, round(TEST_FRACTION * n))`` (at most n - 1) to test;
    the draw of a label depends only on :data:`SPLIT_SEED`, the label and its sorted files.
    """
    by_label: dict[str, list[str]] = {}
    for sample in samples:
        by_label.setdefault(sample.label, []).append(sample.rel)
    test = []
    for label, rels in sorted(by_label.items()):
        rels = sorted(rels)
        n_test = 0 if len(rels) < 2 else min(len(rels) - 1, max(1, round(TEST_FRACTION * len(rels))))
        order = np.random.default_rng((SPLIT_SEED, zlib.crc32(label.encode()))).permutation(len(rels))
        test += [rels[i] for i in order[:n_test]]
    return {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION, "test": sorted(test)}


def label_index(info: DatasetInfo) -> dict[str, int]:
    """Class name or alias (case-folded) -> label."""
    index = {name.casefold(): i for i, name in enumerate(info.classes)}
    for i, aliases in enumerate(info.aliases):
        index.update({alias.casefold(): i for alias in aliases})
    return index


def check(info: DatasetInfo, images: Path, drawn: dict[str, list[str]] | None) -> Checked:
    """Decode every image and map every label; split the samples (``drawn``: the saved split, if any).

    Raises:
        MissingDataError: see :func:`listing`.
    """
    base, samples = listing(images)
    test = set(drawn["test"]) if drawn else set()
    index = label_index(info)
    good, bad = [], []
    for sample in samples:
        path = base / sample.rel
        label = index.get(sample.label.casefold())
        if label is None:
            bad.append(Bad(sample.rel, f"label {sample.label!r} is not a class of the label space"))
            continue
        reason, sha = _decode(path)
        if reason:
            bad.append(Bad(sample.rel, reason))
            continue
        split = sample.split or ("test" if sample.rel in test else "train")
        good.append((sample.rel, label, split, sha))
    return Checked(base, tuple(good), tuple(bad))


def _decode(path: Path) -> tuple[str, str]:
    """(why the file is unusable or "", sha256 of its bytes)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file ({', '.join(IMAGE_SUFFIXES)})", ""
    stat = path.stat() if path.exists() else None
    if stat is None:
        return "file not found", ""
    return _decode_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _decode_cached(path: str, size: int, mtime_ns: int) -> tuple[str, str]:
    from synk8s.shards import decode_checked

    data = Path(path).read_bytes()
    try:
        decode_checked(data)
    except ValueError as error:
        return f"unreadable image ({str(error)[:100]})", ""
    return "", hashlib.sha256(data).hexdigest()


def class_names(images: str) -> list[str]:
    """The sorted class names of ``images`` (a path or ``s3://`` URI), read from its listing or manifest.

    Raises:
        MissingDataError: nothing there, or no class.
    """
    from synk8s import storage

    if is_manifest(images):
        with storage.local_path(images) as path:
            labels = {sample.label for sample in _manifest(path)}
    else:
        base = images.rstrip("/") + "/"
        rels = [obj.uri[len(base):] for obj in storage.list(images) if obj.uri.startswith(base)]
        parts = [rel.split("/") for rel in rels if "/" in rel and not rel.startswith(".")]
        split_layout = parts and {p[0] for p in parts} <= set(SPLITS)
        labels = {p[1] if split_layout else p[0] for p in parts if len(p) > (2 if split_layout else 1)}
    if not labels:
        raise MissingDataError(f"dataset.images {images} names no class; lay it out as <root>/<class>/*.jpg")
    return sorted(labels)


def needs_split(images: Path) -> bool:
    """Whether the local ``images`` has samples without a split (a split must be drawn and saved)."""
    return any(sample.split is None for sample in listing(images)[1])
