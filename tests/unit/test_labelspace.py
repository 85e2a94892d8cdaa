"""Label spaces: class names for pre-training runs; zero-shot runs keep their dataset's names and digests."""

import pytest

from synk8s import config, datasets, labelspace
from synk8s.errors import UsageError
from synk8s.stages.synth import generate, prompts
from synk8s.stages.table import default_run_id

pytestmark = pytest.mark.timeout(30)


def test_label_spaces_have_the_papers_sizes_and_no_repeated_imagenet_synsets():
    assert len(labelspace.names("cifar100")) == 100
    assert labelspace.names("imagenet-1k") == datasets.get("imagenet").classes
    in2k = labelspace.names("imagenet-2k")
    assert len(in2k) == 2000 and in2k[:1000] == datasets.get("imagenet").classes
    synsets, names = labelspace.imagenet21k_extra()
    assert len(synsets) == len(set(synsets)) == 1000 and synsets == tuple(sorted(synsets))
    from synk8s.datasets.registry import raw_names

    assert not set(synsets) & set(raw_names("imagenet"))  # other ImageNet-21K classes, none of ImageNet-1K
    assert not {n.casefold() for n in names} & {n.casefold() for n in datasets.get("imagenet").classes}
    with pytest.raises(UsageError, match="unknown label space"):
        labelspace.names("imagenet-21k")


def test_images_per_class_come_from_the_total():
    cfg = config.load("paper", ["pretrain.label_space=imagenet-2k", "pretrain.images=4000000"])
    assert labelspace.images_per_class(cfg) == 2000 and labelspace.templates(cfg) == datasets.get("imagenet").templates
    cfg = config.load("paper", ["pretrain.label_space=cifar100", "pretrain.images=1200000"])
    assert labelspace.images_per_class(cfg) == 12000
    with pytest.raises(UsageError, match="at least the 100 classes"):
        labelspace.images_per_class(config.with_overrides(cfg, ["pretrain.images=50"]))


def test_zero_shot_runs_keep_their_classes_fields_and_digests():
    zero = config.load("tiny", ["dataset.name=cifar10"])
    assert labelspace.class_names(zero) == datasets.get("cifar10").classes
    assert labelspace.images_per_class(zero) == zero.generate.images_per_class
    assert labelspace.digest_fields(zero) == () and labelspace.manifest_fields(zero) == {}
    # The images folder is named by the zero-shot fields only: pre-training settings do not move it.
    assert default_run_id(zero) == default_run_id(config.with_overrides(zero, ["pretrain.images=999"]))
    pre = config.with_overrides(zero, ["pretrain.label_space=cifar100", "pretrain.classes=null"])
    assert labelspace.digest_fields(pre) == ("pretrain.label_space", "pretrain.images")
    assert labelspace.manifest_fields(pre) == {"label_space": "cifar100", "classes": 100, "label_space_classes": 100}


def test_a_class_slice_spreads_evenly_over_the_label_space_and_names_its_own_folders():
    cifar = config.load("tiny", ["pretrain.label_space=cifar100"])
    assert config.load("tiny").pretrain.classes == 100  # the tiny profile's reduction: 100 of IN-1K's 1000
    cifar = config.with_overrides(cifar, ["pretrain.classes=10"])
    names = labelspace.names("cifar100")
    assert labelspace.class_names(cifar) == names[::10]
    assert labelspace.images_per_class(cifar) == cifar.pretrain.images // 10
    assert labelspace.manifest_fields(cifar) == {"label_space": "cifar100", "classes": 10, "label_space_classes": 100}
    assert labelspace.digest_fields(cifar) == ("pretrain.label_space", "pretrain.images", "pretrain.classes")
    imagenet = config.with_overrides(cifar, ["pretrain.label_space=imagenet-1k", "pretrain.classes=3"])
    assert labelspace.class_names(imagenet) == tuple(labelspace.names("imagenet-1k")[i] for i in (0, 333, 666))
    wider = config.with_overrides(cifar, ["pretrain.classes=20"])
    assert default_run_id(wider) != default_run_id(cifar)  # another slice, other prompts and images
    with pytest.raises(UsageError, match="pretrain.classes 101 exceeds the 100 classes of cifar100"):
        labelspace.class_names(config.with_overrides(cifar, ["pretrain.classes=101"]))
    with pytest.raises(UsageError, match=r"at least the 10 classes \(pretrain.classes\)"):
        labelspace.images_per_class(config.with_overrides(cifar, ["pretrain.images=9"]))
    # The paper profile generates for the whole label space.
    paper = config.load("paper", ["pretrain.label_space=imagenet-1k"])
    assert paper.pretrain.classes is None and labelspace.class_names(paper) == labelspace.names("imagenet-1k")


def test_prompts_and_generate_work_over_a_label_space(tmp_path):
    cfg = config.load(
        "tiny",
        [
            "prompts.mode=B",
            "pretrain.label_space=cifar100",
            "pretrain.classes=null",
            "pretrain.images=200",
            "generate.num_shards=1",
        ],
    )
    result = prompts.run(cfg, out=str(tmp_path / "prompts"))
    records = prompts.read_prompts(str(tmp_path / "prompts"))
    assert result.classes == 100 and {r["class_name"] for r in records} == set(labelspace.names("cifar100"))
    items = generate.work_items(cfg, records, list(labelspace.class_names(cfg)))
    assert len(items) == 200 and {it.class_index for it in items} == set(range(100))
