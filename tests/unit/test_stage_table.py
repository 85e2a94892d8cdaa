"""The stage table: rows are checked, digests cover every upstream field, inputs resolve, stages run.

A synthetic table (``pretrain`` -> ``detect`` across run folders, a sharded ``make``) stands for the
stages to come; the real table's rows are checked for what the derived code relies on.
"""

import inspect
from pathlib import Path

import pytest
from pydantic import BaseModel

from synk8s import config, storage
from synk8s.errors import UsageError
from synk8s.stages.table import TABLE
from synk8s.stagetable import StageTable
from synk8s.stagetable.spec import Option, Resources, Sharding, StageSpec, Upstream

pytestmark = pytest.mark.timeout(30)

SMALL = Resources("1", "1", "1Gi", "1Gi")


class Wrote(BaseModel):
    out: str
    inputs: dict[str, str]
    shard: int = 0


def _writer(name):
    def run(cfg, *, out, shard=0, **inputs):
        storage.put_json(storage.join(out, "manifest.json"), {"stage": name, "seconds": 0.0, "inputs": inputs})
        return Wrote(out=out, inputs=inputs, shard=shard)

    return run


def _collect(cfg, *, out):
    storage.put_json(storage.join(out, "collected.json"), {})
    return Wrote(out=out, inputs={})


def _label_space(cfg):
    return config.with_overrides(cfg, [f"dataset.name={cfg.pretrain.label_space}"])


def _table(finished: list) -> StageTable:
    def finish(cfg, run, folders):
        finished.append(folders)
        return storage.join(folders["detect"], "report.json")

    make = StageSpec(
        name="make",
        run=_writer("make"),
        help="Make images in shards.",
        resources=SMALL,
        depends=("seed", "generate"),
        options=(Option("shard", int, 0, "Shard."),),
        shards=Sharding(lambda cfg: 2, _collect, "gather", "Gather the shards.", SMALL),
    )
    pretrain = StageSpec(
        name="pretrain", run=_writer("pretrain"), help="Pre-train.", resources=SMALL,
        inputs={"images": "make"}, depends=("pretrain",), gpu=lambda cfg: cfg.device != "cpu",
    )  # fmt: skip
    detect = StageSpec(
        name="detect", run=_writer("detect"), help="Fine-tune a detector.", resources=SMALL,
        inputs={"checkpoint": Upstream("pretrain", _label_space)}, depends=("dataset",), finish=finish,
    )  # fmt: skip
    return StageTable((make, pretrain, detect), run_key="make")


def _cfg(tmp_path, *overrides):
    base = ["dataset.name=eurosat", "pretrain.label_space=cifar100", f"store.root={tmp_path}"]
    return config.load("tiny", [*base, *overrides])


def test_a_stage_depends_on_every_field_upstream_of_it():
    table = _table([])
    assert table.fields("pretrain") == ("generate", "pretrain", "seed")
    assert table.fields("detect") == ("dataset", "generate", "pretrain", "seed")
    assert TABLE.fields("prompts") == ("dataset.name", "device", "models.le", "models.le_revision", "prompts", "seed")
    assert set(TABLE.fields("filter")) > set(TABLE.fields("generate")) > set(TABLE.fields("prompts"))


def test_an_input_from_another_run_folder_resolves_to_that_run(tmp_path):
    table, cfg = _table([]), _cfg(tmp_path)
    other = _label_space(cfg)
    run = table.run_dir(cfg)
    assert run == f"{tmp_path}/runs/eurosat-{cfg.digest('seed', 'generate')}"
    pretrain = table.stage_dir(table.run_dir(other), "pretrain", other)
    assert pretrain.startswith(f"{tmp_path}/runs/cifar100-")
    assert table.input_dirs("detect", run, cfg) == {"checkpoint": pretrain}
    assert table.folders("detect", run, cfg) == {
        "make": table.stage_dir(table.run_dir(other), "make", other),
        "pretrain": pretrain,
        "detect": table.stage_dir(run, "detect", cfg),
    }
    # A field of the other run changes this stage's folder too: its input is another checkpoint.
    longer = _cfg(tmp_path, "pretrain.epochs=7")
    assert table.stage_dir(run, "detect", longer) != table.stage_dir(run, "detect", cfg)


def test_execute_reads_the_inputs_runs_the_finish_hook_and_collects(tmp_path):
    finished = []
    table, cfg = _table(finished), _cfg(tmp_path)
    other = _label_space(cfg)
    other_run = table.run_dir(other)
    for shard in (0, 1):
        assert table.execute("make", other, other_run, shard=shard).result.shard == shard
    gathered = table.execute("make", other, other_run, collect=True)
    assert Path(gathered.out, "collected.json").is_file() and gathered.uri == gathered.out
    table.execute("pretrain", other, other_run)
    done = table.execute("detect", cfg, table.run_dir(cfg))
    assert done.result.inputs == {"checkpoint": table.stage_dir(other_run, "pretrain", other)}
    assert done.uri == storage.join(done.out, "report.json")
    assert finished == [table.folders("detect", table.run_dir(cfg), cfg)]
    with pytest.raises(UsageError, match=r"stage detect reads \['checkpoint'\], got \['images'\]"):
        table.execute("detect", cfg, table.run_dir(cfg), inputs={"images": "x"})
    with pytest.raises(UsageError, match="stage pretrain is not sharded"):
        table.execute("pretrain", cfg, table.run_dir(cfg), collect=True)


def test_the_gpu_need_may_depend_on_the_config():
    pretrain = _table([]).get("pretrain")
    assert pretrain.needs_gpu(config.load("tiny", ["device=cuda"])) and not pretrain.needs_gpu(config.load("tiny"))
    assert TABLE.get("prompts").needs_gpu(config.load("paper"))
    assert not TABLE.get("prompts").needs_gpu(config.load("paper", ["prompts.mode=B"]))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (lambda a, b: (a, a), "not a unique Python identifier"),
        (lambda a, b: (b, a), "reads 'a', which is not a row before it"),
        (lambda a, b: (a, StageSpec("c", a.run, "C.", SMALL, inputs={"out": "a"})), "'out' is reserved"),
        (lambda a, b: (StageSpec("bad-name", a.run, "Bad.", SMALL),), "not a unique Python identifier"),
    ],
)
def test_a_broken_row_is_refused_when_the_table_is_built(rows, message):
    a = StageSpec("a", _writer("a"), "A.", SMALL)
    b = StageSpec("b", _writer("b"), "B.", SMALL, inputs={"x": "a"})
    with pytest.raises(ValueError, match=message):
        StageTable(rows(a, b), run_key="a")


def test_every_row_of_the_table_fits_its_function():
    for spec in TABLE:
        params = inspect.signature(spec.run).parameters
        assert {*spec.inputs, "out", *(o.name for o in spec.options)} <= set(params), spec.name
        assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in spec.inputs), spec.name
        assert all(reader is None or callable(reader) for reader in spec.outputs.values()), spec.name
        if spec.shards:
            collect = inspect.signature(spec.shards.collect).parameters
            assert {"out", *(o.name for o in spec.shards.collect_options)} <= set(collect)
    assert [s.name for s in TABLE if s.shards] == ["generate", "guided"]


def test_a_row_added_to_the_real_table_is_laid_out_wired_and_run_with_nothing_else_changed(tmp_path):
    """A new zero-shot stage is its function and its row: the table gives it a folder, a place in
    the pipeline's stage list and its inputs' folders, and runs it."""
    seen = {}

    def audit(cfg, *, head, features, out, progress=True):
        seen.update(head=head, features=features)
        return _writer("audit")(cfg, out=out, head=head, features=features)

    row = StageSpec(name="audit", run=audit, help="Audit the tuned head.", resources=SMALL,
                    inputs={"head": "tune", "features": "features"}, depends=("tune.loss",))  # fmt: skip
    table = StageTable((*TABLE, row), run_key=TABLE.run_key)
    cfg = _cfg(tmp_path, "dataset.name=cifar10")
    run = table.run_dir(cfg)
    assert table.closure(("leakage", "audit"), cfg) == (
        "prompts", "generate", "filter", "test_features", "features", "leakage", "tune", "audit",
    )  # fmt: skip
    assert table.stage_dir(run, "audit", cfg).rsplit("/", 1)[-1].startswith("audit-")
    assert set(table.fields("audit", cfg)) == {*table.fields("tune", cfg), "tune.loss"}
    done = table.execute("audit", cfg, run, inputs=table.input_dirs("audit", run, cfg))
    assert seen == {"head": table.stage_dir(run, "tune", cfg), "features": table.stage_dir(run, "features", cfg)}
    assert storage.get_json(storage.join(done.out, "manifest.json"))["stage"] == "audit"


def test_a_row_that_runs_after_a_later_row_is_refused():
    early = StageSpec(name="early", run=_writer("early"), help="Early.", resources=SMALL, after=("late",))
    late = StageSpec(name="late", run=_writer("late"), help="Late.", resources=SMALL)
    with pytest.raises(ValueError, match="early runs after 'late', which is not a row before it"):
        StageTable((early, late), run_key="early")
