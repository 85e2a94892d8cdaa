"""Cost accounting: what each stage call spent (device, device-seconds, images/s), and what a run's gain cost.

The stage table's ``execute`` (every ``synk8s stage`` command and every pipeline task goes through
it) calls :func:`record` after each stage call, which writes one small file into the run folder::

    <run>/cost/<stage folder>.json              e.g. cost/filter-3e26236c.json
    <run>/cost/<stage folder>-shard-00001.json  one per shard of a sharded stage (generate)

    {"stage": "generate", "shard": 1, "device": "NVIDIA H200", "device_seconds": 812.4,
     "images": 1000, "images_per_second": 1.23, "images_per_second_generating": 1.31, "batch_size": 16}

(the last two only for generate: images/s with the model loaded and set up, and the batch size used).

A call on a CUDA device counts one device (the stages use ``cuda:0``); a CPU call records ``"cpu"``.
:func:`run_cost` sums a run's records for its report: device-hours per 1000 generated images and
top-1 points gained per device-hour (GPU-hours when the devices are GPUs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from synk8s import storage

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig

COST_DIR = "cost"
# Result fields that count the images a stage call processed, in order of preference.
IMAGE_FIELDS = (("generated",), ("synthetic", "test"), ("train",), ("test",))


def device_name(cfg: ExperimentConfig) -> str:
    """``"cpu"``, or the CUDA device's name (``torch.cuda.get_device_name``) when the config resolves to CUDA."""
    from synk8s.models import resolve_device

    if not resolve_device(cfg.device).startswith("cuda"):
        return "cpu"
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def images_of(result: Any) -> int | None:
    """Images a stage call processed, from its result's fields (:data:`IMAGE_FIELDS`); None when it has none."""
    for names in IMAGE_FIELDS:
        values = [getattr(result, n, None) for n in names]
        if all(isinstance(v, int) for v in values):
            return int(sum(values))
    return None


def record_uri(run: str, out: str, shard: int | None) -> str:
    """Where the cost record of the call that wrote ``out`` (and shard ``shard``) goes, inside the run folder."""
    name = out.rstrip("/").rsplit("/", 1)[-1]
    suffix = "" if shard is None else f"-shard-{shard:05d}"
    return storage.join(run, COST_DIR, f"{name}{suffix}.json")


def record(cfg: ExperimentConfig, run: str, out: str, stage: str, result: Any, seconds: float,
           shard: int | None = None) -> str:
    """Write the cost record of one stage call; returns its URI.

    Args:
        cfg: the run's config (its ``device`` decides the device recorded).
        run: the run folder URI.
        out: the stage's output folder URI.
        stage: the stage name.
        result: the stage function's result (its image counts are read, see :func:`images_of`).
        seconds: wall time of the call.
        shard: the shard index of a sharded stage's call.
    """
    images = images_of(result)
    body = {
        "stage": stage,
        "shard": shard,
        "device": device_name(cfg),
        "device_seconds": round(seconds, 3),
        "images": images,
        "images_per_second": round(images / seconds, 4) if images and seconds > 0 else None,
    }
    # A generate shard also says how fast it made images once loaded, and at which batch size.
    busy = getattr(result, "generate_seconds", None)
    if busy and images:
        body["images_per_second_generating"] = round(images / busy, 4)
    if getattr(result, "batch_size", None) is not None:
        body["batch_size"] = result.batch_size
    uri = record_uri(run, out, shard)
    storage.put_json(uri, body)
    return uri


def read_records(run: str, folders: Mapping[str, str]) -> list[dict[str, Any]]:
    """The cost records of the given stage folders (all shards), in folder order; missing ones are skipped."""
    found = []
    names = {folder.rstrip("/").rsplit("/", 1)[-1] for folder in folders.values()}
    for info in storage.list(storage.join(run, COST_DIR)):
        stem = info.uri.rsplit("/", 1)[-1].removesuffix(".json")
        if stem.split("-shard-")[0] in names:
            found.append(storage.get_json(info.uri))
    return found


def run_cost(records: list[dict[str, Any]], *, generated: int, gain: float | None) -> dict[str, Any]:
    """A run's cost summary from its records.

    Args:
        records: the run's stage records (:func:`read_records`).
        generated: synthetic images the run generated.
        gain: top-1 gained over CLIP zero-shot, as a fraction (0.05 is 5 points); None when not measured
            (no real test set).

    Returns:
        ``devices`` (names seen), ``device_hours`` (all stages), ``generate_device_hours``,
        ``device_hours_per_1000_images`` (generation), ``points_per_device_hour`` (gain / all device-hours),
        ``generate_images_per_second`` (the shards' images over their device-seconds) and
        ``generate_batch_sizes`` (those the shards recorded); None where a denominator is zero.
    """
    total = sum(float(r["device_seconds"]) for r in records) / 3600.0
    shards = [r for r in records if r["stage"] == "generate"]
    gen = sum(float(r["device_seconds"]) for r in shards) / 3600.0
    made = sum(int(r.get("images") or 0) for r in shards)
    return {
        "generate_images_per_second": round(made / (gen * 3600.0), 4) if made and gen > 0 else None,
        "generate_batch_sizes": sorted({r["batch_size"] for r in shards if r.get("batch_size") is not None}),
        "devices": sorted({r["device"] for r in records}),
        "device_hours": round(total, 6),
        "generate_device_hours": round(gen, 6),
        "device_hours_per_1000_images": round(gen / (generated / 1000.0), 6) if generated else None,
        "points_per_device_hour": round(100.0 * gain / total, 4) if total > 0 and gain is not None else None,
    }
