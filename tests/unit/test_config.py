import pytest

from synk8s import config
from synk8s.errors import UsageError

pytestmark = pytest.mark.timeout(30)


def test_paper_profile_has_the_papers_defaults():
    cfg = config.load("paper")
    assert cfg.prompts.mode == "LE" and cfg.prompts.sentences_per_class == 200
    assert cfg.generate.images_per_class == 2000
    assert cfg.models.clip == "rn50"
    assert cfg.filter.enabled and cfg.filter.threshold is None  # 1/K
    assert (cfg.tune.loss, cfg.tune.soft_weight, cfg.tune.temperature) == ("sce", 0.5, 2.0)
    assert (cfg.tune.epochs, cfg.tune.lr, cfg.tune.weight_decay, cfg.tune.batch_size) == (30, 2e-3, 0.1, 512)
    assert cfg.tune.grad_clip == 1.0
    assert (cfg.fewshot.lr, cfg.fewshot.real_batch_size, cfg.fewshot.synthetic_batch_size) == (1e-3, 32, 512)
    assert cfg.fewshot.guidance_strength == {1: 0.5, 2: 0.4, 4: 0.35, 8: 0.2, 16: 0.15}
    assert cfg.fewshot.shots == (1, 2, 4, 8, 16)


def test_tiny_extends_paper_and_changes_only_what_it_lists():
    paper, tiny = config.load("paper"), config.load("tiny")
    assert tiny.models.generator == "standin-drawn" and tiny.dataset.standin
    assert tiny.tune.loss == paper.tune.loss and tiny.tune.lr > paper.tune.lr  # the tiny budget: short, faster
    assert tiny.fewshot.guidance_strength == paper.fewshot.guidance_strength
    assert tiny.generate.images_per_class < paper.generate.images_per_class


def test_overrides_are_typed_and_produce_a_new_digest():
    base = config.load("tiny")
    cfg = config.load("tiny", ["tune.epochs=3", "filter.threshold=0.2", "models.cache=null", "fewshot.shots=[1, 2]"])
    assert cfg.tune.epochs == 3 and cfg.filter.threshold == 0.2 and cfg.fewshot.shots == (1, 2)
    assert cfg.digest() != base.digest()
    assert config.load("tiny").digest() == base.digest()


def test_with_overrides_copies_without_mutating():
    base = config.load("tiny")
    changed = config.with_overrides(base, ["seed=7"])
    assert changed.seed == 7 and base.seed == 0


def test_config_round_trips_through_json():
    cfg = config.load("paper", ["dataset.name=eurosat"])
    assert config.ExperimentConfig.model_validate_json(cfg.model_dump_json()) == cfg


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tune.lrr=1", "unknown config key 'tune.lrr'"),
        ("nope.x=1", "unknown config key 'nope'"),
        ("tune.lr=abc", "tune.lr"),
        ("filter.threshold=1.7", "filter.threshold"),
        ("tune=3", "is a section"),
        ("tune.lr.x=1", "has no sub-keys"),
        ("epochs", "bad override"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(UsageError, match=message):
        config.load("tiny", [override])


def test_unknown_profile_lists_the_choices():
    with pytest.raises(UsageError, match="choose one of: paper, tiny"):
        config.load("huge")


def test_frozen():
    cfg = config.load("tiny")
    with pytest.raises(Exception):
        cfg.tune.epochs = 1


def test_digest_ignores_where_the_run_executes():
    cfg = config.load("tiny")
    moved = config.with_overrides(cfg, ["store.root=s3://bucket/x", "cluster.host=http://kfp"])
    assert moved.digest() == cfg.digest()
    assert config.with_overrides(cfg, ["seed=1"]).digest() != cfg.digest()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("store.root=", "store.root"),
        ("fewshot.guidance_strength={3: 2.0}", "strength in \\(0, 1\\]"),
    ],
)
def test_empty_store_roots_and_bad_strengths_are_rejected(override, message):
    with pytest.raises(UsageError, match=message):
        config.load("tiny", [override])


def test_names_are_left_to_the_resolver():
    """config checks what a config says on its own; the registries are synk8s.resolve's (tests/unit/test_resolve.py)."""
    cfg = config.load("tiny", ["dataset.name=cifar1000", "models.clip=nope", "store.root=foo://b/x"])
    assert (cfg.dataset.name, cfg.models.clip, cfg.store.root) == ("cifar1000", "nope", "foo://b/x")


def test_digest_of_fields_changes_only_with_those_fields():
    cfg = config.load("tiny")
    images = ("seed", "prompts", "generate", "models.generator")
    assert config.with_overrides(cfg, ["tune.loss=ce", "filter.enabled=false"]).digest(*images) == cfg.digest(*images)
    assert config.with_overrides(cfg, ["generate.steps=3"]).digest(*images) != cfg.digest(*images)
    assert cfg.digest("tune", "seed") == cfg.digest("seed", "tune")


def test_fewshot_settings_of_the_paper_and_tiny_profiles():
    paper, tiny = config.load("paper"), config.load("tiny")
    fs = paper.fewshot
    assert (fs.strategy, fs.schedule, fs.freeze_bn, fs.images_per_class) == ("RG", "mix", True, 800)
    assert (fs.shots_per_class, fs.w_real, fs.w_syn) == (16, 1.0, 1.0) and paper.tune.trainable == "head"
    assert tiny.fewshot.shots_per_class in tiny.fewshot.guidance_strength
    with pytest.raises(UsageError, match="fewshot.schedule"):
        config.load("tiny", ["fewshot.schedule=phase"])
    with pytest.raises(UsageError, match="must list shot counts >= 1"):
        config.load("tiny", ["fewshot.shots=[0, 1]"])
