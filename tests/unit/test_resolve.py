"""The edge that makes a run's config: registry checks, run flags, pipeline parameters, the run folder's store."""

import json

import pytest
import typer
from synk8s.components.params import pipeline_arguments
from synk8s.components.plan import plan_run
from synk8s.components.run_stage import run_stage, shard_items
from typer.testing import CliRunner

from synk8s import config, datasets, flags, runs
from synk8s.cli.main import app
from synk8s.errors import UsageError
from synk8s.resolve import check, read_resolved, resolve

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dataset.name=cifar1000", "unknown dataset 'cifar1000'; choose one of: .*cifar100"),
        ("dataset.name=voc2007", "'voc2007' is a detection dataset; .*classification dataset: cifar10, cifar100"),
        ("pretrain.finetune.dataset=voc2012", "'voc2012' is a detection dataset"),
        ("models.clip=nope", "unknown CLIP model 'nope'; choose one of: rn50"),
        ("models.backbone=resnet9000", "unknown backbone 'resnet9000'"),
        ("models.generator=", "unknown generator ''"),
        ("models.le=t5", "unknown language-enhancement model 't5'"),
        ("store.root=file://host/x", "store.root: malformed file URI"),
        ("store.root=foo://b/x", "store.root: unsupported URI scheme 'foo'"),
        ("models.cache=foo://b/x", "models.cache: unsupported URI scheme 'foo'"),
    ],
)
def test_names_and_roots_are_checked_at_the_edge_in_one_line(override, message):
    config.load("tiny", [override])  # what the config says on its own is sound
    with pytest.raises(UsageError, match=message) as caught:
        resolve("tiny", [override])
    assert "\n" not in str(caught.value)


def test_file_uri_roots_become_their_local_paths():
    cfg = resolve("tiny", ["store.root=file:/tmp/x", "models.cache=file:///tmp/cache"])
    assert (cfg.store.root, cfg.models.cache) == ("/tmp/x", "/tmp/cache")
    assert cfg == config.load("tiny", ["store.root=/tmp/x", "models.cache=/tmp/cache"])
    plain = config.load("tiny")
    assert check(plain) is plain  # nothing to change: the same config


def test_hub_ids_pass_where_the_registry_takes_them():
    cfg = resolve("tiny", ["models.generator=someone/some-diffusion", "models.le=someone/some-t5"])
    assert (cfg.models.generator, cfg.models.le) == ("someone/some-diffusion", "someone/some-t5")


def test_a_flag_sets_its_field_after_the_overrides():
    by_flags = resolve("tiny", ["seed=1"], dataset="eurosat", seed=2, shots=3, store_root="s3://bkt/p", num_shards=None)
    by_sets = resolve(
        "tiny", ["seed=1", "dataset.name=eurosat", "seed=2", "fewshot.shots_per_class=3", "store.root=s3://bkt/p"]
    )
    assert by_flags == by_sets and by_flags.seed == 2
    assert by_flags.generate.num_shards == config.load("tiny").generate.num_shards  # None: not given
    assert resolve("tiny", label_space="imagenet-1k").dataset.name == "imagenet"  # the label space's source


def test_every_flag_names_a_config_field_of_its_type():
    paper = config.load("paper")
    for flag in flags.FLAGS:
        config.parse_override(f"{flag.key}=0")  # an unknown key is a UsageError
        value = paper
        for part in flag.key.split("."):
            value = getattr(value, part)
        assert value is None or isinstance(value, flag.type), flag.name
        assert flag.key in flag.help, flag.name
    # fixed when a pipeline compiles: the transfer, and your own files (stored; their URIs travel in overrides)
    assert {"transfer", *flags.FILE_FLAGS} == set(flags.BY_NAME) - set(flags.PARAMETERS)


def _options(*path: str) -> dict:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {opt: param for param in command.params for opt in param.opts}


@pytest.mark.parametrize(
    ("path", "names"),
    [
        (("submit",), [flag.name for flag in flags.FLAGS if flag.option]),
        (("plan",), ["dataset", "images_per_class", "num_shards", "generator", "shots", "label_space", "method"]),
        (("stage", "prompts"), ["dataset", "store_root"]),
    ],
)
def test_command_line_options_are_made_from_the_flags(path, names):
    options = _options(*path)
    for flag in (flags.BY_NAME[name] for name in names):
        option = options[flag.option]
        assert (option.name, option.help, option.envvar) == (flag.name, flag.help, flag.envvar)


def test_a_dataset_name_is_looked_up_once_per_edge(tmp_path, monkeypatch):
    looked_up = []
    for name in ("get", "require_classification"):
        real = getattr(datasets, name)
        monkeypatch.setattr(datasets, name, lambda value, real=real: looked_up.append(value) or real(value))
    monkeypatch.delenv("KFP_POD_NAME", raising=False)
    cfg = resolve("tiny", ["dataset.name=eurosat", f"store.root={tmp_path}"])  # the command line's edge
    assert looked_up.count("eurosat") == 1
    planned = plan_run(**pipeline_arguments(cfg))  # the plan task's edge: its parameters can be edited
    assert looked_up.count("eurosat") == 2
    assert shard_items("generate", planned.config_json, planned.run_dir)  # a stage task trusts the plan's config
    assert read_resolved(planned.config_json) == cfg
    assert looked_up.count("eurosat") == 2


def test_a_run_folder_is_one_of_the_store_roots_runs(tmp_path, monkeypatch):
    root = str(tmp_path / "store")
    assert runs.check_run_dir(root, f"{root}/runs/r1") == f"{root}/runs/r1"
    assert runs.check_run_dir("s3://bkt/p", "s3://bkt/p/runs/r1/") == "s3://bkt/p/runs/r1/"
    monkeypatch.chdir(tmp_path)
    assert runs.check_run_dir("./store", f"{root}/runs/r1")  # the same folder, written another way
    for run in (str(tmp_path / "other" / "runs" / "r1"), f"{root}/runs", f"{root}/runs/a/b", f"{root}/runs/..",
                f"{root}/shared/r1", "s3://bkt/q/runs/r1"):  # fmt: skip
        with pytest.raises(UsageError, match=r"is not in store.root .*: a run folder is .*/runs/<run id>; "):
            runs.check_run_dir(root, run)


def test_a_stage_command_refuses_a_run_id_that_leaves_the_store(tmp_path):
    store = tmp_path / "store"
    args = ["stage", "prompts", "--store", str(store), "--run-id", "../../elsewhere"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not in store.root" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing written, in the store or beside it


def test_a_stage_component_refuses_a_run_dir_of_another_store(tmp_path):
    cfg = resolve("tiny", [f"store.root={tmp_path / 'store'}"])
    with pytest.raises(UsageError, match="is not in store.root"):
        run_stage("prompts", cfg.model_dump_json(), str(tmp_path / "other" / "runs" / "r1"), metrics=None)
    assert not any(tmp_path.iterdir())
    assert json.loads(cfg.model_dump_json())["store"]["root"] == str(tmp_path / "store")
