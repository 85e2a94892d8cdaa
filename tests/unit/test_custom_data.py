"""Your own classes and images: classes-file checks, run identity, folder and manifest reading, bad inputs."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synk8s import config, datasets
from synk8s.cli.main import app
from synk8s.datasets import custom
from synk8s.datasets.drawing import draw, save_jpeg
from synk8s.datasets.sample_folder import write_sample_folder
from synk8s.errors import MissingDataError, UsageError
from synk8s.realdata import ensure_dataset
from synk8s.stages.table import TABLE, default_run_id

pytestmark = pytest.mark.timeout(120)

NAMES = ["forklift", "pallet jack", "hard hat", "safety vest", "traffic cone"]
CLASSES_YAML = (
    "classes:\n  - forklift\n  - name: pallet jack\n    description: a hand-pushed truck with two forks\n"
    "    aliases: [pump truck]\n  - hard hat\n  - safety vest\n  - traffic cone\n"
)


def sample_folder(root: Path, per_class: int = 4, names=NAMES) -> Path:
    """``root/<class>/<i>.jpg``: stand-in drawings, class ``i`` painted as the stand-in's label ``i``."""
    return write_sample_folder(root, names, per_class)


def custom_config(tmp_path, classes: Path | None, images: Path | None, *more: str):
    store = str(tmp_path / "store")
    extra = custom.overrides(None if classes is None else str(classes), None if images is None else str(images), store)
    return config.load("tiny", [f"store.root={store}", *extra, *more])


def test_yaml_classes_file_gives_names_descriptions_aliases_and_default_template(tmp_path):
    path = tmp_path / "classes.yaml"
    path.write_text(CLASSES_YAML)
    space = custom.read_file(path)
    assert space.names == tuple(NAMES)
    assert space.descriptions[1] == "a hand-pushed truck with two forks"
    assert space.aliases[1] == ("pump truck",)
    assert space.templates == custom.DEFAULT_TEMPLATES


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("dup.txt", b"cat\ndog\nCat\n", "dup.txt:3: class 'Cat' repeats line 1"),
        ("latin1.txt", b"cat\ncaf\xe9\n", "latin1.txt:2: not UTF-8"),
        ("empty.txt", b"\n# nothing\n", "no class names"),
        ("long.txt", b"x" * 101 + b"\n", "long.txt:1: class name of 101 characters; the limit is 100"),
        ("blank.yaml", b"classes:\n  - cat\n  - name: ''\n", "blank.yaml:3: empty class name"),
        ("tpl.yaml", b"classes: [cat, dog]\ntemplates:\n  - a photo\n", "tpl.yaml:3: template 'a photo' needs exactly one {}"),
    ],
)
def test_bad_classes_files_are_one_line_naming_file_and_line(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UsageError) as err:
        custom.read_file(path)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_run_id_follows_the_classes_file_and_registry_runs_keep_theirs(tmp_path):
    first, second, same = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    first.write_text("forklift\npallet jack\n")
    second.write_text("forklift\nhard hat\n")
    same.write_text("forklift\npallet jack\n")  # another path, the same bytes
    ids = [default_run_id(custom_config(tmp_path, p, None)) for p in (first, second, same)]
    assert ids[0].startswith("custom-")
    assert ids[0] != ids[1]
    assert ids[0] == ids[2]
    stored = custom_config(tmp_path, first, None)
    assert Path(stored.dataset.classes).read_bytes() == first.read_bytes()  # content-addressed copy in the store
    assert Path(stored.dataset.classes).name.startswith(stored.dataset.classes_sha256)
    plain = config.load("tiny", ["dataset.name=cifar10"])
    assert "classes" not in json.dumps(TABLE.fields("evaluate", plain))
    assert datasets.info(stored.dataset).classes == ("forklift", "pallet jack")


def test_image_folder_is_split_once_saved_and_read_with_byte_identity(tmp_path):
    images = sample_folder(tmp_path / "imgs", per_class=4)
    classes = tmp_path / "classes.yaml"
    classes.write_text(CLASSES_YAML)
    cfg = custom_config(tmp_path, classes, images)
    info = datasets.info(cfg.dataset)
    root = ensure_dataset(cfg)
    saved = json.loads((images / "synk8s-split.json").read_text())
    assert len(saved["test"]) == 5  # one of each class's 4 images (round(0.3 * 4) = 1)
    train, test = datasets.load(info, "train", root), datasets.load(info, "test", root)
    assert (len(train), len(test)) == (15, 5)
    assert sorted(set(test.labels)) == [0, 1, 2, 3, 4]
    assert test.sample_id(0) in saved["test"]
    before = test.ident
    victim = images / saved["test"][0]
    pixels = np.asarray(draw(4, np.random.default_rng(99), 32))
    save_jpeg(victim, pixels)
    assert datasets.load(info, "test", ensure_dataset(cfg)).ident != before  # the bytes changed
    assert json.loads((images / "synk8s-split.json").read_text()) == saved  # the split stays


def test_images_alone_take_the_sorted_folder_names_as_classes(tmp_path):
    images = sample_folder(tmp_path / "imgs", per_class=2, names=["zebra", "apple"])
    cfg = custom_config(tmp_path, None, images)
    assert datasets.info(cfg.dataset).classes == ("apple", "zebra")


def test_manifest_label_outside_the_label_space_is_listed_per_file(tmp_path):
    sample_folder(tmp_path / "imgs", per_class=2, names=NAMES[:2])
    rows = ["path,label,split"] + [f"{n}/{i}.jpg,{n},{'test' if i else 'train'}" for n in NAMES[:2] for i in range(2)]
    rows.append("forklift/0.jpg,crane,train")
    manifest = tmp_path / "imgs" / "labels.csv"
    manifest.write_text("\n".join(rows) + "\n")
    classes = tmp_path / "classes.yaml"
    classes.write_text(CLASSES_YAML)
    cfg = custom_config(tmp_path, classes, manifest)
    with pytest.raises(MissingDataError) as err:
        ensure_dataset(cfg)
    message = str(err.value)
    assert "1 of 5 files unusable (1 label not in the label space)" in message
    listed = Path(message.split("listed in ")[1].split(";")[0]).read_text()
    assert listed == "forklift/0.jpg\tlabel 'crane' is not a class of the label space\n"
    skipping = custom_config(tmp_path, classes, manifest, "dataset.skip_bad_images=true")
    root = ensure_dataset(skipping)
    assert len(datasets.load(datasets.info(skipping.dataset), "train", root)) == 2


def _submit(tmp_path, *args: str):
    return CliRunner().invoke(
        app, ["submit", "zeroshot", "--local", "--profile", "tiny", "--store", str(tmp_path / "store"), "--dry-run", *args]
    )


def _run_stage(tmp_path, *args: str):
    return CliRunner().invoke(app, ["stage", "test_features", "--store", str(tmp_path / "store"), *args])


def test_bad_inputs_are_one_line_and_a_nonzero_exit(tmp_path):
    good = tmp_path / "classes.txt"
    good.write_text("\n".join(NAMES) + "\n")
    dup = tmp_path / "dup.txt"
    dup.write_text("cat\nCat\n")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9\n")
    empty_class = sample_folder(tmp_path / "empty", per_class=1, names=NAMES)
    for f in (empty_class / NAMES[2]).iterdir():
        f.unlink()
    corrupt = sample_folder(tmp_path / "corrupt", per_class=2, names=NAMES)
    (corrupt / NAMES[0] / "1.jpg").write_bytes(b"not a jpeg at all")
    cases = [
        (_submit(tmp_path, "--classes", str(dup)), "dup.txt:2: class 'Cat' repeats line 1"),
        (_submit(tmp_path, "--classes", str(latin)), "latin.txt:1: not UTF-8"),
        (_run_stage(tmp_path, "--classes", str(good), "--images", str(tmp_path / "nowhere")), "does not exist"),
        (_run_stage(tmp_path, "--classes", str(good), "--images", str(empty_class)), "is empty"),
        (_run_stage(tmp_path, "--classes", str(good), "--images", str(corrupt)), "1 unreadable"),
    ]
    for result, expected in cases:
        assert result.exit_code != 0
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.output[-2000:]  # log lines aside, the failure is one line
        assert expected in errors[0], result.output[-2000:]


def test_a_submit_with_missing_or_empty_images_stops_before_any_stage(tmp_path):
    good = tmp_path / "classes.txt"
    good.write_text("\n".join(NAMES) + "\n")
    empty_class = sample_folder(tmp_path / "empty", per_class=1, names=NAMES)
    for f in (empty_class / NAMES[2]).iterdir():
        f.unlink()
    for images, expected in ((tmp_path / "nowhere", "does not exist"), (empty_class, "is empty")):
        result = CliRunner().invoke(app, [
            "submit", "zeroshot", "--local", "--profile", "tiny", "--store", str(tmp_path / "store"),
            "--classes", str(good), "--images", str(images),
        ])  # fmt: skip
        assert result.exit_code != 0
        (error,) = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert expected in error
        assert not (tmp_path / "store" / "runs").exists()  # preflight refused it: no stage ran
