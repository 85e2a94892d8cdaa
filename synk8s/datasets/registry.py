"""The dataset registry: what each evaluation dataset is, its class names and prompt templates.

Class names and templates are data (``data/classnames.json``, ``data/templates.json``): the
human-readable names and the per-dataset prompt templates CLIP uses for zero-shot evaluation.
``data/raw_names.json`` spells each class the way the dataset's own files do (folder names,
WordNet ids, ``ClassName.txt`` lines), in label order, so loaders can map files to labels.

Sources: CLIP's published class names and templates (``data/prompts.md`` and its ImageNet
prompt-engineering notebook of the openai/CLIP repository); the datasets' own metadata for the
raw names. Where CLIP gives none, the dataset's own names are made readable (CUB-200, Caltech-256:
folder names without number and separators) and the templates of the closest CLIP dataset are
used (Birdsnap's for CUB-200, Caltech-101's for Caltech-256). VOC uses readable names
("dining table") and CLIP's single VOC template. ImageNet keeps CLIP's names as published,
including its two repeated names ("missile", "sunglasses").
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from synk8s.errors import UsageError

CLASSIFICATION = "classification"
DETECTION = "detection"


@dataclass(frozen=True)
class DatasetInfo:
    """One evaluation dataset.

    Attributes:
        name: Registry key, e.g. ``"cifar100"``.
        title: Display title, e.g. ``"CIFAR-100"``.
        task: ``"classification"`` or ``"detection"``.
        kind: Group used in the paper's tables: ``object-level``, ``scene-level``, ``fine-grained``,
            ``textures``, ``satellite``, ``robustness`` or ``detection``.
        classes: Human-readable class names in label order (label ``i`` is ``classes[i]``).
        templates: Prompt templates; ``{}`` is replaced by a class name.
        splits: Splits ``load`` accepts.
        test_split: The split results are reported on.
        data_layout: Where the files go under the data root and where to download them.
        torchvision_class: Name of the torchvision dataset class that reads the same layout, if any.
        homepage: Where the data can be downloaded.
        base_dir: Folder under the data root that holds the dataset.
        descriptions: Per class, a description or ``""`` (custom label spaces; empty for the registry's).
        aliases: Per class, other names it goes by (custom label spaces; empty for the registry's).
    """

    name: str
    title: str
    task: str
    kind: str
    classes: tuple[str, ...]
    templates: tuple[str, ...]
    splits: tuple[str, ...]
    test_split: str
    data_layout: str
    torchvision_class: str | None
    homepage: str
    base_dir: str
    descriptions: tuple[str, ...] = ()
    aliases: tuple[tuple[str, ...], ...] = ()

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


@dataclass(frozen=True)
class _Spec:
    title: str
    kind: str
    splits: tuple[str, ...]
    test_split: str
    base_dir: str
    homepage: str
    layout: str
    torchvision_class: str | None = None
    task: str = CLASSIFICATION


_TT = ("train", "test")
_TVT = ("train", "val", "test")

_SPECS: dict[str, _Spec] = {
    "cifar10": _Spec(
        title="CIFAR-10",
        kind="object-level",
        splits=_TT,
        test_split="test",
        base_dir="cifar-10-batches-py",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        layout="data_batch_1..5, test_batch, batches.meta (extract cifar-10-python.tar.gz)",
        torchvision_class="CIFAR10",
    ),
    "cifar100": _Spec(
        title="CIFAR-100",
        kind="object-level",
        splits=_TT,
        test_split="test",
        base_dir="cifar-100-python",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        layout="train, test, meta (extract cifar-100-python.tar.gz)",
        torchvision_class="CIFAR100",
    ),
    "caltech101": _Spec(
        title="Caltech-101",
        kind="object-level",
        splits=_TT,
        test_split="test",
        base_dir="caltech101",
        homepage="https://data.caltech.edu/records/mzrjq-6wc02",
        layout=(
            "101_ObjectCategories/<class>/image_NNNN.jpg (BACKGROUND_Google is skipped); "
            "no official split: 30 seeded images of each class train, the rest test (a CoOp split file replaces it)"
        ),
        torchvision_class="Caltech101",
    ),
    "caltech256": _Spec(
        title="Caltech-256",
        kind="object-level",
        splits=_TT,
        test_split="test",
        base_dir="caltech256",
        homepage="https://data.caltech.edu/records/nyy15-4j048",
        layout=(
            "256_ObjectCategories/NNN.<class>/NNN_NNNN.jpg (257 folders incl. 257.clutter); "
            "no official split: 30 seeded images of each class train, the rest test (a CoOp split file replaces it)"
        ),
        torchvision_class="Caltech256",
    ),
    "imagenet": _Spec(
        title="ImageNet-1K",
        kind="object-level",
        splits=("train", "val"),
        test_split="val",
        base_dir="imagenet",
        homepage="https://image-net.org/download.php",
        layout="{train,val}/<wnid>/*.JPEG (sort the flat ILSVRC2012 val images into wnid folders)",
        torchvision_class="ImageFolder",
    ),
    "sun397": _Spec(
        title="SUN397",
        kind="scene-level",
        splits=_TT,
        test_split="test",
        base_dir="SUN397",
        homepage="https://vision.princeton.edu/projects/2010/SUN/",
        layout=(
            "ClassName.txt, <letter>/<scene>/sun_*.jpg (extract SUN397.tar.gz), plus "
            "Partitions/Training_01.txt and Testing_01.txt (from Partitions.zip)"
        ),
        torchvision_class="SUN397",
    ),
    "fgvc_aircraft": _Spec(
        title="FGVC-Aircraft",
        kind="fine-grained",
        splits=("train", "val", "trainval", "test"),
        test_split="test",
        base_dir="fgvc-aircraft-2013b",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/",
        layout=(
            "data/variants.txt, data/images_variant_<split>.txt, data/images/*.jpg (extract fgvc-aircraft-2013b.tar.gz)"
        ),
        torchvision_class="FGVCAircraft",
    ),
    "birdsnap": _Spec(
        title="Birdsnap",
        kind="fine-grained",
        splits=_TT,
        test_split="test",
        base_dir="birdsnap",
        homepage="https://thomasberg.org/",
        layout=(
            "species.txt, images.txt, test_images.txt (from birdsnap.tgz) and download/images/<dir>/*.jpg "
            "(fetched by its get_birdsnap.py; images whose URL is dead are skipped)"
        ),
    ),
    "stanford_cars": _Spec(
        title="Stanford Cars",
        kind="fine-grained",
        splits=_TT,
        test_split="test",
        base_dir="stanford_cars",
        homepage="https://ai.stanford.edu/~jkrause/cars/car_dataset.html",
        layout=(
            "devkit/{cars_meta.mat, cars_train_annos.mat}, cars_train/, cars_test/, "
            "cars_test_annos_withlabels.mat (the original site is offline: use a mirror)"
        ),
        torchvision_class="StanfordCars",
    ),
    "cub200": _Spec(
        title="CUB-200-2011",
        kind="fine-grained",
        splits=_TT,
        test_split="test",
        base_dir="CUB_200_2011",
        homepage="https://www.vision.caltech.edu/datasets/cub_200_2011/",
        layout=(
            "classes.txt, images.txt, image_class_labels.txt, train_test_split.txt, images/<class>/*.jpg "
            "(extract CUB_200_2011.tgz)"
        ),
    ),
    "flowers102": _Spec(
        title="Oxford Flowers-102",
        kind="fine-grained",
        splits=_TVT,
        test_split="test",
        base_dir="flowers-102",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
        layout="jpg/image_NNNNN.jpg (extract 102flowers.tgz), imagelabels.mat, setid.mat",
        torchvision_class="Flowers102",
    ),
    "food101": _Spec(
        title="Food-101",
        kind="fine-grained",
        splits=_TT,
        test_split="test",
        base_dir="food-101",
        homepage="https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
        layout="meta/{train,test}.json, images/<class>/*.jpg (extract food-101.tar.gz)",
        torchvision_class="Food101",
    ),
    "oxford_pets": _Spec(
        title="Oxford-IIIT Pets",
        kind="fine-grained",
        splits=("trainval", "test"),
        test_split="test",
        base_dir="oxford-iiit-pet",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/pets/",
        layout="images/*.jpg, annotations/{trainval,test}.txt (extract images.tar.gz and annotations.tar.gz)",
        torchvision_class="OxfordIIITPet",
    ),
    "dtd": _Spec(
        title="DTD",
        kind="textures",
        splits=_TVT,
        test_split="test",
        base_dir="dtd/dtd",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/dtd/",
        layout=(
            "images/<class>/*.jpg, labels/{train,val,test}1.txt (extract dtd-r1.0.1.tar.gz into <root>/dtd; "
            "split partition 1)"
        ),
        torchvision_class="DTD",
    ),
    "eurosat": _Spec(
        title="EuroSAT",
        kind="satellite",
        splits=_TVT,
        test_split="test",
        base_dir="eurosat/2750",
        homepage="https://github.com/phelber/EuroSAT",
        layout=(
            "<Class>/<Class>_N.jpg (extract EuroSAT.zip, RGB version); no official split: per class, "
            "files sorted by name, the first 60% train, the next 20% val, the last 20% test"
        ),
        torchvision_class="EuroSAT",
    ),
    "imagenet_sketch": _Spec(
        title="ImageNet-Sketch",
        kind="robustness",
        splits=("test",),
        test_split="test",
        base_dir="imagenet-sketch/sketch",
        homepage="https://github.com/HaohanWang/ImageNet-Sketch",
        layout="<wnid>/*.JPEG (extract ImageNet-Sketch.zip into <root>/imagenet-sketch)",
        torchvision_class="ImageFolder",
    ),
    "imagenet_r": _Spec(
        title="ImageNet-R",
        kind="robustness",
        splits=("test",),
        test_split="test",
        base_dir="imagenet-r",
        homepage="https://github.com/hendrycks/imagenet-r",
        layout="<wnid>/*.jpg for 200 ImageNet classes (extract imagenet-r.tar)",
        torchvision_class="ImageFolder",
    ),
    "voc2007": _Spec(
        title="PASCAL VOC 2007",
        kind="detection",
        splits=("train", "val", "trainval", "test"),
        test_split="test",
        base_dir="VOCdevkit/VOC2007",
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2007/",
        layout=(
            "JPEGImages/, Annotations/, ImageSets/Main/<split>.txt (extract VOCtrainval_06-Nov-2007.tar "
            "and VOCtest_06-Nov-2007.tar)"
        ),
        torchvision_class="VOCDetection",
        task=DETECTION,
    ),
    "voc2012": _Spec(
        title="PASCAL VOC 2012",
        kind="detection",
        splits=("train", "val", "trainval"),
        test_split="val",
        base_dir="VOCdevkit/VOC2012",
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
        layout="JPEGImages/, Annotations/, ImageSets/Main/<split>.txt (extract VOCtrainval_11-May-2012.tar)",
        torchvision_class="VOCDetection",
        task=DETECTION,
    ),
}


@functools.cache
def _data(file: str) -> dict[str, list[str]]:
    return json.loads(resources.files("synk8s.datasets").joinpath("data", file).read_text(encoding="utf-8"))


@functools.cache
def get(name: str) -> DatasetInfo:
    """Return the registry entry for ``name``.

    Raises:
        UsageError: ``name`` is not a registered dataset.
    """
    spec = _SPECS.get(name)
    if spec is None:
        raise UsageError(f"unknown dataset {name!r}; choose one of: {', '.join(_SPECS)}")
    return DatasetInfo(
        name=name,
        title=spec.title,
        task=spec.task,
        kind=spec.kind,
        classes=tuple(_data("classnames.json")[name]),
        templates=tuple(_data("templates.json")[name]),
        splits=spec.splits,
        test_split=spec.test_split,
        data_layout=f"<root>/{spec.base_dir}/: {spec.layout}; download from {spec.homepage}",
        torchvision_class=spec.torchvision_class,
        homepage=spec.homepage,
        base_dir=spec.base_dir,
    )


def require_classification(name: str) -> DatasetInfo:
    """Return the entry of ``name`` if it is a classification dataset.

    The zero-shot stages evaluate a classifier; the detection datasets (VOC) serve the detection
    transfer experiment only.

    Raises:
        UsageError: unknown dataset, or a dataset of another task (the message lists the usable ones).
    """
    info = get(name)
    if info.task != "classification":
        usable = [d.name for d in all() if d.task == "classification"]
        raise UsageError(
            f"dataset {name!r} is a {info.task} dataset; the zero-shot pipeline needs a classification "
            f"dataset: {', '.join(usable)}"
        )
    return info

def names() -> list[str]:
    """Registered dataset names: the paper's 17 classification datasets, then VOC 2007 and 2012."""
    return list(_SPECS)


def all() -> list[DatasetInfo]:  # noqa: A001 - the registry's natural name
    """All registry entries, in ``names()`` order."""
    return [get(n) for n in _SPECS]


def raw_names(name: str) -> tuple[str, ...]:
    """Class names as the dataset's own files spell them, in label order.

    Folder names for folder layouts, WordNet ids for ImageNet-style folders, ``ClassName.txt``
    lines for SUN397, image-name prefixes for Oxford Pets, XML names for VOC. Flowers-102 has
    none (its files carry label numbers only) and gets its display names.
    """
    info = get(name)
    return tuple(_data("raw_names.json").get(name, info.classes))
