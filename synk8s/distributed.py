"""PyTorch DDP for the training stages: process groups, rank-0 writes, and torchrun launches.

A training stage puts its loop in a plain function ``train(cfg, **uris)`` and runs it through
:func:`call`. With one process the function runs here, in a one-process gloo/nccl group (DDP code
paths stay the same); with more, ``torchrun`` starts them (``--standalone``: one machine, a free
port, gloo on CPU, nccl on CUDA). Under a Kubeflow Trainer TrainJob the pod's command is
:func:`torchrun_command` and the runtime's ``PET_*`` variables give torchrun the nodes and ranks.

    distributed.call("synk8s.stages.pretraining.pretrain:train", cfg, nproc=2, images="runs/r/images", out="runs/r/pretrain")

Inside ``train``::

    with distributed.session(device) as ctx:   # RANK / WORLD_SIZE / LOCAL_RANK from torchrun, or one process
        ...
        if ctx.is_main:                        # only rank 0 writes to the store
            storage.put_json(...)

Code that may also run without a process group (the detect stage's ``run`` works in a plain process)
reads its place with :func:`current`: the same :class:`Context`, rank 0 of 1 when there is no group.

The worker entry point is ``python -m synk8s.distributed MODULE:FUNCTION --config URI [--kw NAME=URI ...]``;
the config travels as a JSON file (a local path or a store URI). A :class:`~synk8s.errors.Synk8sError` in a
worker is printed as one marked line and raised again, with its class and message, by the launching process,
which shows no torchrun traceback for it: ``synk8s stage pretrain`` ends with that one line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synk8s import errors, storage
from synk8s.config import ExperimentConfig
from synk8s.resolve import read_resolved

log = logging.getLogger(__name__)

ERROR_MARK = "synk8s-error:"  # a worker's one-line error, read back by the launcher
TAIL_LINES = 40  # lines of a failed launch's output kept for the error message


@dataclass(frozen=True)
class Context:
    """This process's place in the run: the one description every training stage uses.

    Attributes:
        rank: global rank in ``[0, world_size)``.
        world_size: processes in the group (1 without one).
        local_rank: rank on this machine (the CUDA device index).
        device: ``cpu`` or ``cuda:<local_rank>``.
        backend: ``gloo`` or ``nccl`` inside a process group; None for a process alone (no group).
    """

    rank: int
    world_size: int
    local_rank: int
    device: str
    backend: str | None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes outputs."""
        return self.rank == 0

    @property
    def in_group(self) -> bool:
        """True inside an initialised process group (collectives and DDP apply)."""
        return self.backend is not None

    @property
    def cuda(self) -> bool:
        """True when this process computes on a GPU."""
        return self.device.startswith("cuda")


def under_torchrun() -> bool:
    """True when torchrun (or a TrainJob runtime) started this process: RANK and WORLD_SIZE are set."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def current(device: str) -> Context:
    """This process as it stands: its place in the default process group, or rank 0 of 1 without one.

    Args:
        device: ``cpu`` or ``cuda``; a CUDA process takes GPU ``LOCAL_RANK``.
    """
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    device = f"cuda:{local_rank}" if cuda else "cpu"
    if not (dist.is_available() and dist.is_initialized()):
        return Context(0, 1, local_rank, device, None)
    return Context(dist.get_rank(), dist.get_world_size(), local_rank, device, "nccl" if cuda else "gloo")


def init(device: str) -> Context:
    """Join the default process group: torchrun's (env://), or a new one-process group.

    Args:
        device: ``cpu`` or ``cuda``; CUDA processes take GPU ``LOCAL_RANK`` and the nccl backend.

    Returns:
        This process's context.
    """
    import torch
    import torch.distributed as dist

    backend = "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    if not dist.is_initialized():
        if under_torchrun():
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return current(device)


def cleanup() -> None:
    """Leave the default process group, if this process is in one."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device: str) -> Iterator[Context]:
    """:func:`init` on entry, :func:`cleanup` on exit (also after an error)."""
    try:
        yield init(device)
    finally:
        cleanup()


def barrier() -> None:
    """Wait until every rank gets here."""
    import torch.distributed as dist

    dist.barrier()


def resolve(target: str) -> Any:
    """The function named ``module:function``.

    Raises:
        UsageError: ``target`` is not of that form or names nothing.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise errors.UsageError(f"a training target is written module:function, got {target!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        raise errors.UsageError(f"no function {attr!r} in module {module_name!r} (target {target!r})") from None


def worker_args(target: str, config_uri: str, kwargs: dict[str, str]) -> list[str]:
    """Arguments of the worker module after ``-m synk8s.distributed``."""
    args = [target, "--config", config_uri]
    for name, value in sorted(kwargs.items()):
        args += ["--kw", f"{name}={value}"]
    return args


def torchrun_command(
    target: str, config_uri: str, kwargs: dict[str, str], *, nproc: int | None = None, python: str = "python"
) -> list[str]:
    """The torchrun command line that runs ``target`` on every process.

    Args:
        target: ``module:function`` taking ``(cfg, **kwargs)``.
        config_uri: the run config as JSON (local path or store URI).
        kwargs: keyword arguments (URIs) for the function.
        nproc: processes on this machine with ``--standalone``; None leaves the topology to the
            environment (a TrainJob's torch runtime sets ``PET_NNODES``, ``PET_NPROC_PER_NODE``, ...).
        python: the interpreter.
    """
    command = [python, "-m", "torch.distributed.run"]
    if nproc is not None:
        command += ["--standalone", "--nproc_per_node", str(nproc)]
    return [*command, "-m", "synk8s.distributed", *worker_args(target, config_uri, kwargs)]


def launch(target: str, cfg: ExperimentConfig, *, nproc: int, env: dict[str, str] | None = None, **kwargs: str) -> None:
    """Run ``target(cfg, **kwargs)`` on ``nproc`` local processes under torchrun and wait.

    The workers' output streams through to this process's stderr as it comes, until a worker
    reports a synk8s error: that error is raised here, so it and what follows (torchrun's
    traceback of the failed workers) go to the debug log only (``synk8s -v`` shows them).

    Args:
        target: ``module:function``.
        cfg: the run config, passed to the workers as a JSON file.
        nproc: processes to start (>= 1).
        env: extra environment variables for the workers.
        **kwargs: keyword arguments (URIs) for the function.

    Raises:
        Synk8sError: a worker failed: the worker's own one-line error when it raised one (same class),
            else the exit code and the last line of the output.
    """
    if nproc < 1:
        raise errors.UsageError(f"nproc must be >= 1, got {nproc}")
    with tempfile.TemporaryDirectory(prefix="synk8s-launch-") as folder:
        config_path = Path(folder) / "config.json"
        config_path.write_text(cfg.model_dump_json(), encoding="utf-8")
        command = torchrun_command(target, str(config_path), kwargs, nproc=nproc, python=sys.executable)
        log.info("launching %d processes: %s", nproc, " ".join(command))
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        marked: list[str] = []
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            if ERROR_MARK in line:
                marked.append(line)
            if marked:  # raised below with its class and message: the rest is torchrun's report of it
                log.debug("%s", line)
            else:
                sys.stderr.write(line + "\n")
        code = process.wait()
    if code != 0:
        raise launch_error(target, code, [*marked, *tail])


def launch_error(target: str, code: int, lines: Sequence[str]) -> errors.Synk8sError:
    """The error a failed launch raises, from the output's lines.

    The first worker error marked with :data:`ERROR_MARK` comes back as its own class and message;
    otherwise the last Python exception line (``...Error: ...``), else the last line with words.
    """
    for line in lines:
        if ERROR_MARK in line:
            kind, _, message = line.split(ERROR_MARK)[1].strip().partition(" ")  # up to another worker's mark
            cls = getattr(errors, kind, errors.Synk8sError)
            return (
                cls(message)
                if isinstance(cls, type) and issubclass(cls, errors.Synk8sError)
                else errors.Synk8sError(message)
            )
    worded = [line.strip() for line in lines if any(c.isalpha() for c in line)]
    exceptions = [line for line in worded if re.match(r"^[\w.]+(Error|Exception): ", line)]
    last = (exceptions or worded or ["no output"])[-1]
    return errors.Synk8sError(f"{target} failed under torchrun with exit code {code}: {last}")


def call(target: str, cfg: ExperimentConfig, *, nproc: int, env: dict[str, str] | None = None, **kwargs: str) -> None:
    """Run ``target(cfg, **kwargs)`` in DDP: here when ``nproc`` is 1 or torchrun already runs us, else launched.

    Args:
        target: ``module:function``.
        cfg: the run config.
        nproc: processes on this machine.
        env: extra environment variables (launched processes only).
        **kwargs: keyword arguments (URIs) for the function.
    """
    if nproc == 1 or under_torchrun():
        resolve(target)(cfg, **kwargs)
        return
    launch(target, cfg, nproc=nproc, env=env, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """Worker entry point: ``python -m synk8s.distributed MODULE:FUNCTION --config URI [--kw NAME=VALUE ...]``."""
    parser = argparse.ArgumentParser(prog="python -m synk8s.distributed", description=main.__doc__)
    parser.add_argument("target", help="module:function taking (cfg, **kwargs)")
    parser.add_argument("--config", required=True, help="the run config as JSON: a local path or store URI")
    parser.add_argument("--kw", action="append", default=[], help="NAME=VALUE keyword argument; repeatable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[rank {os.environ.get('RANK', '0')}] %(levelname)s %(message)s")
    try:
        kwargs = {}
        for item in args.kw:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise errors.UsageError(f"--kw takes NAME=VALUE, got {item!r}")
            kwargs[name] = value
        cfg = read_resolved(storage.get_bytes(args.config))  # written by the launching stage from its checked config
        resolve(args.target)(cfg, **kwargs)
    except errors.Synk8sError as error:
        _write_line(f"{ERROR_MARK} {type(error).__name__} {error}"[:3000])
        return error.exit_code
    return 0


def _write_line(text: str) -> None:
    """Write ``text`` and its newline to stderr in one call.

    The workers share the launcher's pipe: a line written in one call below the pipe's atomic size
    (4 KiB) is never interleaved with another worker's. A stderr without a file descriptor (a test's
    capture) gets an ordinary print.
    """
    sys.stderr.flush()
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        print(text, file=sys.stderr, flush=True)
        return
    os.write(fd, (text + "\n").encode())


if __name__ == "__main__":
    sys.exit(main())
