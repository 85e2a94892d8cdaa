"""Training data streamed from WebDataset shards in the store, split by rank and data-loading worker.

The generate stage's tars (:func:`synk8s.shards.manifest_tars`) are read as streams through
:func:`synk8s.storage.open_read`; nothing is copied to local disk. Each training process (rank) and each of
its DataLoader workers is a *slot*; with ``world_size x workers`` slots:

* at least as many tars as slots: slot ``s`` reads tars ``s, s + slots, ...`` of a per-epoch seeded
  permutation (webdataset's ``split_by_node`` then ``split_by_worker``);
* fewer tars than slots: every slot reads every tar and keeps the samples whose position is ``s`` modulo
  ``slots``.

A slot cycles through its share as long as it is read (rounds, each reshuffled), and a shuffle buffer mixes
neighbouring samples; so every rank yields as many batches as the epoch needs however unevenly the tars
split, and the training loop decides the epoch length. Everything random is seeded by (seed, epoch, slot)
and each sample's augmentation by (seed, epoch, round, key), so a stream restarted with ``skip_batches``
yields exactly the batches an uninterrupted one yields after that many. Order depends on the world size
and the worker count.

Monitor images: the samples of monitor tars (:func:`monitor_tar_uris`) (evenly spaced through the manifest)
whose key hash falls under ``fraction`` are held out of training (:func:`is_monitor`); the stage reads them
once for its per-epoch monitor.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import IterableDataset, get_worker_info

from synk8s import shards
from synk8s.augment import Views
from synk8s.errors import MissingDataError
from synk8s.seeds import derive_seed

SHUFFLE_BUFFER = 1000  # samples a slot mixes before yielding


@dataclass(frozen=True)
class Sample:
    """One raw sample: its key, encoded image and class."""

    key: str
    image: bytes
    label: int


def monitor_tar_uris(tars: Sequence[shards.TarRecord], count: int) -> frozenset[shards.TarRecord]:
    """``count`` tars evenly spaced through ``tars`` (all of them when there are fewer)."""
    if count >= len(tars):
        return frozenset(tars)
    return frozenset(tars[math.floor(i * len(tars) / count)] for i in range(count))


def is_monitor(key: str, seed: int, fraction: float) -> bool:
    """True when the sample ``key`` of a monitor tar is held out (a seeded hash below ``fraction``)."""
    return derive_seed(seed, "monitor", key) % 1_000_000 < fraction * 1_000_000


def monitor_role(key: str, seed: int) -> str:
    """``bank`` or ``query``: which half of the kNN monitor a held-out sample belongs to."""
    return "bank" if derive_seed(seed, "monitor-role", key) % 2 == 0 else "query"


def raw_samples(tar: shards.TarRecord) -> Iterator[Sample]:
    """The samples of one tar (its manifest record: the bytes are checked as they stream), undecoded."""
    for key, members in shards.iter_tar(tar):
        found = dict(members)
        ext = next((e for e in shards.IMAGE_EXTS if e in found), None)
        if ext is None or "json" not in found:
            raise MissingDataError(f"sample {key} in {tar.uri} lacks an image or its json; regenerate that tar")
        yield Sample(key, found[ext], int(json.loads(found["json"])["class_index"]))


def held_out(
    tars: Sequence[shards.TarRecord], monitor: frozenset[shards.TarRecord], seed: int, fraction: float
) -> Iterator[Sample]:
    """The monitor samples, in tar order."""
    for uri in tars:
        if uri in monitor:
            yield from (s for s in raw_samples(uri) if is_monitor(s.key, seed, fraction))


def slot_share(
    order: Sequence[shards.TarRecord], slot: int, slots: int
) -> Iterator[tuple[shards.TarRecord, Sample]]:
    """(tar, sample) of one slot's share of the tars in ``order`` (see the module notes)."""
    if len(order) >= slots:
        for uri in order[slot::slots]:
            yield from ((uri, s) for s in raw_samples(uri))
        return
    position = 0
    for uri in order:
        for sample in raw_samples(uri):
            if position % slots == slot:
                yield uri, sample
            position += 1


class ShardStream(IterableDataset):
    """An endless stream of ``(views (V, 3, H, W), label)`` for one rank; see the module notes.

    Args:
        tars: every tar of the generate output, in manifest order.
        monitor: the monitor tars (see :func:`monitor_tar_uris`).
        views: augmentation applied to each decoded image.
        seed: run seed.
        fraction: held-out share of the monitor tars' samples.
        rank: this process's rank.
        world_size: processes in the group.
        batch_size: samples per batch on this rank (the DataLoader's batch size).
        buffer_size: samples the shuffle buffer holds (default :data:`SHUFFLE_BUFFER`).

    Set ``epoch`` and ``skip_batches`` (batches of this epoch already trained) before iterating.
    """

    def __init__(
        self,
        tars: Sequence[shards.TarRecord],
        monitor: frozenset[shards.TarRecord],
        views: Views,
        *,
        seed: int,
        fraction: float,
        rank: int,
        world_size: int,
        batch_size: int,
        buffer_size: int = SHUFFLE_BUFFER,
    ) -> None:
        super().__init__()
        self.tars = list(tars)
        self.monitor = monitor
        self.views = views
        self.seed = seed
        self.fraction = fraction
        self.rank = rank
        self.world_size = world_size
        self.batch_size = batch_size
        self.buffer_size = buffer_size
        self.epoch = 0
        self.skip_batches = 0

    def _slot(self) -> tuple[int, int, int]:
        """(slot, slots, workers) of the calling DataLoader worker."""
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.rank * workers + worker, self.world_size * workers, workers

    def _rounds(self, slot: int, slots: int) -> Iterator[tuple[int, Sample]]:
        """(round, training sample) of this slot's share, round after round."""
        round_index = 0
        while True:
            order = list(self.tars)
            random.Random(derive_seed(self.seed, "tars", self.epoch, round_index)).shuffle(order)
            found = 0
            for uri, sample in slot_share(order, slot, slots):
                if uri in self.monitor and is_monitor(sample.key, self.seed, self.fraction):
                    continue
                found += 1
                yield round_index, sample
            if not found:
                raise MissingDataError(
                    f"data slot {slot} of {slots} got no training images from {len(order)} tars; "
                    "use fewer processes or data-loading workers, or generate more images"
                )
            round_index += 1

    def _shuffled(self, slot: int, slots: int) -> Iterator[tuple[int, Sample]]:
        """The slot's samples through a seeded shuffle buffer."""
        rng = random.Random(derive_seed(self.seed, "buffer", self.epoch, slot))
        buffer: list[tuple[int, Sample]] = []
        for item in self._rounds(slot, slots):
            buffer.append(item)
            if len(buffer) >= self.buffer_size:
                yield buffer.pop(rng.randrange(len(buffer)))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        slot, slots, workers = self._slot()
        worker = slot - self.rank * workers
        # The DataLoader takes whole batches from its workers in turn: batch j comes from worker j % workers.
        skip = len(range(worker, self.skip_batches, workers)) * self.batch_size
        for index, (round_index, sample) in enumerate(self._shuffled(slot, slots)):
            if index < skip:
                continue
            image = shards.decode_image(sample.image)
            yield (
                self.views(image, derive_seed(self.seed, "augment", self.epoch, round_index, sample.key)),
                sample.label,
            )
