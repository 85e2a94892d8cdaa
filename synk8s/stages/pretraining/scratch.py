"""Training from scratch on CIFAR-100 (paper Table 4): synthetic images against M real images per class.

The paper trains a ResNet-50 from random weights on 50k synthetic CIFAR-100 images (500 per class,
28.74 top-1 on the real test set) and on M real images per class for M in 1, 16, 32, 64, 80, 90, 95, 100
(2.48 ... 29.95), finding that about 95 real images per class match the 500 synthetic ones. Both rows use
the fine-tuning recipe (``pretrain.finetune``, :mod:`synk8s.stages.pretraining.finetune`) from random weights, on
``pretrain.finetune.dataset``; the M real images of each class are drawn with the run seed
(:func:`synk8s.stages.pretraining.finetune.draw_per_class`). The values of M to compare are
``pretrain.finetune.real_per_class``.

    scratch.run(cfg, images="runs/r/images", out="runs/r/scratch-synthetic")      # the synthetic row
    scratch.run(cfg, real_per_class=16, out="runs/r/scratch-real-16")             # one real column

Outputs: those of the fine-tuning stage (``metrics.json`` with ``source`` and ``real_per_class``).
"""

from __future__ import annotations

from synk8s import datasets
from synk8s.config import ExperimentConfig
from synk8s.errors import UsageError
from synk8s.runs import read_manifest
from synk8s.stages.pretraining.finetune import CURVE_FILE, FIELDS, METRICS_FILE, FinetuneResult, downstream, fit
from synk8s.stagetable.spec import Resources, StageSpec


def run(
    cfg: ExperimentConfig,
    *,
    out: str,
    images: str | None = None,
    real_per_class: int | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Train the backbone from random weights on synthetic or on M real images per class; score the test split.

    Args:
        cfg: the run config (``pretrain.finetune``, ``models.backbone``, ``dataset`` root, ``seed``).
        out: this stage's output folder.
        images: a generate output for the fine-tuning dataset's classes (the synthetic row).
        real_per_class: M, real training images per class (a real column).
        progress: unused; kept for the stage signature.

    Raises:
        UsageError: neither or both of ``images`` and ``real_per_class``, or M below 1.
        MissingDataError: the images or the dataset are missing.
    """
    if (images is None) == (real_per_class is None):
        raise UsageError("train from scratch on either generated images or real_per_class real images, not both")
    if real_per_class is not None and real_per_class < 1:
        raise UsageError(f"real_per_class must be >= 1, got {real_per_class}")
    if images is not None:
        classes = len(read_manifest(images, "generate")["per_class"])
        wanted = datasets.info(downstream(cfg).dataset).num_classes
        if classes != wanted:
            raise UsageError(
                f"the images in {images} have {classes} classes, {cfg.pretrain.finetune.dataset} has {wanted}; "
                "generate them with pretrain.label_space or dataset.name set to the fine-tuning dataset "
                "and pretrain.classes null"
            )
        return fit(downstream(cfg), out=out, init="scratch", images=images)
    return fit(downstream(cfg), out=out, init="scratch", real_per_class=str(real_per_class))


def synthetic(cfg: ExperimentConfig, *, images: str, out: str, progress: bool = True) -> FinetuneResult:
    """The stage table's scratch: Table 4's synthetic row, from random weights on a generate output.

    The real columns (M images per class, ``pretrain.finetune.real_per_class``) are the
    ``scratch_real`` row (:mod:`synk8s.stages.pretraining.scratch_real`), which calls :func:`run` with each M.
    """
    return run(cfg, out=out, images=images, progress=progress)


STAGE = StageSpec(
    name="scratch",
    run=synthetic,
    help="Train from random weights on the generated images of the fine-tuning classes (Table 4); top-1.",
    inputs={"images": "generate"},
    depends=FIELDS,
    shm=True,  # torchrun in the task (no TrainJob) loads on DataLoader workers
    resources=Resources("500m", "1", "1Gi", "2Gi"),  # the task launches the TrainJob (or torchrun); nodes train
    outputs={METRICS_FILE: None, CURVE_FILE: None},
)
