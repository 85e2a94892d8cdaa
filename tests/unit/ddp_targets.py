"""Training targets the DDP tests launch under torchrun (imported by the worker processes by name)."""

import torch
from torch import nn

from synk8s import distributed, storage
from synk8s.training import train_step

BATCH = 8  # images per step over all processes


def model_without_batch_statistics() -> nn.Module:
    """A small conv net with no BatchNorm, so a batch split over processes trains like the whole batch."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)
    )


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(BATCH, 1, 3, 16, 16) views and (BATCH,) labels, the same in every process."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 1, 3, 16, 16, generator=g), torch.randint(0, 5, (BATCH,), generator=g)


def one_step(cfg, *, out: str) -> None:
    """One SGD step under DDP on this rank's share of :func:`fixed_batch`; rank 0 saves the weights."""
    from safetensors.torch import save
    from torch.nn.parallel import DistributedDataParallel

    with distributed.session("cpu") as ctx:
        model = model_without_batch_statistics()
        ddp = DistributedDataParallel(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        views, labels = fixed_batch()
        share = BATCH // ctx.world_size
        mine = slice(ctx.rank * share, (ctx.rank + 1) * share)
        train_step(ddp, optimizer, views[mine], labels[mine], moco=False, device="cpu")
        if ctx.is_main:
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            storage.put_bytes(
                storage.join(out, "weights.safetensors"), save(state, metadata={"world_size": str(ctx.world_size)})
            )
        distributed.barrier()


def refuse(cfg, *, out: str) -> None:
    """Fail the way a stage does on bad input."""
    from synk8s.errors import UsageError

    raise UsageError(f"pretrain.batch_size is too large for {out}")
