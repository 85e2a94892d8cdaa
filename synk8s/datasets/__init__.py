"""Evaluation datasets: registry (class names, prompt templates, splits), loaders and stand-ins.

Examples::

    from synk8s import datasets
    datasets.get("cifar100").num_classes                       # 100
    data = datasets.load("cifar100", "test", "/data")          # (PIL RGB image, label) pairs
    datasets.write_standin("cifar100", "/tmp/data", per_class=4)  # small drawn stand-in, same format
    datasets.download("cifar100", "./data/cifar100")           # fetch where possible, then verify
    datasets.write_voc_standin("/tmp/voc", images=64)          # learnable VOC07+12 shapes stand-in
"""

from synk8s.datasets.custom import CUSTOM, NO_TEST_NOTICE, has_test_set, info
from synk8s.datasets.detection import DetectionData, load_detection
from synk8s.datasets.download import download
from synk8s.datasets.loaders import ClassificationData, load
from synk8s.datasets.registry import DatasetInfo, all, get, names, require_classification
from synk8s.datasets.standin import (
    MARKER,
    is_standin,
    recorded_settings,
    settings_changes,
    standin_settings,
    write_standin,
)
from synk8s.datasets.voc_standin import voc_standin_settings, write_voc_standin

__all__ = [
    "CUSTOM",
    "MARKER",
    "NO_TEST_NOTICE",
    "ClassificationData",
    "DatasetInfo",
    "DetectionData",
    "all",
    "download",
    "get",
    "has_test_set",
    "info",
    "is_standin",
    "load",
    "load_detection",
    "names",
    "recorded_settings",
    "require_classification",
    "settings_changes",
    "standin_settings",
    "voc_standin_settings",
    "write_standin",
    "write_voc_standin",
]
