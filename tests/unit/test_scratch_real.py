"""Table 4's real columns as a stage-table row: every M trains, the row resumes and leaves a cost record."""

import json
from pathlib import Path

import pytest

from synk8s import config, cost, storage
from synk8s.stages.table import TABLE, run_dir


@pytest.mark.timeout(120)
def test_the_real_columns_train_every_m_and_resume_as_a_row(tmp_path):
    cfg = config.load(
        "tiny",
        [
            f"store.root={tmp_path}/store",
            f"dataset.root={tmp_path}/data/{{name}}",
            "pretrain.label_space=cifar100",
            "pretrain.finetune.dataset=cifar10",
            "dataset.standin_per_class=3",
            "pretrain.finetune.epochs=1",
            "pretrain.finetune.batch_size=10",
            "pretrain.finetune.real_per_class=[1,2]",
        ],
    )
    run = run_dir(cfg)
    done = TABLE.execute("scratch_real", cfg, run)
    assert done.out == TABLE.stage_dir(run, "scratch_real", cfg) and done.out.rsplit("/", 1)[1].startswith("scratch-real-")
    columns = json.loads(storage.get_bytes(storage.join(done.out, "columns.json")))
    assert set(columns["top1"]) == {"1", "2"} and columns["paper"] == {"1": 2.48}  # Table 4 has no M of 2
    for m in (1, 2):
        metrics = json.loads(storage.get_bytes(storage.join(done.out, f"real-{m}", "metrics.json")))
        assert metrics["train"] == 10 * m and metrics["real_per_class"] == m  # M images of each of 10 classes
        assert columns["top1"][str(m)] == metrics["top1"]
    assert storage.exists(cost.record_uri(run, done.out, None))
    files = sorted(Path(done.out).rglob("*"))
    written = {f: f.stat().st_mtime_ns for f in files}
    again = TABLE.execute("scratch_real", cfg, run)  # complete: handed back, not trained again
    assert again.result == done.result
    assert {f: f.stat().st_mtime_ns for f in sorted(Path(done.out).rglob("*"))} == written  # nothing rewritten
