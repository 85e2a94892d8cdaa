"""Checks at the config's edge: value bounds, profile files, and one-line messages for bad values.

Bounds. Every float in a config must be finite: ``inf`` and ``nan`` are refused when the config is
loaded (:class:`synk8s.config_studies.Section` sets ``allow_inf_nan=False``), because they cannot pass
between pipeline tasks as JSON. Every integer has an upper bound. A field's own range, if it has one,
applies first; otherwise the ceiling of its kind, set by the alias it is declared with:

=============  ================  ====================================================================
alias          ceiling           kind
=============  ================  ====================================================================
``Seed``       2**63 - 1         seeds (numpy and torch take 64-bit seeds)
``PerClass``   100_000           images, sentences and shots per class
``Images``     10_000_000        totals: images, classes, tars, pairs drawn
``Batch``      65_536            images per batch, and the parts a batch is split into
``Steps``      10_000_000        epochs, iterations, denoising steps and the intervals between them
``Pixels``     16_384            image sides, crops and anchor sizes in pixels
``Width``      1_048_576         layer widths, queues, tokens, top-k, proposals and detections
``Workers``    1_024             processes, threads, nodes, GPUs, shards and retries
=============  ================  ====================================================================

Larger values would only end in a MemoryError or an OverflowError inside a stage, so they are
refused in one line, e.g. "generate.images_per_class must be at most 100000, got 1000000000000".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError

from synk8s.errors import UsageError

DType = Literal["auto", "float32", "float16", "bfloat16"]  # a model's compute precision

SEED_MAX = 2**63 - 1
PER_CLASS_MAX = 100_000
IMAGES_MAX = 10_000_000
BATCH_MAX = 65_536
STEPS_MAX = 10_000_000
PIXELS_MAX = 16_384
WIDTH_MAX = 1_048_576
WORKERS_MAX = 1_024

Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
PerClass = Annotated[int, Field(le=PER_CLASS_MAX)]
Images = Annotated[int, Field(le=IMAGES_MAX)]
Batch = Annotated[int, Field(le=BATCH_MAX)]
Steps = Annotated[int, Field(le=STEPS_MAX)]
Pixels = Annotated[int, Field(le=PIXELS_MAX)]
Width = Annotated[int, Field(le=WIDTH_MAX)]
Workers = Annotated[int, Field(le=WORKERS_MAX)]

# pydantic error type -> how the message says it, filled from the error's context
_RANGES = {
    "finite_number": "must be a finite number",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
}


def describe(err: ValidationError) -> str:
    """One line for the first error of a config's validation, naming the field and the value.

    Args:
        err: the error of ``ExperimentConfig.model_validate``.

    Returns:
        e.g. ``"tune.lr must be a finite number, got inf"``.
    """
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    got = first.get("input")
    kind = first["type"]
    if kind == "missing":
        return f"config key {where!r} is missing; set it in the profile or with --set {where}=..."
    if kind == "extra_forbidden":
        return f"unknown config key {where!r}; remove it from the profile"
    if kind in _RANGES:
        return f"{where} {_RANGES[kind].format(**first.get('ctx', {}))}, got {got!r}"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}, got {got!r}"


def read_profile_file(path: Path) -> dict[str, Any]:
    """The mapping a user profile file holds: UTF-8 text, valid YAML, a mapping at the top.

    Args:
        path: the profile file (``*.yaml``/``*.yml``).

    Raises:
        UsageError: the file cannot be read, is not UTF-8, is not valid YAML, or is not a mapping.
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read profile file {path}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(
            f"profile file {path} is not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start}; "
            "save it as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UsageError(f"profile file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"profile file {path} must be a mapping of config keys (e.g. 'extends: tiny'), "
            f"got a YAML {type(data).__name__}"
        )
    return data
