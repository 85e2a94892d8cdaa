"""MoCo v2: momentum contrast with an MLP head (He et al. 2020, "Momentum Contrast for Unsupervised
Visual Representation Learning"; Chen et al. 2020, "Improved Baselines with Momentum Contrastive Learning").

The method as facebookresearch/moco describes it: a query encoder and a key encoder (its exponential moving
average, momentum m), both a ResNet trunk whose ``fc`` is a 2-layer MLP head; a queue of K L2-normalised
keys from past batches serves as negatives; the loss is cross-entropy over ``(1 + K)`` logits divided by
T, the positive in column 0. Keys are computed with the batch shuffled across processes ("shuffle BN"),
so BatchNorm statistics cannot reveal which key matches which query. On one process that shuffle alone
changes nothing (BN of the whole batch does not depend on its order), so there both encoders use
:class:`SplitBatchNorm`, as MoCo's single-GPU CIFAR demo does: in training, BN statistics come from
``bn_splits`` sub-batches, like per-GPU BN on that many GPUs, and the shuffled key batch puts a key in
another sub-batch than its query (except where the draw puts it back in the same one, as a cross-GPU
shuffle does with one key in ``bn_splits``). Also the weighted kNN monitor used by the InstDisc and MoCo
CIFAR demos.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from synk8s.seeds import derive_seed


def mlp_head(in_features: int, hidden_dim: int, dim: int) -> nn.Sequential:
    """MoCo v2's projection head: Linear(in, hidden), ReLU, Linear(hidden, dim)."""
    return nn.Sequential(nn.Linear(in_features, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, dim))


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics come from ``num_splits`` sub-batches; plain BN in eval mode.

    Sample ``i`` of a batch belongs to sub-batch ``i % num_splits``: the batch (N, C, H, W) is viewed as
    (N / s, C x s, H, W) and normalised by BN over C x s channels with the weight and bias repeated s
    times. The running mean and variance take the mean of the s sub-batches' updates. Parameters and
    buffers are those of ``nn.BatchNorm2d``, so state dicts load either way.

    Args:
        num_features: channels C.
        num_splits: sub-batches s; a training batch must be a multiple of it. 1 gives plain BN.
        **kwargs: ``eps``, ``momentum``, ``affine``, ``track_running_stats`` as for ``nn.BatchNorm2d``.
    """

    def __init__(self, num_features: int, num_splits: int, **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        if num_splits < 1:
            raise ValueError(f"num_splits must be at least 1, got {num_splits}")
        self.num_splits = num_splits

    def _average_factor(self) -> float:
        """The running statistics' update weight of this training step (counts the step, as BN does)."""
        if not self.track_running_stats:
            return 0.0
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W): by sub-batch statistics in training, by running ones in eval."""
        if not self.training:
            return super().forward(x)
        n, c, h, w = x.shape
        s = self.num_splits
        if n % s:
            raise ValueError(f"a batch of {n} does not split into {s} sub-batches for split-batch BN")
        factor = self._average_factor()
        mean = var = None
        if self.running_mean is not None:
            mean, var = self.running_mean.repeat(s), self.running_var.repeat(s)  # (C x s,)
        weight = self.weight.repeat(s) if self.weight is not None else None
        bias = self.bias.repeat(s) if self.bias is not None else None
        out = F.batch_norm(x.reshape(n // s, c * s, h, w), mean, var, weight, bias, True, factor, self.eps)
        if mean is not None:
            with torch.no_grad():
                self.running_mean.copy_(mean.view(s, c).mean(dim=0))
                self.running_var.copy_(var.view(s, c).mean(dim=0))
        return out.view(n, c, h, w)


def split_batch_norm(module: nn.Module, num_splits: int) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a :class:`SplitBatchNorm` with the same state.

    Returns:
        ``module`` itself (its children are replaced in place).
    """
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SplitBatchNorm):
            ref = child.weight if child.affine else child.running_mean
            split = SplitBatchNorm(
                child.num_features,
                num_splits,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
                device=None if ref is None else ref.device,
                dtype=None if ref is None else ref.dtype,
            )
            split.load_state_dict(child.state_dict())
            split.train(child.training)
            setattr(module, name, split)
        else:
            split_batch_norm(child, num_splits)
    return module


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from every rank in rank order: (world x B, ...). No gradient."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


class MoCo(nn.Module):
    """Query encoder, momentum key encoder and key queue.

    Args:
        trunk: a backbone with a linear ``fc`` (e.g. from :func:`synk8s.models.build_backbone`); its ``fc``
            becomes the MLP head. The key encoder starts as a copy.
        dim: output width of the head, the key dimension (128).
        hidden_dim: hidden width of the head (2048).
        queue: keys in the queue, K (65536); a multiple of the global batch.
        momentum: key encoder momentum m (0.999).
        temperature: softmax temperature T (0.2 in MoCo v2).
        seed: seeds the random initial queue and the per-step shuffles.
        bn_splits: sub-batches of both encoders' BN in training (:class:`SplitBatchNorm`), shuffle BN's
            stand-in on one process; 1 (the default) keeps plain BN, as under DDP with several processes.
    """

    def __init__(
        self,
        trunk: nn.Module,
        *,
        dim: int,
        hidden_dim: int,
        queue: int,
        momentum: float,
        temperature: float,
        seed: int,
        bn_splits: int = 1,
    ) -> None:
        super().__init__()
        self.momentum = momentum
        self.temperature = temperature
        self.seed = seed
        trunk.fc = mlp_head(trunk.fc.in_features, hidden_dim, dim)
        if bn_splits > 1:
            split_batch_norm(trunk, bn_splits)
        self.encoder_q = trunk
        self.encoder_k = copy.deepcopy(trunk)
        for param in self.encoder_k.parameters():
            param.requires_grad = False
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue, generator=g), dim=0))  # (dim, K)
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("steps", torch.zeros(1, dtype=torch.long))  # key batches seen: seeds the shuffles

    def copy_query_to_key(self) -> None:
        """Make the key encoder equal the query encoder (after loading start weights into the query)."""
        self.encoder_k.load_state_dict(self.encoder_q.state_dict())

    @torch.no_grad()
    def _momentum_update(self) -> None:
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
            param_k.mul_(self.momentum).add_(param_q.detach(), alpha=1.0 - self.momentum)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest keys with ``keys`` (N_global, dim), gathered from every rank."""
        count = keys.shape[0]
        size = self.queue.shape[1]
        if size % count:
            raise ValueError(f"the queue size {size} must be a multiple of the global batch {count}")
        ptr = int(self.queue_ptr)
        self.queue[:, ptr : ptr + count] = keys.T
        self.queue_ptr[0] = (ptr + count) % size

    @torch.no_grad()
    def _keys(self, im_k: torch.Tensor) -> torch.Tensor:
        """Normalised keys (B, dim) of this rank's images, encoded with the batch shuffled across ranks.

        On one process the shuffle stays within the batch: it matters through :class:`SplitBatchNorm`.
        """
        local = im_k.shape[0]
        everything = gather(im_k)  # (world x B, 3, H, W)
        g = torch.Generator().manual_seed(derive_seed(self.seed, "shuffle", int(self.steps)))
        order = torch.randperm(everything.shape[0], generator=g).to(im_k.device)  # same on every rank
        rank = dist.get_rank()
        mine = order[rank * local : (rank + 1) * local]
        keys = F.normalize(self.encoder_k(everything[mine]), dim=1)  # (B, dim), shuffled rows
        all_keys = gather(keys)  # (world x B, dim) in shuffled order
        restored = torch.empty_like(all_keys)
        restored[order] = all_keys
        return restored[rank * local : (rank + 1) * local]

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """InfoNCE logits and targets for a batch of query and key views.

        Args:
            im_q: (B, 3, H, W) query views.
            im_k: (B, 3, H, W) key views of the same images.

        Returns:
            logits (B, 1 + K) divided by T, positive first; targets (B,) all zero.
        """
        q = F.normalize(self.encoder_q(im_q), dim=1)  # (B, dim)
        with torch.no_grad():
            self._momentum_update()
            k = self._keys(im_k)  # (B, dim)
            self.steps += 1
        positive = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
        negative = q @ self.queue.clone().detach()  # (B, K)
        logits = torch.cat([positive, negative], dim=1) / self.temperature  # (B, 1 + K)
        self._enqueue(gather(k))
        return logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)


def knn_top1(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    *,
    num_classes: int,
    k: int,
    temperature: float,
) -> float:
    """Top-1 of a weighted kNN classifier (each of the k nearest bank features votes exp(cos / T) for its class).

    Args:
        bank: (N, D) features of labelled images.
        bank_labels: (N,) their classes.
        queries: (M, D) features to classify.
        query_labels: (M,) their true classes.
        num_classes: number of classes.
        k: neighbours (capped at N).
        temperature: vote temperature.

    Returns:
        Fraction of queries classified correctly, in [0, 1].
    """
    bank = F.normalize(bank, dim=1)
    queries = F.normalize(queries, dim=1)
    sims, index = (queries @ bank.T).topk(min(k, bank.shape[0]), dim=1)  # (M, k)
    votes = torch.zeros(queries.shape[0], num_classes, dtype=sims.dtype)
    votes.scatter_add_(1, bank_labels[index], (sims / temperature).exp())  # (M, num_classes)
    return float((votes.argmax(dim=1) == query_labels).float().mean())
