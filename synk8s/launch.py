"""Where a training stage's DDP processes run: here, under torchrun, or as a Kubeflow Trainer TrainJob.

The training stages (pretrain, finetune, scratch, detect) hand their loop, a ``module:function``
target, to :func:`train`:

* in a Kubeflow Pipelines task pod on a cluster (``KFP_POD_NAME`` and ``KUBERNETES_SERVICE_HOST``
  set), the task only launches: :func:`synk8s.trainjob.submit` creates a TrainJob on
  ``pretrain.nodes`` x ``pretrain.gpus_per_node`` GPUs, logs its status as it changes, fails with its
  reason and deletes it; the task itself needs a fraction of a CPU;
* anywhere else (a shell, ``synk8s stage``, ``submit --local`` through kfp.local) the loop runs in
  this process with ``pretrain.nproc=1``, or on ``pretrain.nproc`` local processes under torchrun
  (:func:`synk8s.distributed.call`).

    launch.train(cfg, stage="pretrain", target="synk8s.stages.pretraining.pretrain:train", out=out, images=images)
"""

from __future__ import annotations

import logging
import os

from synk8s import distributed, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import UsageError

log = logging.getLogger(__name__)

POD_ENV = "KFP_POD_NAME"  # set by the KFP backend in every task pod
CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"  # set by Kubernetes in every pod


def in_pipeline_pod() -> bool:
    """True inside a Kubeflow Pipelines task pod on a cluster (not under kfp.local)."""
    return bool(os.environ.get(POD_ENV)) and bool(os.environ.get(CLUSTER_ENV))


def train(cfg: ExperimentConfig, *, stage: str, target: str, out: str, **kwargs: str) -> None:
    """Run ``target(cfg, out=out, **kwargs)`` in DDP where this process is (see the module docstring).

    Args:
        cfg: the run config (``pretrain.nproc`` locally; ``pretrain.nodes``, ``pretrain.gpus_per_node``
            and ``cluster`` on a cluster).
        stage: the stage's name (names the TrainJob).
        target: ``module:function`` of the training loop.
        out: the stage's output folder.
        **kwargs: the loop's other keyword arguments (folder URIs).

    Raises:
        UsageError: a cluster pod with a local store, which the TrainJob's nodes cannot read.
        Synk8sError: the training failed (a worker's own error, or the TrainJob's reason).
    """
    if not in_pipeline_pod():
        distributed.call(target, cfg, nproc=cfg.pretrain.nproc, out=out, **kwargs)
        return
    if not storage.is_remote(out):
        raise UsageError(f"{stage}: the TrainJob's nodes cannot read the pod's folder {out}; use an s3:// store.root")
    from synk8s import trainjob
    from synk8s.cluster import api_client

    p = cfg.pretrain
    log.info("%s: training as a TrainJob on %d node(s) x %d GPU(s)", stage, p.nodes, p.gpus_per_node)
    trainjob.submit(cfg, api_client(), stage=stage, target=target, out=out, **kwargs)
