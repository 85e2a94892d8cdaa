"""synk8s: synthetic training data from text-to-image models, as Kubeflow pipelines.

``synk8s.load_classifier(folder)`` loads a classifier that ``synk8s export`` wrote (see
:mod:`synk8s.models.classifier`); importing the package imports no ML library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synk8s.models.classifier import load_classifier

__version__ = "0.1.0"

__all__ = ["__version__", "load_classifier"]


def __getattr__(name: str) -> Any:
    if name == "load_classifier":  # torch loads on first use, not with the package
        from synk8s.models.classifier import load_classifier

        return load_classifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
