"""DDP through torchrun: a 2-process step equals the 1-process step; worker errors come back as one line."""

import os
from pathlib import Path

import ddp_targets
import pytest
import torch
from safetensors.torch import load_file

from synk8s import config, distributed
from synk8s.errors import MissingDataError, Synk8sError, UsageError

HERE = str(Path(__file__).parent)


def _env() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p), "OMP_NUM_THREADS": "1"}


@pytest.mark.timeout(120)
def test_two_process_ddp_step_equals_one_process_step_on_the_whole_batch(tmp_path):
    cfg = config.load("tiny")
    distributed.call("ddp_targets:one_step", cfg, nproc=1, out=str(tmp_path / "one"))
    distributed.call("ddp_targets:one_step", cfg, nproc=2, env=_env(), out=str(tmp_path / "two"))

    one, two = load_file(tmp_path / "one" / "weights.safetensors"), load_file(tmp_path / "two" / "weights.safetensors")
    start = ddp_targets.model_without_batch_statistics().state_dict()
    assert one.keys() == two.keys() == start.keys()
    assert all(not torch.equal(one[k], start[k]) for k in one)  # the step moved every tensor
    assert all(torch.allclose(one[k], two[k], rtol=0, atol=1e-6) for k in one)


@pytest.mark.timeout(30)
def test_worker_entry_point_marks_errors_and_reads_the_config_from_a_file(tmp_path, capsys):
    cfg = config.load("tiny")
    path = tmp_path / "config.json"
    path.write_text(cfg.model_dump_json())
    assert distributed.main(["ddp_targets:refuse", "--config", str(path), "--kw", "out=x"]) == UsageError.exit_code
    assert (
        capsys.readouterr().err.strip() == f"{distributed.ERROR_MARK} UsageError pretrain.batch_size is too large for x"
    )
    assert distributed.main(["nomodule:nothing", "--config", str(path)]) == UsageError.exit_code
    assert "no function 'nothing'" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_a_worker_error_comes_back_as_one_line_without_torchrun_traceback(tmp_path, capsys):
    with pytest.raises(UsageError) as err:
        distributed.call("ddp_targets:refuse", config.load("tiny"), nproc=2, env=_env(), out="x")
    assert str(err.value) == "pretrain.batch_size is too large for x"
    shown = capsys.readouterr().err
    assert "Traceback" not in shown and "ChildFailedError" not in shown and distributed.ERROR_MARK not in shown


def test_torchrun_command_and_launch_errors():
    command = distributed.torchrun_command("m:f", "s3://b/c.json", {"out": "s3://b/o", "images": "s3://b/i"}, nproc=2)
    assert command == [
        "python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "synk8s.distributed",
        "m:f",
        "--config",
        "s3://b/c.json",
        "--kw",
        "images=s3://b/i",
        "--kw",
        "out=s3://b/o",
    ]
    assert "--standalone" not in distributed.torchrun_command("m:f", "c.json", {})
    error = distributed.launch_error("m:f", 1, ["noise", "RuntimeError: boom", "  traceback : see the docs", "====="])
    assert type(error) is Synk8sError and str(error) == "m:f failed under torchrun with exit code 1: RuntimeError: boom"
    marked = f"[rank 1] {distributed.ERROR_MARK} MissingDataError no images at s3://b/i"
    error = distributed.launch_error("m:f", 1, [marked, "RuntimeError: other"])
    assert type(error) is MissingDataError and str(error) == "no images at s3://b/i"
    mark = distributed.ERROR_MARK
    both = f"{mark} UsageError batch too large{mark} UsageError batch too large"  # two workers' lines run together
    assert str(distributed.launch_error("m:f", 1, [both])) == "batch too large"
    with pytest.raises(UsageError, match="module:function"):
        distributed.resolve("no-colon")
