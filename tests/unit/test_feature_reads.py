"""Decoding workers read nothing from the store: each tar is fetched (and checked) once, by the encoding process.

The tars live on the test S3 server; its own request log (werkzeug's access log, one line per HTTP
request it served) shows which objects were fetched and how often.
"""

import collections
import logging
import re

import pytest
import torch

from synk8s import storage
from synk8s.datasets.drawn_images import write_drawn_images
from synk8s.errors import IntegrityError
from synk8s.stages.zeroshot import feature_cache, features

pytestmark = pytest.mark.timeout(60)

TARS = 5  # 18 images in tars of 4 (the last holds 2); batches of 3 straddle tar boundaries
GET_LINE = re.compile(r'"GET /[^/\s]+/(\S+?\.tar)(?:\?\S*)? HTTP')


def _cfg(tiny_config, root, workers: int):
    return tiny_config(root, 1, "features.batch_size=3", f"features.workers={workers}")


def _tar_gets(caplog) -> collections.Counter:
    """GET requests the S3 server answered per tar, from its access log."""
    return collections.Counter(m.group(1) for r in caplog.records if (m := GET_LINE.search(r.getMessage())))


@pytest.fixture
def images(s3_env) -> str:
    uri = f"{s3_env}/images"
    write_drawn_images(uri, classes=3, per_class=6, seed=0, size=32, samples_per_tar=4)
    return uri


def test_two_workers_fetch_each_tar_once_and_give_the_same_features(images, tiny_config, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="werkzeug")
    runs = {}
    for workers in (0, 2):
        caplog.clear()
        runs[workers] = features.synthetic_features(
            _cfg(tiny_config, tmp_path / f"w{workers}", workers), images, progress=False
        )
        gets = _tar_gets(caplog)
        assert len(gets) == TARS and set(gets.values()) == {1}, (workers, gets)
    inline, on_workers = runs[0], runs[2]
    assert not inline.from_cache and not on_workers.from_cache and len(inline.sample_keys) == 18
    assert torch.equal(inline.features, on_workers.features)
    assert inline.sample_keys == on_workers.sample_keys and torch.equal(inline.labels, on_workers.labels)


@pytest.mark.parametrize("tar", ["drawn-00000.tar", "drawn-00003.tar"])  # read while workers start, or later
def test_a_damaged_tar_is_refused_on_workers_before_anything_is_cached(images, tiny_config, tmp_path, tar):
    cfg = _cfg(tiny_config, tmp_path, 2)
    uri = storage.join(images, tar)
    storage.put_bytes(uri, storage.get_bytes(uri)[:3000])  # cut mid-member (a valid hash of the wrong bytes)
    with pytest.raises(IntegrityError) as err:
        features.synthetic_features(cfg, images, progress=False)
    message = str(err.value)
    assert message.startswith(uri + " ") and "\n" not in message and "synk8s stage generate" in message
    assert storage.list(storage.join(cfg.store.root, *feature_cache.CACHE_DIR)) == []
