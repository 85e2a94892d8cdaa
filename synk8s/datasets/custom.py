"""Your own label space: a classes file read, checked and turned into a :class:`DatasetInfo`.

A classes file is either plain text, one class name per line (blank lines and ``#`` comments skipped),
or YAML (``.yaml``/``.yml``)::

    classes:
      - forklift                                  # a bare name
      - name: pallet jack
        description: a hand-pushed truck with two forks
        aliases: [pump truck]                     # other names the class goes by
    templates: ["a photo of a {}.", "a warehouse photo of a {}."]   # optional; default: CLIP's "a photo of a {}."

Names must be non-empty, at most :data:`MAX_NAME` characters and unique ignoring case; templates need a
``{}``; the file must be UTF-8. Each fault is one line naming the file and the line.

The file's identity is the SHA-256 of its bytes. ``synk8s submit --classes FILE`` copies it into the
store, content-addressed (``<store.root>/labelspaces/<sha256><suffix>``), and sets ``dataset.name:
custom``, ``dataset.classes`` (that URI) and ``dataset.classes_sha256``; pods read the copy, and the
digest enters the run id (:func:`synk8s.labelspace.digest_fields`). :func:`info` is the one way a
stage asks for the run's classes and templates, registry dataset or custom alike.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from synk8s import storage
from synk8s.config import CUSTOM_DATASET
from synk8s.datasets.registry import CLASSIFICATION, DatasetInfo, get
from synk8s.errors import IntegrityError, UsageError

CUSTOM = CUSTOM_DATASET  # dataset.name of a run over your own label space
MAX_NAME = 100  # characters in a class name
DEFAULT_TEMPLATES = ("a photo of a {}.",)
LABELSPACE_DIR = "labelspaces"
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LabelSpace:
    """A checked classes file.

    Attributes:
        names: class names, in label order (label ``i`` is ``names[i]``).
        descriptions: per class, its description or ``""``.
        aliases: per class, other names it goes by (matched by the other-class check of LE prompts).
        templates: CLIP prompt templates, each with one ``{}``.
        sha256: SHA-256 (hex) of the file's bytes.
    """

    names: tuple[str, ...]
    descriptions: tuple[str, ...]
    aliases: tuple[tuple[str, ...], ...]
    templates: tuple[str, ...]
    sha256: str


def parse(data: bytes, where: str, *, yaml_format: bool) -> LabelSpace:
    """Read and check a classes file's bytes.

    Args:
        data: the file's bytes.
        where: how messages name the file (its path or URI).
        yaml_format: YAML (``classes:`` and ``templates:``) rather than one name per line.

    Raises:
        UsageError: not UTF-8, not the expected shape, an empty, duplicate or too long name, or a
            template without ``{}``; the message names the file and the line.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UsageError(
            f"{where}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); save the classes file as UTF-8"
        ) from None
    entries, templates = _yaml_entries(text, where) if yaml_format else _text_entries(text)
    _check_names(entries, where)
    for line, template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise UsageError(f"{where}:{line}: template {template!r} needs exactly one {{}} where the class name goes")
    return LabelSpace(
        names=tuple(e["name"] for _, e in entries),
        descriptions=tuple(e.get("description", "") for _, e in entries),
        aliases=tuple(tuple(e.get("aliases", ())) for _, e in entries),
        templates=tuple(t for _, t in templates) or DEFAULT_TEMPLATES,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _text_entries(text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]]]:
    """One entry per non-blank, non-comment line: (line number, {"name": ...})."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if name and not name.startswith("#"):
            entries.append((number, {"name": name}))
    return entries, []


def _yaml_entries(text: str, where: str) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]]]:
    """The ``classes`` entries and ``templates`` of a YAML classes file, each with its line."""
    try:
        nodes = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UsageError(f"{where}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise UsageError(f"{where}:1: a YAML classes file holds 'classes:', a list of names or of {{name, description, aliases}}")
    unknown = sorted(set(data) - {"classes", "templates"})
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; a classes file holds 'classes' and 'templates'")
    lines = _item_lines(nodes)
    entries = [_entry(item, lines["classes"][i], where) for i, item in enumerate(data["classes"])]
    templates = data.get("templates") or []
    if not isinstance(templates, list):
        raise UsageError(f"{where}: 'templates' must be a list of strings with {{}}")
    return entries, list(zip(lines.get("templates", []), templates))


def _item_lines(root: yaml.Node | None) -> dict[str, list[int]]:
    """Line of each item of the top-level lists, by key."""
    found: dict[str, list[int]] = {}
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(value, yaml.SequenceNode):
                found[key.value] = [item.start_mark.line + 1 for item in value.value]
    return found


def _entry(item: Any, line: int, where: str) -> tuple[int, dict[str, Any]]:
    """(line, {"name", "description", "aliases"}) of one ``classes`` item."""
    if isinstance(item, (str, int, float)) and not isinstance(item, bool):
        return line, {"name": str(item).strip()}
    if not isinstance(item, dict) or "name" not in item:
        raise UsageError(f"{where}:{line}: a class is a name or a mapping with 'name' (and 'description', 'aliases')")
    extra = sorted(set(item) - {"name", "description", "aliases"})
    if extra:
        raise UsageError(f"{where}:{line}: unknown class key {extra[0]!r}; use name, description, aliases")
    aliases = item.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise UsageError(f"{where}:{line}: 'aliases' must be a list of non-empty names")
    return line, {
        "name": str(item["name"] or "").strip(),
        "description": str(item.get("description") or "").strip(),
        "aliases": [a.strip() for a in aliases],
    }


def _check_names(entries: list[tuple[int, dict[str, Any]]], where: str) -> None:
    """Refuse an empty file, and empty, too long or duplicate (case-insensitive) names and aliases."""
    if not entries:
        raise UsageError(f"{where}: no class names; list one class per line (or 'classes:' in YAML)")
    seen: dict[str, int] = {}
    for line, entry in entries:
        for name in (entry["name"], *entry.get("aliases", ())):
            if not name:
                raise UsageError(f"{where}:{line}: empty class name")
            if len(name) > MAX_NAME:
                raise UsageError(f"{where}:{line}: class name of {len(name)} characters; the limit is {MAX_NAME}")
            key = name.casefold()
            if key in seen:
                raise UsageError(f"{where}:{line}: class {name!r} repeats line {seen[key]} (names ignore case)")
            seen[key] = line


def read_file(path: str | Path) -> LabelSpace:
    """Read and check a local classes file (``--classes``).

    Raises:
        UsageError: the file cannot be read or fails a check of :func:`parse`.
    """
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read classes file {path}: {err.strerror or err}") from None
    return parse(data, str(path), yaml_format=path.suffix.lower() in YAML_SUFFIXES)


def from_names(names: list[str], where: str) -> tuple[bytes, LabelSpace]:
    """A text classes file listing ``names`` (the class folders of ``--images`` alone), and its label space."""
    data = "".join(f"{name}\n" for name in names).encode("utf-8")
    return data, parse(data, where, yaml_format=False)


def store_copy(data: bytes, suffix: str, store_root: str, *, upload: bool = True) -> str:
    """Put a classes file's bytes at ``<store_root>/labelspaces/<sha256><suffix>`` (once); its URI.

    With ``upload`` false only the URI is returned (``synk8s plan`` contacts nothing).
    """
    uri = storage.join(store_root, LABELSPACE_DIR, hashlib.sha256(data).hexdigest() + suffix)
    if upload and not storage.exists(uri):
        storage.put_bytes(uri, data)
    return uri


def overrides(classes: str | None, images: str | None, store_root: str, *, upload: bool = True) -> list[str]:
    """Config overrides of ``--classes FILE`` and ``--images ROOT_OR_MANIFEST``.

    The classes file (or, with ``--images`` alone, a text file of the images' sorted class names) is
    copied into the store (:func:`store_copy`); ``dataset.name`` becomes ``custom``. A local images
    path is made absolute. With ``upload`` false the classes file is not copied (see :func:`store_copy`).

    Raises:
        UsageError: the classes file fails a check, or the images name no class.
    """
    from synk8s.datasets.imagefolder import class_names

    if classes is not None:
        space = read_file(classes)
        suffix = ".yaml" if Path(classes).suffix.lower() in YAML_SUFFIXES else ".txt"
        data = Path(classes).expanduser().read_bytes()
    else:
        data, space = from_names(class_names(images), f"the class folders of {images}")
        suffix = ".txt"
    uri = store_copy(data, suffix, store_root, upload=upload)
    found = [f"dataset.name={CUSTOM}", f"dataset.classes={uri}", f"dataset.classes_sha256={space.sha256}"]
    if images is not None:
        found.append(f"dataset.images={images if storage.is_remote(images) else Path(images).expanduser().absolute()}")
    return found


@functools.cache
def load_stored(uri: str, sha256: str) -> LabelSpace:
    """The label space stored at ``uri``, checked against ``sha256``.

    Raises:
        IntegrityError: the stored bytes differ from ``sha256``.
        UsageError: the stored file fails a check (it was changed by hand).
    """
    data = storage.get_bytes(uri)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise IntegrityError(
            f"label space {uri} has SHA-256 {actual[:12]}..., the run names {sha256[:12]}...; "
            "submit again with --classes FILE"
        )
    return parse(data, uri, yaml_format=uri.lower().endswith(YAML_SUFFIXES))


def dataset_info(space: LabelSpace, uri: str) -> DatasetInfo:
    """A registry-shaped entry for a custom label space: splits train and test."""
    return DatasetInfo(
        name=CUSTOM,
        title=f"custom label space {space.sha256[:12]}",
        task=CLASSIFICATION,
        kind=CUSTOM,
        classes=space.names,
        templates=space.templates,
        splits=("train", "test"),
        test_split="test",
        data_layout="dataset.images: root/<split>/<class>/*, root/<class>/* or a CSV/JSONL manifest (path,label)",
        torchvision_class="ImageFolder",
        homepage=uri,
        base_dir="",
        descriptions=space.descriptions,
        aliases=space.aliases,
    )


def info(section: Any) -> DatasetInfo:
    """The run's dataset entry: the registry's for a registered ``dataset.name``, else the stored label space.

    Args:
        section: the run's ``dataset`` config section (``cfg.dataset``).
    """
    if section.name != CUSTOM:
        return get(section.name)
    return dataset_info(load_stored(section.classes, section.classes_sha256), section.classes)


def has_test_set(section: Any) -> bool:
    """Whether the run has real test images: a registry dataset, or your own label space with ``dataset.images``.

    Without them a zero-shot run still generates and tunes, and reports top-1 on held-out synthetic
    images only (:data:`NO_TEST_NOTICE`).

    Args:
        section: the run's ``dataset`` config section (``cfg.dataset``).
    """
    return section.name != CUSTOM or section.images is not None


NO_TEST_NOTICE = (
    "no real test set: this label space has no real images (pass --images to measure test accuracy), so test "
    "top-1 is not measured; the synthetic_val numbers are top-1 on the held-out synthetic images tune chose "
    "its epoch on, which says how well the head separates generated images, not how it does on real ones"
)


