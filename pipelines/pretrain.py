"""The pre-training pipeline (paper section 3.3) as a Kubeflow pipeline: synthetic pre-training, then transfer.

    plan -> prompts -> generate_shards -> generate x num_shards (ParallelFor, GPU) -> collect -> pretrain
         -> transfer from the pre-trained trunk + transfer from random weights -> transfer_report

``pretrain.transfer`` picks the transfer when the pipeline is built: ``cifar100`` fine-tunes on
CIFAR-100 (Table 8, the ``finetune`` stage with ``pretrain.finetune.init`` pretrained / scratch),
``voc`` trains Faster R-CNN on VOC (Tables 9-10, the ``detect`` stage with ``detect.init`` pretrained /
scratch). The training tasks (pretrain, finetune, detect) only launch: on a cluster each creates a
Kubeflow Trainer TrainJob and follows it (:mod:`synk8s.launch`); under kfp.local they train in the
task's process, or under torchrun with ``pretrain.nproc`` > 1. The pipeline's output is the URI of
the run's ``report.json`` (:mod:`synk8s.reports.transfer`).

    synk8s compile pretrain --profile paper -o pretrain.yaml
    synk8s submit pretrain --label-space cifar100 --method moco --transfer cifar100 --local --profile tiny
"""

from typing import Any

from synk8s.pipelines.wiring import Wiring, planned_pipeline

from synk8s import config
from synk8s.config import ExperimentConfig
from synk8s.labelspace import SOURCE_DATASETS

PIPELINE_NAME = "synk8s-pretrain"
#: typed pipeline parameters (see synk8s.flags.PARAMETERS); the label space sets dataset.name,
#: and the transfer is fixed at compile time
PARAMETERS = (
    "label_space", "method", "pretrain_images", "pretrain_epochs", "num_shards", "generator", "seed", "store_root",
)
#: transfer -> (stage, the config field that picks its start)
TRANSFER_STAGES = {"cifar100": ("finetune", "pretrain.finetune.init"), "voc": ("detect", "detect.init")}


def prepare_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config this pipeline runs: a label space (default ``cifar100``), and ``dataset.name`` its source.

    The run folder is then ``runs/<cifar100 | imagenet>-<digest>``; its digest covers the label space
    and ``pretrain.images`` (so ImageNet-1K and -2K runs differ).
    """
    space = cfg.pretrain.label_space or "cifar100"
    return config.with_overrides(cfg, [f"pretrain.label_space={space}", f"dataset.name={SOURCE_DATASETS[space]}"])


def build_pipeline(
    cfg: ExperimentConfig, *, retry: bool = True, parallelism: int | None = None, threads: int | None = None
):
    """The pretrain pipeline function for ``cfg`` (its transfer is ``pretrain.transfer``).

    Args:
        cfg: resolved config; it sets the parameter defaults, the transfer and the cluster settings.
        retry: retry a failed generate task ``cluster.generate_retries`` times (see the zero-shot pipeline).
        parallelism: generate tasks that run at once; None: all ``generate.num_shards``.
        threads: ``OMP_NUM_THREADS`` of every task (a local run's share of the cores); None: unset.

    Returns:
        A ``@dsl.pipeline`` function: compile it, submit it, or call it under ``kfp.local``.
    """
    cfg = prepare_config(cfg)
    transfer = cfg.pretrain.transfer
    stage, init_field = TRANSFER_STAGES[transfer]

    @planned_pipeline(
        cfg,
        parameters=PARAMETERS,
        name=PIPELINE_NAME,
        description=f"Synthetic images of a label space -> pre-trained backbone (supervised or MoCo v2) -> "
        f"{stage} on {transfer} from the trunk and from scratch.",
        retry=retry,
        parallelism=parallelism,
        threads=threads,
    )
    def pretrain(wire: Wiring) -> Any:
        wire.add_through("pretrain")
        sides = {
            side: wire.add(stage, overrides=(f"{init_field}={side}",), label=f"{stage}_{side}").outputs["Output"]
            for side in ("pretrained", "scratch")
        }
        report = wire.call(
            wire.extra.report,
            "transfer_report",
            config_json=wire.config_json,
            run_dir=wire.run_dir,
            transfer=transfer,
            pretrain=wire.tasks["pretrain"].outputs["Output"],
            **sides,
        )
        return report.output  # the run report's URI

    return pretrain
