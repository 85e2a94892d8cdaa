"""One stand-in writer per on-disk format (the formats :mod:`synk8s.datasets.readers` reads).

Each writer takes ``(info, base, plan, per_class, paint)``: the registry entry, the dataset folder
(``root / info.base_dir``), the splits to write, images per class and split, and the
:class:`~synk8s.datasets.drawing.Painter`. It returns the number of samples per loadable split.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from synk8s.datasets.drawing import Painter, save_jpeg, save_mat, save_text
from synk8s.datasets.readers import CALTECH_TRAIN_PER_CLASS, EUROSAT_CUTS
from synk8s.datasets.registry import DatasetInfo, raw_names

Counts = dict[str, int]


def _each(n_classes: int, per_class: int) -> Iterator[tuple[int, int]]:
    """(label, i) for every image of a split, image-major so that classes interleave."""
    for i in range(per_class):
        for label in range(n_classes):
            yield label, i


def _with_trainval(info: DatasetInfo, counts: Counts) -> Counts:
    if "trainval" in info.splits and "train" in counts and "val" in counts:
        counts["trainval"] = counts["train"] + counts["val"]
    return counts


def cifar(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """Python pickles of (N, 3072) uint8 rows (R, G, B planes of a 32x32 image) and labels."""
    names = list(raw_names(info.name))
    ten = info.name == "cifar10"
    base.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in plan:
        labels = [label for label, _ in _each(len(names), per_class)]
        rows = np.stack(
            [paint(label, split, i, 32).transpose(2, 0, 1).reshape(-1) for label, i in _each(len(names), per_class)]
        )  # (N, 3072)
        counts[split] = len(labels)
        if not ten:
            batch = {
                "batch_label": f"{split}ing batch",
                "fine_labels": labels,
                "data": rows,
                "filenames": [f"standin_{k:06d}.png" for k in range(len(labels))],
            }
            (base / split).write_bytes(pickle.dumps(batch, protocol=2))
            continue
        parts = np.array_split(np.arange(len(labels)), 5 if split == "train" else 1)
        for k, part in enumerate(parts, start=1):
            file = f"data_batch_{k}" if split == "train" else "test_batch"
            batch = {
                "batch_label": f"{split}ing batch {k} of {len(parts)}",
                "labels": [labels[j] for j in part],
                "data": rows[part],
                "filenames": [f"standin_{j:06d}.png" for j in part],
            }
            (base / file).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": names} if ten else {"fine_label_names": names}
    (base / ("batches.meta" if ten else "meta")).write_bytes(pickle.dumps(meta, protocol=2))
    return counts


def caltech(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """One folder per class holding 30 train then ``per_class`` test images (all splits always)."""
    names = raw_names(info.name)
    if info.name == "caltech101":
        folder = base / "101_ObjectCategories"

        def file_of(label: int, number: int) -> str:
            return f"image_{number:04d}.jpg"

        # the background folder, which the loader skips, gets the label after the last class
        for number in range(1, per_class + 1):
            pixels = paint(len(names), "background", number)
            save_jpeg(folder / "BACKGROUND_Google" / file_of(len(names), number), pixels)
    else:
        folder = base / "256_ObjectCategories"

        def file_of(label: int, number: int) -> str:
            return f"{label + 1:03d}_{number:04d}.jpg"

    for label, name in enumerate(names):
        for number in range(1, CALTECH_TRAIN_PER_CLASS + per_class + 1):
            split = "train" if number <= CALTECH_TRAIN_PER_CLASS else "test"
            save_jpeg(folder / name / file_of(label, number), paint(label, split, number))
    return {"train": CALTECH_TRAIN_PER_CLASS * len(names), "test": per_class * len(names)}


def image_folder(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``[<split>/]<wnid>/<image>`` folders, named as each ImageNet variant names its files."""
    wnids = raw_names(info.name)
    counts = {}
    for split in plan:
        folder = base / split if info.name == "imagenet" else base
        for n, (label, i) in enumerate(_each(len(wnids), per_class), start=1):
            file = {
                "imagenet": f"{wnids[label]}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{n:08d}.JPEG",
                "imagenet_sketch": f"sketch_{i}.JPEG",
                "imagenet_r": f"art_{i}.jpg",
            }[info.name]
            save_jpeg(folder / wnids[label] / file, paint(label, split, i))
        counts[split] = per_class * len(wnids)
    return counts


def eurosat(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``<Class>/<Class>_N.jpg``; ``5 * per_class`` files per class make the 60/20/20 split exact."""
    names = raw_names(info.name)
    total = 5 * per_class
    cut_train, cut_val = (int(total * f) for f in EUROSAT_CUTS)
    for label, name in enumerate(names):
        files = sorted(f"{name}_{number}.jpg" for number in range(1, total + 1))  # the loader's order
        for position, file in enumerate(files):
            split = "train" if position < cut_train else "val" if position < cut_val else "test"
            save_jpeg(base / name / file, paint(label, split, position))
    n = len(names)
    return {"train": cut_train * n, "val": (cut_val - cut_train) * n, "test": (total - cut_val) * n}


def sun397(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``ClassName.txt``, ``<letter>/<scene>/sun_*.jpg`` and ``Partitions/{Training,Testing}_01.txt``."""
    names = raw_names(info.name)
    save_text(base / "ClassName.txt", names)
    counts = {}
    for split in plan:
        lines = []
        for label, i in _each(len(names), per_class):
            line = f"{names[label]}/sun_{split}{i:04d}.jpg"
            save_jpeg(base / line.lstrip("/"), paint(label, split, i))
            lines.append(line)
        save_text(base / f"Partitions/{'Training' if split == 'train' else 'Testing'}_01.txt", lines)
        counts[split] = len(lines)
    return counts


def fgvc_aircraft(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``data/variants.txt``, ``data/images/<id>.jpg`` and ``data/images_variant_<split>.txt``."""
    names = raw_names(info.name)
    data = base / "data"
    save_text(data / "variants.txt", names)
    counts, lines_of, image_id = {}, {}, 1000000
    for split in plan:
        lines = []
        for label, i in _each(len(names), per_class):
            image_id += 1
            save_jpeg(data / "images" / f"{image_id:07d}.jpg", paint(label, split, i))
            lines.append(f"{image_id:07d} {names[label]}")
        save_text(data / f"images_variant_{split}.txt", lines)
        lines_of[split], counts[split] = lines, len(lines)
    if "train" in lines_of and "val" in lines_of:
        save_text(data / "images_variant_trainval.txt", lines_of["train"] + lines_of["val"])
    return _with_trainval(info, counts)


def birdsnap(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``species.txt``, ``images.txt``, ``test_images.txt`` (tab-separated) and ``download/images/``."""
    names, dirs = info.classes, raw_names(info.name)
    save_text(
        base / "species.txt",
        ["id\tcommon\tscientific\tdir", *(f"{k + 1}\t{n}\t\t{d}" for k, (n, d) in enumerate(zip(names, dirs)))],
    )
    rows, test, counts = ["url\tmd5\tpath\tspecies_id"], ["path"], {}
    for split in plan:
        for label, i in _each(len(names), per_class):
            path = f"{dirs[label]}/{split}_{i:04d}.jpg"
            file = base / "download" / "images" / path
            save_jpeg(file, paint(label, split, i))
            md5 = hashlib.md5(file.read_bytes(), usedforsecurity=False).hexdigest()  # Birdsnap's listing column
            rows.append(f"\t{md5}\t{path}\t{label + 1}")
            if split == "test":
                test.append(path)
        counts[split] = per_class * len(names)
    save_text(base / "images.txt", rows)
    save_text(base / "test_images.txt", test)
    return counts


def stanford_cars(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``devkit/cars_meta.mat``, ``.mat`` annotation structs and ``cars_<split>/NNNNN.jpg``."""
    names = raw_names(info.name)
    save_mat(base / "devkit" / "cars_meta.mat", {"class_names": np.array([list(names)], dtype=object)})
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    counts = {}
    for split in plan:
        samples = list(_each(len(names), per_class))
        annotations = np.zeros((1, len(samples)), dtype=[(f, "O") for f in fields])
        for n, (label, i) in enumerate(samples, start=1):
            pixels = paint(label, split, i)
            save_jpeg(base / f"cars_{split}" / f"{n:05d}.jpg", pixels)
            annotations[0, n - 1] = (1, 1, pixels.shape[1], pixels.shape[0], label + 1, f"{n:05d}.jpg")
        annos = "devkit/cars_train_annos.mat" if split == "train" else "cars_test_annos_withlabels.mat"
        save_mat(base / annos, {"annotations": annotations})
        counts[split] = len(samples)
    return counts


def cub200(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``classes.txt``, ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``, ``images/``."""
    names = raw_names(info.name)
    save_text(base / "classes.txt", (f"{k + 1} {n}" for k, n in enumerate(names)))
    images, labels, is_train, counts = [], [], [], {}
    for split in plan:
        for label, i in _each(len(names), per_class):
            image_id = len(images) + 1
            rel = f"{names[label]}/{names[label].split('.', 1)[1]}_{split}_{i:04d}.jpg"
            save_jpeg(base / "images" / rel, paint(label, split, i))
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {label + 1}")
            is_train.append(f"{image_id} {int(split == 'train')}")
        counts[split] = per_class * len(names)
    save_text(base / "images.txt", images)
    save_text(base / "image_class_labels.txt", labels)
    save_text(base / "train_test_split.txt", is_train)
    return counts


def flowers102(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``jpg/image_NNNNN.jpg``, ``imagelabels.mat`` (1-based labels), ``setid.mat`` (ids per split)."""
    labels, ids, counts = [], {"train": [], "val": [], "test": []}, {}
    for split in plan:
        for label, i in _each(info.num_classes, per_class):
            labels.append(label + 1)
            ids[split].append(len(labels))
            save_jpeg(base / "jpg" / f"image_{len(labels):05d}.jpg", paint(label, split, i))
        counts[split] = len(ids[split])
    save_mat(base / "imagelabels.mat", {"labels": np.array([labels], dtype=np.int32)})
    keys = {"train": "trnid", "val": "valid", "test": "tstid"}
    save_mat(base / "setid.mat", {keys[s]: np.array([ids[s]], dtype=np.int32).reshape(1, -1) for s in keys})
    return counts


def food101(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``meta/classes.txt``, ``meta/<split>.json`` ({class: ["class/id", ...]}), ``images/<class>/<id>.jpg``."""
    names = raw_names(info.name)
    save_text(base / "meta" / "classes.txt", names)
    counts, image_id = {}, 100000
    for split in plan:
        listing: dict[str, list[str]] = {name: [] for name in names}
        for label, i in _each(len(names), per_class):
            image_id += 1
            listing[names[label]].append(f"{names[label]}/{image_id}")
            save_jpeg(base / "images" / names[label] / f"{image_id}.jpg", paint(label, split, i))
        (base / "meta" / f"{split}.json").write_text(json.dumps(listing), encoding="utf-8")
        counts[split] = per_class * len(names)
    return counts


def oxford_pets(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``images/<Breed>_N.jpg`` and ``annotations/<split>.txt`` ("id class species breed", 1-based)."""
    names = raw_names(info.name)
    species = [1 if name[0].isupper() else 2 for name in names]  # cat breeds are capitalised
    breed = [species[: k + 1].count(species[k]) for k in range(len(names))]
    counts = {}
    for split in plan:
        lines = []
        for label, i in _each(len(names), per_class):
            image_id = f"{names[label]}_{split}{i + 1}"
            save_jpeg(base / "images" / f"{image_id}.jpg", paint(label, split, i))
            lines.append(f"{image_id} {label + 1} {species[label]} {breed[label]}")
        save_text(base / "annotations" / f"{split}.txt", lines)
        counts[split] = len(lines)
    return counts


def dtd(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``images/<class>/<class>_NNNN.jpg`` and ``labels/<split>1.txt``."""
    names = raw_names(info.name)
    counts = {}
    for split in plan:
        lines = []
        for label, i in _each(len(names), per_class):
            rel = f"{names[label]}/{names[label]}_{split}{i:04d}.jpg"
            save_jpeg(base / "images" / rel, paint(label, split, i))
            lines.append(rel)
        save_text(base / "labels" / f"{split}1.txt", lines)
        counts[split] = len(lines)
    return counts


def voc_xml(image_id: str, size: int, objects: list[tuple[str, list[int], bool]]) -> bytes:
    """A VOC annotation file of a ``size`` x ``size`` image: ``(name, [x1, y1, x2, y2], difficult)`` per object."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    dims = ET.SubElement(root, "size")
    for tag, value in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(dims, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for name, box, difficult in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(int(difficult))
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bndbox, tag).text = str(value)
    return ET.tostring(root, encoding="utf-8")


def voc(info: DatasetInfo, base: Path, plan: list[str], per_class: int, paint: Painter) -> Counts:
    """``JPEGImages/``, ``Annotations/`` (VOC XML) and ``ImageSets/Main/<split>.txt``.

    Each image shows one object of its class, and every second image also one of the next class
    (marked difficult every fourth image), each a drawn patch in its box over a noise background.
    """
    names = raw_names(info.name)
    size = paint.size
    counts, ids_of, number = {}, {}, 0
    for split in plan:
        ids = []
        for label, i in _each(len(names), per_class):
            number += 1
            image_id = f"{number:06d}" if info.name == "voc2007" else f"2012_{number:06d}"
            rng = np.random.default_rng((paint.seed, number))
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)  # (H, W, 3)
            objects = []
            for k, obj_label in enumerate([label] + ([(label + 1) % len(names)] if i % 2 else [])):
                w, h = rng.integers(size // 3, size * 3 // 4 + 1, 2)
                x0, y0 = rng.integers(0, size - w + 1), rng.integers(0, size - h + 1)
                pixels[y0 : y0 + h, x0 : x0 + w] = paint(obj_label, split, number)[:h, :w]
                objects.append((names[obj_label], [x0 + 1, y0 + 1, x0 + w, y0 + h], k == 1 and i % 4 == 3))
            save_jpeg(base / "JPEGImages" / f"{image_id}.jpg", pixels)
            (base / "Annotations").mkdir(parents=True, exist_ok=True)
            (base / "Annotations" / f"{image_id}.xml").write_bytes(voc_xml(image_id, size, objects))
            ids.append(image_id)
        save_text(base / "ImageSets" / "Main" / f"{split}.txt", ids)
        ids_of[split], counts[split] = ids, len(ids)
    if "train" in ids_of and "val" in ids_of:
        save_text(base / "ImageSets" / "Main" / "trainval.txt", ids_of["train"] + ids_of["val"])
    return _with_trainval(info, counts)


WRITERS: dict[str, Callable[[DatasetInfo, Path, list[str], int, Painter], Counts]] = {
    "cifar10": cifar,
    "cifar100": cifar,
    "caltech101": caltech,
    "caltech256": caltech,
    "imagenet": image_folder,
    "sun397": sun397,
    "fgvc_aircraft": fgvc_aircraft,
    "birdsnap": birdsnap,
    "stanford_cars": stanford_cars,
    "cub200": cub200,
    "flowers102": flowers102,
    "food101": food101,
    "oxford_pets": oxford_pets,
    "dtd": dtd,
    "eurosat": eurosat,
    "imagenet_sketch": image_folder,
    "imagenet_r": image_folder,
    "voc2007": voc,
    "voc2012": voc,
}
