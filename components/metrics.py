"""Copy a stage manifest's numbers into a KFP ``Metrics`` artifact (shown in the run's UI)."""

from typing import Any


def log_manifest(metrics: Any, manifest: dict[str, Any]) -> None:
    """Log every numeric count of ``manifest["counts"]`` and its ``seconds`` (rounded to 1 ms) into ``metrics``.

    Args:
        metrics: a ``dsl.Metrics`` output (anything with ``log_metric(name, number)``).
        manifest: a stage manifest as written by ``synk8s.runs.write_manifest``;
            non-numeric counts (per-class tables) are left to the manifest itself.
    """
    for name, value in manifest["counts"].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(name, value)
    metrics.log_metric("seconds", round(float(manifest["seconds"]), 3))
