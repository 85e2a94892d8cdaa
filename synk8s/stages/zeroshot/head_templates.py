"""Which prompt templates build the CLIP text head: CLIP's evaluation sets or the paper's official ones.

``features.templates: paper`` takes the official code's set where it has one for the dataset
(``datasets/data/paper_templates.json``: ImageNet's 7-template ensemble, one template for EuroSAT and
the other few-shot datasets) and CLIP's set (``templates.json``) elsewhere; ``clip`` always takes
CLIP's. The features stage records which set it used in its manifest, and the run report copies it.

    templates, source = head_templates(cfg)     # (("a centered satellite photo of {}.",), "paper")
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from synk8s import datasets
from synk8s.config import ExperimentConfig

PAPER_FILE = "paper_templates.json"


@functools.cache
def paper_templates() -> dict[str, tuple[str, ...]]:
    """The official code's text-head templates, by dataset registry name."""
    text = resources.files("synk8s.datasets").joinpath("data", PAPER_FILE).read_text(encoding="utf-8")
    return {name: tuple(t) for name, t in json.loads(text).items() if not name.startswith("_")}


def head_templates(cfg: ExperimentConfig) -> tuple[tuple[str, ...], str]:
    """The text-head templates of the run's dataset and their source: ``"paper"`` or ``"clip"``."""
    name = cfg.dataset.name
    if cfg.features.templates == "paper" and name in paper_templates():
        return paper_templates()[name], "paper"
    return datasets.info(cfg.dataset).templates, "clip"
