"""The pre-training monitor: held-out synthetic images, scored after every epoch.

The monitor images (see :mod:`synk8s.stream`) are split into a kNN *bank* and *queries* by a seeded key
hash. After each epoch, rank 0 encodes them with the trunk (pooled features, evaluation preprocessing) and
records the top-1 of a weighted kNN (:func:`synk8s.models.moco.knn_top1`) and, for supervised training,
the top-1 of the model's own head on the queries. Before the first epoch it scores the untrained trunk
with batch-norm statistics estimated on the bank (:func:`untrained_baseline`): the random-backbone
baseline that training must beat.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from synk8s import augment, shards, stream
from synk8s.models.moco import knn_top1
from synk8s.training import pooled

BATCH = 256  # images per forward pass when encoding the monitor set


@dataclass(frozen=True)
class MonitorSet:
    """Held-out images at evaluation resolution.

    Attributes:
        images: (N, 3, R, R) uint8.
        labels: (N,) int64 classes.
        bank: (N,) bool, True for the kNN bank, False for the queries.
    """

    images: torch.Tensor
    labels: torch.Tensor
    bank: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def load_monitor(
    tars: Sequence[shards.TarRecord],
    monitor: frozenset[shards.TarRecord],
    *,
    seed: int,
    fraction: float,
    resolution: int,
) -> MonitorSet:
    """Read and preprocess the held-out samples of the monitor tars."""
    prepare = augment.evaluation_uint8(resolution)
    images, labels, bank = [], [], []
    for sample in stream.held_out(tars, monitor, seed, fraction):
        images.append(prepare(shards.decode_image(sample.image)))
        labels.append(sample.label)
        bank.append(stream.monitor_role(sample.key, seed) == "bank")
    if not images:
        empty = torch.zeros(0, 3, resolution, resolution, dtype=torch.uint8)
        return MonitorSet(empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool))
    return MonitorSet(torch.stack(images), torch.tensor(labels), torch.tensor(bank))


@torch.no_grad()
def evaluate(
    trunk: nn.Module, data: MonitorSet, *, num_classes: int, k: int, temperature: float, head: bool, device: str
) -> dict[str, float | None]:
    """Monitor scores of ``trunk``: ``knn_top1`` and, with ``head``, ``top1`` of its own classifier.

    Args:
        trunk: a ResNet (its ``avgpool`` output is the feature); left in the mode it was in.
        data: the monitor images.
        num_classes: classes of the labels.
        k: kNN neighbours.
        temperature: kNN vote temperature.
        head: also score the model's output as class logits.
        device: where to run.

    Returns:
        ``{"knn_top1": ..., "top1": ...}``; a score is None when its images are missing.
    """
    was_training = trunk.training
    trunk.eval()
    features, logits = [], []
    with pooled(trunk) as captured:
        for start in range(0, len(data), BATCH):
            batch = augment.normalize(data.images[start : start + BATCH].to(device))  # (B, 3, R, R)
            logits.append(trunk(batch).float().cpu())
        features = [f.float().cpu() for f in captured]
    trunk.train(was_training)
    scores: dict[str, float | None] = {"knn_top1": None, "top1": None}
    queries = ~data.bank
    if not len(data) or not data.bank.any() or not queries.any():
        return scores
    feats = torch.cat(features)  # (N, D)
    scores["knn_top1"] = knn_top1(
        feats[data.bank],
        data.labels[data.bank],
        feats[queries],
        data.labels[queries],
        num_classes=num_classes,
        k=k,
        temperature=temperature,
    )
    if head:
        predicted = torch.cat(logits).argmax(dim=1)  # (N,)
        scores["top1"] = float((predicted[queries] == data.labels[queries]).float().mean())
    return scores


@torch.no_grad()
def untrained_baseline(
    trunk: nn.Module, data: MonitorSet, *, num_classes: int, k: int, temperature: float, head: bool, device: str
) -> dict[str, float | None]:
    """:func:`evaluate` on a copy of ``trunk`` whose batch-norm statistics are estimated on the bank images.

    A freshly built network's running statistics (mean 0, variance 1) describe no data, and any
    training, even at a zero learning rate, replaces them; so the baseline a trained trunk is compared
    with is the same random weights with statistics of the data (a cumulative average over the bank,
    in batches of :data:`BATCH`). ``trunk`` itself is not changed. Arguments as :func:`evaluate`.
    """
    probe = copy.deepcopy(trunk)
    for module in probe.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over every batch
            if hasattr(module, "num_splits"):  # MoCo's split-batch BN: statistics of whole batches here
                module.num_splits = 1
    probe.train()
    bank = data.images[data.bank]
    for start in range(0, len(bank), BATCH):
        probe(augment.normalize(bank[start : start + BATCH].to(device)))
    return evaluate(probe, data, num_classes=num_classes, k=k, temperature=temperature, head=head, device=device)
