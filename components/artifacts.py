"""Stage outputs as Kubeflow UI artifacts: a folder as a Dataset or Model, a file as an artifact of its own.

The bulk data stays in the store; an artifact holds what the UI can show: the folder's listing
(name, size, SHA-256 of each file) as JSON, its store URI and totals in the artifact's metadata, or
a copy of one small file (a PNG grid) that the UI previews.
"""

import json
from typing import Any


def describe_folder(artifact: Any, folder: str) -> None:
    """Write the listing of the store folder ``folder`` into ``artifact`` (a Dataset or Model output).

    Args:
        artifact: a KFP output artifact: ``path`` to write, ``metadata`` to fill.
        folder: the stage's folder URI in the store.
    """
    from synk8s import storage

    files = [
        {"name": info.uri[len(folder) :].lstrip("/"), "bytes": info.size, "sha256": info.sha256}
        for info in storage.list(folder)
    ]
    with open(artifact.path, "w", encoding="utf-8") as handle:
        json.dump({"store_uri": folder, "files": files}, handle, indent=1)
    artifact.metadata.update(
        {"store_uri": folder, "files": len(files), "bytes": sum(f["bytes"] for f in files)}
    )


def attach(artifact: Any, folder: str, name: str) -> None:
    """Copy the file ``name`` of the store folder ``folder`` into ``artifact``; its store URI goes in the metadata."""
    from synk8s import storage

    uri = storage.join(folder, name)
    with open(artifact.path, "wb") as handle:
        handle.write(storage.get_bytes(uri))
    artifact.metadata.update({"store_uri": uri, "file": name})
