"""Table 4's real columns as a row of the stage table: from random weights on M real images per class.

The synthetic row is the ``scratch`` row (500 generated images per class in the paper). The real
columns train the same network with the same recipe (``pretrain.finetune``) on M real training
images per class, for every M of ``pretrain.finetune.real_per_class``, each into its own
sub-folder ``real-<M>/`` (the files of :func:`synk8s.stages.pretraining.scratch.run`, with per-epoch
checkpoints). As a row it resumes like every stage (a complete folder is not run again, see
:mod:`synk8s.stagetable.resume`) and leaves a cost record; inside the row, a column that stopped
part-way resumes from its last epoch.

    synk8s stage scratch_real --profile tiny --set pretrain.label_space=cifar100

Outputs in ``out``: ``columns.json`` (``{"dataset", "top1": {M: top-1}, "paper": {M: the paper's
top-1 in percent}}``), ``real-<M>/`` per column, and ``manifest.json``.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

from synk8s import storage
from synk8s.config import ExperimentConfig
from synk8s.runs import write_manifest
from synk8s.stages.pretraining import scratch
from synk8s.stages.pretraining.finetune import FIELDS
from synk8s.stagetable.spec import Resources, StageSpec

COLUMNS_FILE = "columns.json"
#: Table 4 of the paper: CIFAR-100 top-1 (percent) from scratch on M real images per class.
PAPER_TOP1 = {1: 2.48, 16: 10.4, 32: 14.95, 64: 21.96, 80: 24.4, 90: 25.52, 95: 27.99, 100: 29.95}


class RealColumnsResult(BaseModel):
    """What the real columns wrote.

    Attributes:
        top1: M (as a string) -> test top-1 in [0, 1] after training on M real images per class.
        columns: URI of ``columns.json``.
        manifest: URI of ``manifest.json``.
        seconds: wall time of the call, every column included.
    """

    model_config = ConfigDict(frozen=True)

    top1: dict[str, float]
    columns: str
    manifest: str
    seconds: float


def column_folder(out: str, per_class: int) -> str:
    """The sub-folder of the column trained on ``per_class`` real images per class."""
    return storage.join(out, f"real-{per_class}")


def run(cfg: ExperimentConfig, *, out: str, progress: bool = True) -> RealColumnsResult:
    """Train from scratch on M real images per class for every M of ``pretrain.finetune.real_per_class``.

    Args:
        cfg: the run config (``pretrain.finetune``, ``models.backbone``, ``dataset`` root, ``seed``).
        out: this stage's output folder.
        progress: unused; kept for the stage signature.

    Raises:
        UsageError: an M below 1.
        MissingDataError: the fine-tuning dataset is missing.
    """
    start = time.perf_counter()
    top1 = {}
    for per_class in cfg.pretrain.finetune.real_per_class:
        result = scratch.run(cfg, out=column_folder(out, per_class), real_per_class=per_class)
        top1[str(per_class)] = result.top1
    columns_uri = storage.join(out, COLUMNS_FILE)
    paper = {str(m): PAPER_TOP1[m] for m in cfg.pretrain.finetune.real_per_class if m in PAPER_TOP1}
    storage.put_json(columns_uri, {"dataset": cfg.pretrain.finetune.dataset, "top1": top1, "paper": paper})
    seconds = time.perf_counter() - start
    manifest_uri = write_manifest(
        out,
        "scratch_real",
        cfg,
        counts={"columns": len(top1)},
        outputs={"columns": COLUMNS_FILE},
        seconds=round(seconds, 3),
    )
    return RealColumnsResult(top1=top1, columns=columns_uri, manifest=manifest_uri, seconds=seconds)


STAGE = StageSpec(
    name="scratch_real",
    run=run,
    help="Train from random weights on M real images per class, every M of pretrain.finetune.real_per_class "
    "(Table 4's real columns); top-1 of each.",
    depends=FIELDS,
    folder="scratch-real",
    shm=True,  # torchrun in the task (no TrainJob) loads on DataLoader workers
    resources=Resources("500m", "1", "1Gi", "2Gi"),  # the task launches the TrainJobs (or torchrun); nodes train
    outputs={COLUMNS_FILE: None},
)
