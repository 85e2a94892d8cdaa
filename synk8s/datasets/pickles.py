"""Read the Python pickles of CIFAR batches without running code the file names.

A pickle can call any importable function while it loads, and ``dataset.root`` may be a shared
bucket, so :func:`load_restricted` resolves only the globals a CIFAR batch needs: numpy's array,
dtype and scalar reconstruction, and ``_codecs.encode`` for Latin-1 text (how protocol-2 pickles
store bytes). Any other global makes it raise :class:`pickle.UnpicklingError`.
"""

from __future__ import annotations

import functools
import pickle
from typing import IO, Any

import numpy as np


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, limited to Latin-1."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"text encoded as {encoding!r}, not Latin-1")
    return text.encode("latin1")


@functools.cache
def _allowed() -> dict[tuple[str, str], Any]:
    """(module, name) -> object for every global a CIFAR batch pickle may name."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core to numpy._core
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1,
    }
    for module in ("numpy.core", "numpy._core"):  # pickles name the module of the numpy that wrote them
        allowed[(f"{module}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = core.multiarray.scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = core.numeric._frombuffer
    return allowed


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _allowed().get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never does")
        return found


def load_restricted(f: IO[bytes]) -> Any:
    """Unpickle a CIFAR batch or meta file (Latin-1 for Python 2 strings), refusing foreign globals.

    Args:
        f: the open file, in binary mode.

    Raises:
        pickle.UnpicklingError: the pickle names a global outside the allowed set, or is malformed.
        EOFError: the file ends early.
    """
    return _BatchUnpickler(f, encoding="latin1").load()
