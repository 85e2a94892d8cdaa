"""What every benchmark script shares: best-of-N timing and the facts its result line records."""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def best_of(fn: Callable[[], None], repeats: int) -> float:
    """Fastest wall-clock seconds of ``repeats`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def commit() -> str | None:
    """Short git commit of this checkout, or None outside a git checkout."""
    try:
        command = ["git", "rev-parse", "--short", "HEAD"]
        done = subprocess.run(command, cwd=Path(__file__).parent, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def environment() -> dict[str, str | None]:
    """torch and Python versions and the commit, for the result line."""
    import torch

    return {"torch": torch.__version__, "python": platform.python_version(), "commit": commit()}
