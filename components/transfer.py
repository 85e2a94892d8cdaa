"""Components of the pretrain pipeline beside the table's stages: a config variant and the transfer report.

``variant`` turns the run's config into one with a few fields set (the transfer from random weights
is the same stage with ``pretrain.finetune.init=scratch`` or ``detect.init=scratch``); the stage's
folder digest then tells the two runs apart. ``transfer_report`` writes the run's ``report.json``
(:mod:`synk8s.reports.transfer`) and returns its URI, the pipeline's output. Both run in the CPU image.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kfp import dsl

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig


def variant(config_json: str, overrides: str) -> str:
    """The run's config with ``overrides`` (a JSON list of ``key.path=value``) applied, as JSON."""
    import json

    from synk8s.config import with_overrides
    from synk8s.resolve import read_resolved

    cfg = with_overrides(read_resolved(config_json), json.loads(overrides))  # set by the pipeline (init=scratch)
    return cfg.model_dump_json()


def transfer_report(config_json: str, run_dir: str, transfer: str, pretrain: str, pretrained: str, scratch: str) -> str:
    """Write the pre-training run's report (its transfer from the trunk beside the one from scratch); its URI."""
    from synk8s.reports.transfer import write_transfer_report
    from synk8s.resolve import read_resolved
    from synk8s.runs import check_run_dir

    cfg = read_resolved(config_json)
    check_run_dir(cfg.store.root, run_dir)
    return write_transfer_report(
        cfg, run_dir, transfer=transfer, pretrain=pretrain, pretrained=pretrained, scratch=scratch
    )


@dataclass(frozen=True)
class TransferComponents:
    """The two components, bound to the CPU image of a config."""

    variant: Any
    report: Any


def make_transfer_components(cfg: "ExperimentConfig") -> TransferComponents:
    """Build both components in ``cluster.cpu_image``, installing nothing when they start."""
    image = cfg.cluster.cpu_image
    return TransferComponents(
        variant=dsl.component(variant, base_image=image, install_kfp_package=False),
        report=dsl.component(transfer_report, base_image=image, install_kfp_package=False),
    )
