"""Preflight: missing weights or data stop a run at once, in one line naming the command that fixes it."""

import pytest

from synk8s import config, preflight
from synk8s.errors import MissingDataError

pytestmark = pytest.mark.timeout(30)

FIELDS = ("dataset", "models.clip", "models.generator", "models.le")


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty hub cache
    preflight.online.cache_clear()
    yield
    preflight.online.cache_clear()


def test_tiny_models_and_stand_in_data_need_nothing():
    preflight.check(config.load("tiny"), FIELDS, local=True)


def test_paper_weights_without_cache_or_hub_name_models_pull():
    with pytest.raises(MissingDataError) as error:
        preflight.check(config.load("paper"), FIELDS, local=True)
    message = str(error.value)
    assert "\n" not in message and "synk8s models pull sd15" in message and "models.cache" in message


def test_a_filled_cache_passes_and_then_the_data_is_checked(tmp_path):
    cache = tmp_path / "cache"
    cfg = config.load("paper", [f"models.cache={cache}", f"dataset.root={tmp_path}/data/{{name}}"])
    for need in preflight.model_needs(cfg, FIELDS):
        (cache / need.entry).parent.mkdir(parents=True, exist_ok=True)
        if need.entry.endswith(".pt"):
            (cache / need.entry).write_bytes(b"weights")
        else:
            (cache / need.entry).mkdir()
            (cache / need.entry / "model_index.json").write_text("{}")
    preflight.check_models(cfg, FIELDS)  # every model found in the cache
    with pytest.raises(MissingDataError, match="synk8s datasets download cifar100"):
        preflight.check(cfg, FIELDS, local=True)
    preflight.check(cfg, FIELDS, local=False)  # a cluster's pods fetch a local root themselves


def test_only_the_models_a_pipeline_reads_are_checked():
    cfg = config.load("paper")
    assert [n.field for n in preflight.model_needs(cfg, ("models.clip",))] == ["models.clip"]
    assert {n.field for n in preflight.model_needs(cfg, ("models",))} == {"models.clip", "models.generator", "models.le"}
