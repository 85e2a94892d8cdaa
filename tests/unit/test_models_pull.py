"""``synk8s models pull`` fills a model cache that runs read back (tiny models: offline)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from synk8s.cli.main import app
from synk8s.models import load_clip, load_generator, load_le

pytestmark = pytest.mark.timeout(120)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_pulled_tiny_models_are_read_back_from_the_cache(tmp_path):
    cache = str(tmp_path / "models")
    result = CliRunner().invoke(app, ["models", "pull", "tiny-sd", "tiny-clip", "tiny-t5", "--cache", cache,
                                      "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / "synk8s--tiny-sd" / "model_index.json").is_file()
    assert (tmp_path / "models" / "open_clip" / "tiny-vit-random.pt").is_file()
    assert (tmp_path / "models" / "synk8s--tiny-t5" / "config.json").is_file()

    listed = CliRunner().invoke(app, ["models", "list", "--cache", cache, "--output", "json"])
    cached = {row["name"]: row["cached"] for row in json.loads(listed.stdout)["models"]}
    assert cached["tiny-sd"] and cached["tiny-clip"] and cached["tiny-t5"] and not cached["sd15"]

    # A run with models.cache gets the pulled weights (seed 7), not those its own seed (0) would build.
    pipe = load_generator("tiny-sd", cache=cache, seed=0)
    assert _same(pipe.unet, load_generator("tiny-sd", seed=7).unet)
    assert not _same(pipe.unet, load_generator("tiny-sd", seed=0).unet)
    clip = load_clip("tiny-clip", cache=cache, seed=0)
    assert _same(clip.model, load_clip("tiny-clip", seed=7).model) and "cache" in clip.identity
    model, tokenizer = load_le("tiny-t5", cache=cache, seed=0)
    assert _same(model, load_le("tiny-t5", seed=7)[0])
    assert tokenizer("a dog").input_ids == load_le("tiny-t5", seed=7)[1]("a dog").input_ids


def test_an_unknown_model_is_refused_before_anything_is_written(tmp_path):
    result = CliRunner().invoke(app, ["models", "pull", "tiny-sd", "no-such-model", "--cache", str(tmp_path / "m")])
    assert result.exit_code == 2 and "unknown model 'no-such-model'" in result.output
    assert not (tmp_path / "m").exists()
