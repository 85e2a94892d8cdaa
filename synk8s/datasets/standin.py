"""Small stand-in datasets, written in each dataset's own on-disk format.

``write_standin("cifar100", root, per_class=4)`` writes a few drawn images per class under
``root`` exactly where and how the real dataset's files go, with the real class names, so the real
loader (``load`` / ``load_detection``) reads it unchanged. It lets the whole system run and be
tested with no download. Every class gets its own colours, stripe orientation and frequency and a
disc, and every image its own phase, jitter and noise, so a classifier can in principle tell the
classes apart. A marker file ``SYNK8S_STANDIN`` in ``root`` tells stand-in data from real data; it
is JSON and records, per dataset written there, the settings it was drawn with (:func:`standin_settings`),
so a caller can tell a stand-in drawn with other settings (:func:`settings_changes`) and draw it again.

The output depends only on the arguments: the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from synk8s.datasets import standin_formats
from synk8s.datasets.drawing import Painter
from synk8s.datasets.registry import get
from synk8s.errors import UsageError

log = logging.getLogger(__name__)

MARKER = "SYNK8S_STANDIN"
_MARKER_TEXT = "synk8s stand-in data: drawn images under real class names, not a real dataset\n"


def is_standin(root: str | os.PathLike) -> bool:
    """True when ``root`` holds stand-in data written by :func:`write_standin`."""
    return (Path(root) / MARKER).is_file()


def _recorded(root: Path) -> dict[str, dict[str, Any]]:
    """The settings recorded in ``root``'s marker, per written stand-in; empty for a marker without any."""
    try:
        data = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no marker, or the plain-text marker of earlier versions
        return {}
    written = data.get("written") if isinstance(data, dict) else None
    return written if isinstance(written, dict) else {}


def mark_standin(root: str | os.PathLike, key: str, settings: dict[str, Any] | None, note: str) -> None:
    """Write ``root``'s marker, recording ``settings`` for the stand-in ``key`` beside the others there.

    Args:
        root: the data root.
        key: what was written, e.g. a registry name.
        settings: JSON values the stand-in's files depend on; None drops ``key``'s entry (mark the root
            with None before writing files and with the settings once they are all written, so an
            interrupted write is drawn again).
        note: the marker's human-readable line.
    """
    root_path = Path(root)
    written = {k: v for k, v in _recorded(root_path).items() if k != key}
    if settings is not None:
        written[key] = settings
    text = json.dumps({"note": note.strip(), "written": written}, indent=1, sort_keys=True)
    (root_path / MARKER).write_text(text + "\n", encoding="utf-8")


def recorded_settings(root: str | os.PathLike, key: str) -> dict[str, Any] | None:
    """The settings the stand-in ``key`` under ``root`` was drawn with; None when its marker records none."""
    return _recorded(Path(root)).get(key)


def settings_changes(root: str | os.PathLike, key: str, settings: dict[str, Any]) -> list[str]:
    """How the stand-in ``key`` under ``root`` was drawn differently from ``settings``, one item per setting.

    Returns:
        ``["per_class 2 -> 3", ...]``; ``[]`` when the recorded settings equal ``settings``; one item
        saying so when the marker records none for ``key`` (an earlier version or an interrupted write).
    """
    recorded = recorded_settings(root, key)
    if recorded is None:
        return ["its marker records no settings (an earlier version or an interrupted write)"]
    wanted = json.loads(json.dumps(settings))  # tuples as lists, as read back
    return [f"{k} {recorded.get(k)!r} -> {v!r}" for k, v in wanted.items() if recorded.get(k) != v]


def standin_settings(
    name: str, per_class: int, splits: Iterable[str] | None = None, seed: int = 0, size: int = 32
) -> dict[str, Any]:
    """The settings :func:`write_standin` records for these arguments (its files depend on nothing else)."""
    return {"per_class": per_class, "splits": _plan(name, get(name).splits, splits), "seed": seed, "size": size}


def _plan(name: str, available: tuple[str, ...], splits: Iterable[str] | None) -> list[str]:
    """Splits to write files for, in registry order; ``trainval`` means train and val where both exist."""
    requested = available if splits is None else tuple(splits)
    for split in requested:
        if split not in available:
            raise UsageError(f"{name} has no split {split!r}; choose one of: {', '.join(available)}")
    wanted = set()
    for split in requested:
        both = split == "trainval" and {"train", "val"} <= set(available)
        wanted.update(("train", "val") if both else (split,))
    return [s for s in available if s in wanted]


def write_standin(
    name: str,
    root: str | os.PathLike,
    per_class: int,
    splits: Iterable[str] | None = None,
    seed: int = 0,
    size: int = 32,
) -> dict[str, int]:
    """Write a small stand-in of dataset ``name`` under ``root``, in the dataset's own format.

    A stand-in written earlier for the same dataset under ``root`` is replaced; real data
    (a dataset folder under a root without the marker) is never touched. The marker records
    :func:`standin_settings` of the arguments.

    Args:
        name: Registry name, e.g. ``"cifar100"``.
        root: Data root (the same one ``load`` takes).
        per_class: Images per class in each written split (>= 1). Datasets whose split is a rule
            over one pool of files write the whole pool: Caltech keeps its fixed 30 train images
            per class plus ``per_class`` test images; EuroSAT writes ``5 * per_class`` per class.
        splits: Splits to write (default: all of ``get(name).splits``). ``trainval`` writes
            train and val where those exist.
        seed: Seed of the per-image variation (phase, jitter, noise).
        size: Image side in pixels (CIFAR is always 32).

    Returns:
        Number of samples ``load`` / ``load_detection`` will find in each loadable split.

    Raises:
        UsageError: Unknown dataset or split, ``per_class``, ``size`` or ``seed`` out of range, or
            the dataset folder exists and holds real data.
    """
    info = get(name)
    if per_class < 1:
        raise UsageError(f"per_class must be >= 1, got {per_class}")
    if size < 8:
        raise UsageError(f"size must be >= 8 pixels, got {size}")
    if seed < 0:
        raise UsageError(f"seed must be >= 0, got {seed}")
    plan = _plan(name, info.splits, splits)
    root_path = Path(root)
    base = root_path / info.base_dir
    if base.exists():
        if not is_standin(root_path):
            raise UsageError(f"{base} exists and is not stand-in data; refusing to overwrite it")
        shutil.rmtree(base)
    root_path.mkdir(parents=True, exist_ok=True)
    mark_standin(root_path, name, None, _MARKER_TEXT)
    counts = standin_formats.WRITERS[name](info, base, plan, per_class, Painter(seed, size))
    mark_standin(root_path, name, standin_settings(name, per_class, plan, seed, size), _MARKER_TEXT)
    log.info("wrote %s stand-in under %s: %s", name, root_path, counts)
    return counts
