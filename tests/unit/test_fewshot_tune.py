"""The few-shot stages chained on tiny models: split, filter, features, fewshot_tune, fewshot_evaluate."""

import pytest
from safetensors.torch import load

from synk8s import storage
from synk8s.errors import MissingDataError, UsageError
from synk8s.models import load_clip
from synk8s.stages.fewshot import evaluate as fewshot_evaluate
from synk8s.stages.fewshot import split
from synk8s.stages.fewshot import tune as fewshot_tune
from synk8s.stages.zeroshot import features, filter, tune
from synk8s.stages.zeroshot.tune import load_selection

pytestmark = pytest.mark.timeout(120)

PER_CLASS = 3  # generated images per class (shared with the filter and evaluate tests)


@pytest.fixture(scope="module")
def chain(tiny_images, tiny_config, tmp_path_factory):
    """``chain(*overrides)`` -> (cfg, folders) with split, filter and features done for the tiny run."""
    run_root = tiny_images(PER_CLASS)
    root = tmp_path_factory.mktemp("fewshot")
    standin = [
        f"dataset.root={root}/data/{{name}}",
        "dataset.standin_per_class=2",
        "tune.val_fraction=0.34",
        "models.clip=tiny-clip-rn",  # the batch-norm tower (as RN50) whose freezing these tests check
    ]
    base = tiny_config(run_root, PER_CLASS, *standin)
    folders = {"images": str(run_root / "images"), **{n: str(root / n) for n in ("split", "filter", "features")}}
    split.run(base, out=folders["split"], progress=False)
    filter.run(base, images=folders["images"], out=folders["filter"], progress=False)
    features.run(base, images=folders["images"], out=folders["features"], progress=False)

    def make(*overrides):
        return tiny_config(run_root, PER_CLASS, *standin, *overrides), folders

    return make


def _tune(cfg, folders, out):
    return fewshot_tune.run(
        cfg, split=folders["split"], features=folders["features"], selection=folders["filter"],
        images=folders["images"], out=str(out), progress=False,
    )  # fmt: skip


def test_tuning_never_reads_the_test_set_and_repeats_exactly(chain, tmp_path):
    cfg, folders = chain()
    listing_uri = storage.join(folders["features"], "features.json")
    listing = storage.get_json(listing_uri)
    storage.put_json(listing_uri, {**listing, "test": str(tmp_path / "absent.safetensors")})
    try:
        first = _tune(cfg, folders, tmp_path / "a")
        _tune(cfg, folders, tmp_path / "b")
    finally:
        storage.put_json(listing_uri, listing)
    kept = len(load_selection(folders["filter"])["kept"])
    assert first.inputs == "features" and first.real == 10 and first.train == kept and first.val == 0  # last: all train
    assert (first.select, first.ct_init_epoch, first.ct_syn_epoch) == ("last", cfg.fewshot.real_epochs, cfg.fewshot.epochs)
    assert first.ct_init_val_top1 is None and first.ct_syn_val_top1 is None
    for name in ("ct_init.safetensors", "ct_syn.safetensors", "curve.json", "val.json", "results.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    results = storage.get_json(first.results)
    visual = load_clip("tiny-clip-rn").model.visual
    k, d = 10, 32
    head = k * (d + 1)
    expected = head / (sum(p.numel() for p in visual.parameters()) + head)
    assert results["trainable"]["trained"] == head and results["trainable"]["fraction"] == pytest.approx(expected)
    val = storage.get_json(str(tmp_path / "a" / "val.json"))
    assert not set(val["train"]) & set(val["val"])

    evaluated = fewshot_evaluate.run(
        cfg, features=folders["features"], tuned=str(tmp_path / "a"), out=str(tmp_path / "e")
    )
    metrics = storage.get_json(evaluated.metrics)
    assert evaluated.test == 20 and evaluated.standin
    assert set(metrics["top1"]) == {"zeroshot", "ct_init", "ct_syn"}
    assert metrics["split_digest"] == split.load_split(folders["split"]).digest and metrics["inputs"] == "features"
    expected = {"rule": "last", "ct_init_rule": "last", "ct_syn_rule": "last",
                "ct_init_epoch": cfg.fewshot.real_epochs, "ct_syn_epoch": cfg.fewshot.epochs}  # fmt: skip
    assert results["selection"] == expected
    assert metrics["selection"] == {**expected, "ct_init_val_top1": None, "ct_syn_val_top1": None}


def test_last_keeps_the_last_epoch_of_both_heads(chain, tmp_path):
    cfg, folders = chain()
    result = _tune(cfg, folders, tmp_path / "t")
    curve = storage.get_json(result.curve)
    for variant in fewshot_tune.VARIANTS:
        last = curve[variant]["epochs"][-1]["epoch"]
        assert curve[variant]["best_epoch"] == last and curve[variant]["rule"] == "last"
        _tensors, meta = fewshot_tune.load_tuned(str(tmp_path / "t"), variant)
        assert meta["best_epoch"] == last and meta["rule"] == "last"


def test_syn_val_holds_out_synthetic_images_for_ct_syn_only(chain, tmp_path):
    cfg, folders = chain("fewshot.select=syn-val")
    result = _tune(cfg, folders, tmp_path / "t")
    assert result.val >= 1 and result.train + result.val == len(load_selection(folders["filter"])["kept"])
    assert result.ct_init_val_top1 is None and result.ct_syn_val_top1 is not None
    assert result.ct_init_epoch == cfg.fewshot.real_epochs  # CT w. init: the last epoch
    selection = storage.get_json(result.results)["selection"]
    assert (selection["ct_init_rule"], selection["ct_syn_rule"]) == ("last", "syn-val")
    val = storage.get_json(str(tmp_path / "t" / "val.json"))
    assert val["select"] == "syn-val" and val["val"] and not set(val["train"]) & set(val["val"])


def test_real_val_selects_both_heads_on_the_saved_real_validation_set(chain, tmp_path):
    cfg, folders = chain("fewshot.select=real-val")
    with pytest.raises(MissingDataError, match="has no real validation set; run the split stage with fewshot.select=real-val"):
        _tune(cfg, folders, tmp_path / "refused")
    split.run(cfg, out=str(tmp_path / "split"), progress=False)
    result = _tune(cfg, {**folders, "split": str(tmp_path / "split")}, tmp_path / "t")
    assert result.real_val == 10 and result.val == 0 and result.ct_init_val_top1 is not None
    assert result.ct_syn_val_top1 is not None and result.ct_init_epoch >= 1 and result.ct_syn_epoch >= 1
    assert storage.get_json(result.results)["selection"]["ct_init_rule"] == "real-val"


def test_unfrozen_bn_trains_on_images_and_evaluates_with_the_tuned_tower(chain, tmp_path):
    cfg, folders = chain("fewshot.freeze_bn=false", "fewshot.epochs=1", "fewshot.real_epochs=1")
    result = _tune(cfg, folders, tmp_path / "t")
    assert result.inputs == "images"
    tensors = load(storage.get_bytes(result.ct_syn))
    assert any(name.endswith("bn1.running_mean") for name in tensors) and "weight" in tensors
    assert storage.get_json(result.results)["trainable"]["freeze_bn"] is False
    evaluated = fewshot_evaluate.run(
        cfg, features=folders["features"], tuned=str(tmp_path / "t"), out=str(tmp_path / "e")
    )
    assert evaluated.test == 20


def test_a_split_of_another_shot_count_is_refused(chain, tmp_path):
    cfg, folders = chain("fewshot.shots_per_class=2")
    with pytest.raises(UsageError, match="1-shot, the config asks for cifar10 2-shot"):
        _tune(cfg, folders, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_zero_shot_tuning_refuses_a_trainable_tower(chain, tmp_path):
    cfg, folders = chain("tune.trainable=proj")
    with pytest.raises(UsageError, match="only few-shot tuning does"):
        tune.run(cfg, features=folders["features"], selection=folders["filter"], out=str(tmp_path / "t"))
