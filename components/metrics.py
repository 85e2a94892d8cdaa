"""Copy a stage result's numbers into a KFP ``Metrics`` artifact (shown in the run's UI)."""

from typing import Any


def log_result(metrics: Any, result: Any) -> None:
    """Log every number of a stage's pydantic result into ``metrics``.

    Counts, accuracies and ``seconds`` (rounded to 1 ms); booleans, texts, URIs and None are left
    to the stage's manifest.

    Args:
        metrics: a ``dsl.Metrics`` output (anything with ``log_metric(name, number)``).
        result: what the stage function returned.
    """
    for name, value in result.model_dump().items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(name, round(float(value), 3) if name == "seconds" else value)
