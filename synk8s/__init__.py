"""synk8s: synthetic training data from text-to-image models, as Kubeflow pipelines."""

__version__ = "0.1.0"
