"""The run folder: the `manifest.json` every stage writes beside its outputs, and reading it back."""

from __future__ import annotations

from typing import Any

from synk8s import __version__, storage
from synk8s.config import ExperimentConfig


def write_manifest(out: str, stage: str, cfg: ExperimentConfig, *, counts: dict[str, Any], **extra: Any) -> str:
    """Write ``<out>/manifest.json`` and return its URI.

    Args:
        out: the stage's output folder URI.
        stage: stage name (``prompts``, ``generate``, ...).
        cfg: the run's config; its digest, seed and model names are recorded.
        counts: the stage's counts (prompts, images, kept, ...); components copy them into KFP metrics.
        **extra: stage-specific fields (inputs, outputs, seconds, model identities).
    """
    body = {
        "stage": stage,
        "synk8s_version": __version__,
        "config_digest": cfg.digest(),
        "profile": cfg.profile,
        "dataset": cfg.dataset.name,
        "seed": cfg.seed,
        "models": cfg.models.model_dump(mode="json"),
        "counts": counts,
        **extra,
    }
    uri = storage.join(out, "manifest.json")
    storage.put_json(uri, body)
    return uri


def read_manifest(out: str, stage: str) -> dict[str, Any]:
    """Read ``<out>/manifest.json``; a missing one names the stage that should have written it."""
    from synk8s.errors import MissingDataError

    uri = storage.join(out, "manifest.json")
    if not storage.exists(uri):
        raise MissingDataError(
            f"no {stage} output at {out}: run `synk8s stage {stage}` first with the same --profile and --set "
            f"options (the run folder is named by their digest), or pass --run-id (missing {uri})"
        )
    return storage.get_json(uri)
