"""The folder an export writes: ``manifest.json`` naming its format and the SHA-256 of every other file.

A classifier (:mod:`synk8s.models.classifier`) and a pre-training run's backbone
(:mod:`synk8s.stages.export`) are both such folders; their readers check each file against the
manifest before using it. This module imports no ML library, so the stage table can name it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from synk8s import storage
from synk8s.errors import IntegrityError, MissingDataError

MANIFEST = "manifest.json"
EXPORT_HINT = "export one with `synk8s export RUN_FOLDER -o DIR`"
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def read_export_manifest(folder: str) -> dict[str, Any]:
    """The ``manifest.json`` of an export folder (a classifier or a backbone), as JSON.

    Raises:
        MissingDataError: no manifest in ``folder``.
        IntegrityError: it does not parse, or is not an export manifest (no ``format`` and ``files``).
    """
    uri = storage.join(folder, MANIFEST)
    if not storage.exists(uri):
        raise MissingDataError(f"no exported model at {folder}: {uri} is missing; {EXPORT_HINT}")
    try:
        body = json.loads(storage.get_bytes(uri))
    except ValueError as error:
        raise IntegrityError(f"{uri} is damaged: it does not parse as JSON ({error}); {EXPORT_HINT}") from None
    if not isinstance(body, dict) or not isinstance(body.get("format"), str) or not isinstance(body.get("files"), dict):
        raise IntegrityError(f"{uri} is not the manifest of an exported model (no format and files); {EXPORT_HINT}")
    for name in body["files"]:
        if not _FILE_NAME.fullmatch(name) or name == MANIFEST:  # files sit beside the manifest, nowhere else
            raise IntegrityError(f"{uri} lists {name!r}, which is not a file of the folder; {EXPORT_HINT}")
    return body


def verify_export(folder: str) -> list[str]:
    """The files an export folder's manifest lists, sorted, each streamed through SHA-256 against its record.

    Raises:
        MissingDataError: no manifest, or a listed file is missing.
        IntegrityError: the manifest is not an export's, or a file differs from its recorded SHA-256.
    """
    body = read_export_manifest(folder)
    for name, sha in body["files"].items():
        storage.verify(storage.join(folder, name), sha)
    return sorted(body["files"])


def read_verified(folder: str, name: str, sha256: str) -> bytes:
    """The bytes of file ``name`` of an export folder, checked against the SHA-256 its manifest recorded.

    Raises:
        MissingDataError: the file is missing.
        IntegrityError: its bytes differ from the recorded SHA-256.
    """
    uri = storage.join(folder, name)
    if not storage.exists(uri):
        raise MissingDataError(f"{uri} is missing: the export at {folder} is incomplete; {EXPORT_HINT}")
    try:
        return storage.get_bytes(uri, sha256=sha256)
    except IntegrityError as error:
        raise IntegrityError(f"{error}; {EXPORT_HINT}") from None
