"""benchmarks/gpu_check.py runs end to end on tiny shapes (--smoke), and says so in one line without CUDA."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.timeout(120)

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_measures_every_part_and_prints_one_json_line(capsys):
    result = _gpu_check().main(["--smoke", "--batches", "1", "--repeats", "1"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and json.loads(printed[0]) == result
    assert not [key for key in result if key.endswith("_error")], result
    assert result["smoke"] and result["matmul_bf16_tflops"] > 0
    assert [g["resolution"] for g in result["generation"]] == [32, 16]
    for row in result["generation"]:
        assert row["batch_size"] in (1, 2) and row["images_per_s"] > 0
        assert row["pct_of_989_paper"] == pytest.approx(100 * row["achieved_tflops"] / 989, rel=0.01)
    assert set(result["generation_switches"]["on_over_off"]) == {"channels_last", "attention_plain"}
    assert result["clip_rn50"]["images_per_s"]["bfloat16"] > 0
    assert set(result["loader"]["images_per_s_by_workers"]) == {"0", "1"}
    assert result["loader"]["resnet50_train_images_per_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a CUDA device")
def test_without_cuda_it_prints_one_line_and_returns(capsys):
    result = _gpu_check().main([])
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and json.loads(printed[0]) == result
    assert "no CUDA device" in result["skipped"] and "generation" not in result
