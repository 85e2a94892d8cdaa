"""Device and dtype choice: full precision on CPU, half precision on CUDA unless told otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synk8s.errors import UsageError

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = ("auto", "float32", "float16", "bfloat16")


def auto_device() -> str:
    """``"cuda"`` when a CUDA device is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str) -> str:
    """The device a config's ``device`` field names: ``auto`` becomes :func:`auto_device`, others stay."""
    return auto_device() if name == "auto" else name


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """Turn a config dtype name into a torch dtype.

    Args:
        name: one of ``auto``, ``float32``, ``float16``, ``bfloat16``. ``auto`` means float16 on a CUDA
            device and float32 elsewhere.
        device: the device the model will run on, e.g. ``cpu``, ``cuda``, ``cuda:1``.

    Raises:
        UsageError: ``name`` is not one of the names above.
    """
    import torch

    if name not in DTYPE_NAMES:
        raise UsageError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPE_NAMES)}")
    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)
