"""Which config fields enter digests: markers for speed switches, and the digest's view of a config.

A run's folders are named by digests of its config (:meth:`synk8s.config.ExperimentConfig.digest`).
A speed switch must neither orphan the runs made before it existed nor let two runs whose outputs
differ share a folder, so its field carries a marker in ``json_schema_extra``:

- ``{SPEED_ONLY: True}``: the field never changes an output byte and never enters a digest;
- ``{DIGEST_UNLESS: value}``: the field can change outputs; it enters a digest only when it differs
  from ``value`` (today's behaviour), so configs that leave it there keep their digests.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

SPEED_ONLY = "synk8s_speed_only"
DIGEST_UNLESS = "synk8s_digest_unless"
LEFT_OUT = object()  # a selected path whose field the digest leaves out


def digest_view(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a dumped ``model``, sections nested) without the fields the markers leave out."""
    view = {}
    for name, value in data.items():
        field = model.model_fields.get(name)
        extra = field.json_schema_extra if field is not None and isinstance(field.json_schema_extra, dict) else {}
        if extra.get(SPEED_ONLY) or (DIGEST_UNLESS in extra and _same(value, extra[DIGEST_UNLESS])):
            continue
        annotation = field.annotation if field is not None else None
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            value = digest_view(annotation, value)
        view[name] = value
    return view


def changed_fields(section: BaseModel) -> dict[str, Any]:
    """The ``DIGEST_UNLESS`` fields of a config section that differ from their marked value (JSON values)."""
    values = section.model_dump(mode="json")
    return {
        name: values[name]
        for name, field in type(section).model_fields.items()
        if isinstance(field.json_schema_extra, dict)
        and DIGEST_UNLESS in field.json_schema_extra
        and not _same(values[name], field.json_schema_extra[DIGEST_UNLESS])
    }


def _same(value: Any, neutral: Any) -> bool:
    """Equal and of the same kind (so ``0`` is not ``False``)."""
    return value == neutral and type(value) is type(neutral)
