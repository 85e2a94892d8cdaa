"""Fetch an evaluation dataset into the layout the loaders read.

``download("dtd", "./data/dtd")`` fetches the dataset's archives with torchvision's downloaders
(and their checksums, where torchvision has one) into a temporary folder under the root, checks
every split with the real loader and only then moves the dataset folder into place, so an
interrupted or corrupt download never leaves files that :func:`synk8s.datasets.load` would take
for a complete dataset. A dataset that is already there is only checked. Datasets with no public direct download (ImageNet and
others) raise :class:`MissingDataError` saying where to get the files and where to put them.

Examples::

    synk8s datasets download cifar100                 # -> ./data/cifar100/cifar-100-python/
    synk8s datasets download voc2007 --root /data/voc
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synk8s.datasets.detection import load_detection
from synk8s.datasets.loaders import load
from synk8s.datasets.registry import DETECTION, DatasetInfo, get
from synk8s.datasets.standin import MARKER, is_standin
from synk8s.errors import MissingDataError, UsageError

log = logging.getLogger(__name__)

#: Why a dataset has to be fetched by hand.
MANUAL: dict[str, str] = {
    "imagenet": "its files need an image-net.org account",
    "imagenet_sketch": "it is shared through Google Drive and Kaggle, with no stable direct URL",
    "birdsnap": "its images are fetched from their original web addresses by the dataset's get_birdsnap.py",
    "stanford_cars": "its original download URL is offline",
}

#: SUN397's official train/test partitions (not part of SUN397.tar.gz) and their sha256.
SUN397_PARTITIONS = (
    "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip",
    "e3311ea5f812d4cc6faef194688343d1111f6cd6f70f2c62f393c2b8d6ba1ec9",
)

#: Datasets torchvision has no class for: one archive (URL, md5) that extracts to ``base_dir``.
ARCHIVES: dict[str, tuple[str, str]] = {
    "cub200": (
        "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
        "97eceeb196236b17998738112f37df78",
    ),
    "imagenet_r": (
        "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
        "a61312130a589d0ca1a8fca1f2bd3337",
    ),
}

#: Where torchvision's Caltech and EuroSAT downloaders fetch from (the URLs live inside their methods).
_FIXED_URLS: dict[str, tuple[str, ...]] = {
    "caltech101": ("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",),
    "caltech256": ("https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar",),
    "eurosat": (
        "https://huggingface.co/datasets/torchgeo/eurosat/resolve/c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",
    ),
}

# Failures of a download or an extraction: no route, DNS, HTTP status, checksum, truncated archive.
_FETCH_ERRORS = (OSError, RuntimeError, EOFError, tarfile.TarError, zipfile.BadZipFile)
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def download(name: str, root: str | os.PathLike) -> str:
    """Download dataset ``name`` under ``root`` unless it is there, then check every split loads.

    Args:
        name: Registry name, e.g. ``"cifar100"``.
        root: Data root (the one ``load`` takes); created when absent. The dataset ends up in
            ``root / get(name).base_dir``.

    Returns:
        The absolute data root.

    Raises:
        UsageError: Unknown dataset, or ``root`` holds stand-in data.
        MissingDataError: The dataset cannot be downloaded automatically, the download failed
            (network, HTTP status, checksum, corrupt archive), or the files present do not load.
    """
    info = get(name)
    root_path = Path(root).expanduser().absolute()
    if is_standin(root_path):
        raise UsageError(
            f"{root_path} holds stand-in data ({MARKER}); pick another --root or delete the stand-in there"
        )
    target = root_path / info.base_dir
    if target.exists():
        log.info("%s already under %s; checking it", name, target)
        try:
            _verify(info, root_path)
        except MissingDataError as error:
            raise MissingDataError(f"{error}; or delete {target} and download it again") from error
        return str(root_path)
    layout = info.data_layout.replace("<root>", str(root_path))
    if name in MANUAL:
        raise MissingDataError(
            f"{name} cannot be downloaded automatically ({MANUAL[name]}); put the files at {layout}"
        )
    _fetch_into_place(info, root_path, layout)
    return str(root_path)


def _fetch_into_place(info: DatasetInfo, root: Path, layout: str) -> None:
    """Fetch into a temporary folder under ``root``, verify there, then move ``base_dir`` into place."""
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{info.name}-download-", dir=root))
    moved = False
    try:
        log.info("downloading %s into %s", info.name, scratch)
        try:
            _FETCHERS.get(info.name, _torchvision)(info, scratch)
        except _FETCH_ERRORS as error:
            raise MissingDataError(
                f"{info.name} download failed: {_reason(error)} ({_failed_url(info, error)}); "
                f"to fetch it by hand put the files at {layout}"
            ) from error
        try:
            _verify(info, scratch)
        except MissingDataError as error:
            raise MissingDataError(
                f"{info.name} was downloaded but does not load ({error}); put the files at {layout}"
            ) from error
        _drop_archives(scratch / info.base_dir)
        target = root / info.base_dir
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(scratch / info.base_dir, target)
        moved = True
        log.info("%s is in place under %s", info.name, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not moved and created and not any(root.iterdir()):
            root.rmdir()


def _verify(info: DatasetInfo, root: Path) -> None:
    """Load every split the registry lists; raises the loader's ``MissingDataError``."""
    loader = load_detection if info.task == DETECTION else load
    for split in info.splits:
        log.info("%s %s: %d samples", info.name, split, len(loader(info.name, split, root)))


def _drop_archives(base: Path) -> None:
    """Delete the archives torchvision keeps inside the dataset folder (Caltech-256 keeps a 1.2 GB tar)."""
    for path in base.rglob("*"):
        if path.is_file() and path.name.endswith(_ARCHIVE_SUFFIXES):
            path.unlink()


def _reason(error: BaseException) -> str:
    """The error as one short line."""
    if isinstance(error, urllib.error.HTTPError):
        text = f"HTTP {error.code} {error.reason}"
    elif isinstance(error, urllib.error.URLError):
        text = f"cannot reach the server: {error.reason}"
    elif isinstance(error, RuntimeError) and "corrupted" in str(error):
        text = "the downloaded file is incomplete or its checksum does not match"
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())


def _failed_url(info: DatasetInfo, error: BaseException) -> str:
    """The URL an HTTP error names, else every URL the dataset is fetched from."""
    if isinstance(error, urllib.error.HTTPError) and error.url:
        return error.url
    return ", ".join(_urls(info))


def _urls(info: DatasetInfo) -> tuple[str, ...]:
    """The URLs the downloader for ``info`` reads (torchvision's class attributes where it has them)."""
    if info.name in ARCHIVES:
        return (ARCHIVES[info.name][0],)
    if info.name in _FIXED_URLS:
        return _FIXED_URLS[info.name]
    if info.task == DETECTION:
        from torchvision.datasets import voc

        keys = [info.name.removeprefix("voc"), *(["2007-test"] if "test" in info.splits else [])]
        return tuple(voc.DATASET_YEAR_DICT[key]["url"] for key in keys)
    cls = _torchvision_class(info)
    if info.name == "flowers102":
        return tuple(cls._download_url_prefix + file for file, _ in cls._file_dict.values())
    if info.name == "oxford_pets":
        return tuple(url for url, _ in cls._RESOURCES)
    if info.name == "sun397":
        return (cls._DATASET_URL, SUN397_PARTITIONS[0])
    return (getattr(cls, "url", None) or cls._URL,)


def _torchvision_class(info: DatasetInfo) -> Any:
    import torchvision.datasets

    return getattr(torchvision.datasets, info.torchvision_class)


def _torchvision(info: DatasetInfo, root: Path) -> None:
    """Run the torchvision class with ``download=True`` once per distinct download it makes."""
    cls = _torchvision_class(info)
    if info.name in ("cifar10", "cifar100"):
        calls = [{"train": split == "train"} for split in info.splits]
    elif info.task == DETECTION:  # train, val and trainval share one archive; 2007's test has its own
        year = info.name.removeprefix("voc")
        calls = [{"year": year, "image_set": s} for s in ("trainval", "test") if s in info.splits]
    elif info.name in ("caltech101", "caltech256", "eurosat"):  # one archive, no split argument
        calls = [{}]
    else:
        calls = [{"split": split} for split in info.splits]
    for kwargs in calls:
        cls(str(root), download=True, **kwargs)


def _sun397(info: DatasetInfo, root: Path) -> None:
    """SUN397.tar.gz through torchvision, plus the official partitions into ``SUN397/Partitions``."""
    from torchvision.datasets.utils import download_url, extract_archive

    _torchvision_class(info)(str(root), download=True)
    url, sha256 = SUN397_PARTITIONS
    scratch = root / "partitions-download"
    download_url(url, str(scratch))
    archive = scratch / Path(url).name
    with open(archive, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != sha256:
        raise RuntimeError(f"{archive.name} is corrupted: sha256 {digest[:12]}..., expected {sha256[:12]}...")
    extract_archive(str(archive), str(scratch / "extracted"))
    training = next((scratch / "extracted").rglob("Training_01.txt"), None)
    if training is None:
        raise RuntimeError(f"{archive.name} holds no Training_01.txt")
    os.replace(training.parent, root / info.base_dir / "Partitions")


def _archive(info: DatasetInfo, root: Path) -> None:
    """One archive that extracts to ``base_dir`` (checked against its md5)."""
    from torchvision.datasets.utils import download_and_extract_archive

    url, md5 = ARCHIVES[info.name]
    download_and_extract_archive(url, str(root), md5=md5)


_FETCHERS: dict[str, Callable[[DatasetInfo, Path], None]] = {
    "sun397": _sun397,
    **{name: _archive for name in ARCHIVES},
}
