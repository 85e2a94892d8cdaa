"""Where the run's real dataset is, writing the drawn stand-in first when it is configured and absent."""

from __future__ import annotations

import logging
from pathlib import Path

from synk8s import datasets
from synk8s.config import ExperimentConfig
from synk8s.errors import MissingDataError

logger = logging.getLogger(__name__)


def ensure_dataset(cfg: ExperimentConfig) -> str:
    """The data root of ``cfg.dataset``, ready for :func:`synk8s.datasets.load`.

    With ``dataset.standin: true`` and no dataset folder under the root, a stand-in of
    ``dataset.standin_per_class`` images per class and split is drawn there (seeded by ``cfg.seed``).
    Real data, or an existing stand-in, is used as it is.

    Args:
        cfg: the run's config (``dataset`` section, ``seed``).

    Returns:
        The data root (``dataset.root`` with ``{name}`` filled in).

    Raises:
        MissingDataError: the test split cannot be read and no stand-in is configured, or the
            dataset folder exists but is incomplete (it is not overwritten).
    """
    name = cfg.dataset.name
    root = cfg.dataset.resolved_root()
    info = datasets.get(name)
    try:
        datasets.load(name, info.test_split, root)
        return root
    except MissingDataError:
        if not cfg.dataset.standin or (Path(root) / info.base_dir).exists():
            raise
    counts = datasets.write_standin(name, root, per_class=cfg.dataset.standin_per_class, seed=cfg.seed)
    logger.warning("no %s data under %s: wrote a drawn stand-in (%s)", name, root, counts)
    return root
