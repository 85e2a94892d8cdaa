"""Profile files that extend a shipped profile, and the stand-in data's own root."""

import pytest
from synk8s.components.params import pipeline_arguments

from synk8s import config
from synk8s.errors import UsageError
from synk8s.resolve import config_from_arguments

pytestmark = pytest.mark.timeout(30)


def test_a_profile_file_extends_a_shipped_profile_and_travels_as_overrides(tmp_path):
    (tmp_path / "mine.yaml").write_text("extends: tiny\ntune:\n  epochs: 3\n")
    (tmp_path / "more.yml").write_text("extends: mine.yaml\nseed: 5\n")  # relative to the file
    cfg = config.load(str(tmp_path / "more.yml"), ["tune.lr=0.01"])
    assert (cfg.profile, cfg.tune.epochs, cfg.seed, cfg.tune.lr) == ("tiny", 3, 5, 0.01)
    assert cfg.models.clip == config.load("tiny").models.clip
    # A pod never sees the file: the pipeline parameters carry the shipped profile and the differences.
    arguments = pipeline_arguments(cfg)
    assert arguments["profile"] == "tiny" and "tune.epochs=3" in arguments["overrides"]
    assert config_from_arguments(**arguments) == cfg


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tune: {epochs: 2}\n", "must say which profile it extends"),
        ("extends: nope\n", "unknown profile 'nope'"),
        ("extends: tiny\ntune: {epochz: 2}\n", "epochz"),
        ("extends: tiny\n  : [\n", "not valid YAML"),
    ],
)
def test_a_bad_profile_file_is_one_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        config.load(str(path))
    with pytest.raises(UsageError, match="cannot read profile file"):
        config.load(str(tmp_path / "missing.yaml"))


def test_a_profile_file_that_extends_itself_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(UsageError, match="extends itself"):
        config.load(str(tmp_path / "a.yaml"))


def test_the_stand_in_never_sits_where_a_download_goes():
    tiny, paper = config.load("tiny"), config.load("paper")
    assert tiny.dataset.standin and not paper.dataset.standin
    assert tiny.dataset.resolved_root() != paper.dataset.resolved_root() == "./data/cifar100"
