"""Write a compiled pipeline to a YAML file: whole or not at all, and the same bytes every time.

kfp starts the file with a ``#`` header that repeats the pipeline's inputs and their defaults, and
prints a dict-valued default (``gpu_tolerations``) in protobuf map order, which changes from one
compilation to the next. :func:`write_pipeline_yaml` renders that header again from the spec itself
(JSON values, keys sorted), so one pipeline always gives one file::

    # PIPELINE DEFINITION
    # Name: synk8s-zeroshot
    # Inputs:
    #    gpu_node_selector: dict [Default: {"synk8s.io/pool": "gpu"}]
    #    images_per_class: int [Default: 2000]
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from synk8s.errors import UsageError

SUFFIXES = (".yaml", ".yml")

# Parameter types of the pipeline spec -> the Python type names the header shows.
_TYPE_NAMES = {
    "STRING": "str",
    "NUMBER_INTEGER": "int",
    "NUMBER_DOUBLE": "float",
    "BOOLEAN": "bool",
    "LIST": "list",
    "STRUCT": "dict",
    "TASK_FINAL_STATUS": "PipelineTaskFinalStatus",
}
_CONTINUED = "#              "  # indent of a description's second and later lines


def _signature(title: str, definitions: dict[str, Any]) -> list[str]:
    """Header lines of the root's inputs or outputs, sorted by name."""
    rows = {}
    for name, body in definitions.get("parameters", {}).items():
        kind = body["parameterType"]
        row = f"#    {name}: {_TYPE_NAMES.get(kind, kind)}"
        if "defaultValue" in body:
            value = body["defaultValue"]
            if kind == "NUMBER_INTEGER":
                value = int(value)  # the spec stores every number as a double
            row += f" [Default: {json.dumps(value, sort_keys=True)}]"
        rows[name] = row
    for name, body in definitions.get("artifacts", {}).items():
        rows[name] = f"#    {name}: {body['artifactType']['schemaTitle']}"
    return [title, *(rows[name] for name in sorted(rows))]


def header(spec: dict[str, Any]) -> str:
    """The ``#`` header of a pipeline spec (the first YAML document), one line per input and output."""
    info = spec["pipelineInfo"]
    lines = ["# PIPELINE DEFINITION", f"# Name: {info['name']}"]
    if info.get("description"):
        lines.append("# Description: " + f"\n{_CONTINUED}".join(info["description"].splitlines()))
    root = spec["root"]
    if "inputDefinitions" in root:
        lines += _signature("# Inputs:", root["inputDefinitions"])
    if "outputDefinitions" in root:
        lines += _signature("# Outputs:", root["outputDefinitions"])
    return "\n".join(lines) + "\n"


def write_pipeline_yaml(pipeline_func: Any, path: str | Path) -> Path:
    """Compile ``pipeline_func`` to the YAML file ``path``; returns the path.

    The file appears only once it is complete (written beside it, then renamed over it), so a
    failed compile leaves an earlier file as it was.

    Raises:
        UsageError: ``path`` does not end in ``.yaml``/``.yml``, or cannot be written.
    """
    import yaml
    from kfp import compiler

    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise UsageError(f"pipeline file {str(path)!r} must be a file name ending in .yaml or .yml")
    with tempfile.TemporaryDirectory(prefix="synk8s-compile-") as tmp:
        draft = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(pipeline_func=pipeline_func, package_path=str(draft))
        lines = draft.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    body = "".join(lines[start:])
    text = header(next(yaml.safe_load_all(body))) + body

    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink()
        reason = error.strerror or type(error).__name__
        raise UsageError(f"cannot write {path}: {reason}; choose a file in an existing, writable folder") from None
    return path
