"""``synk8s results --check``: finished runs of the three studies against expected cells and tolerances."""

import json
import re

import pytest
from typer.testing import CliRunner

from synk8s import storage
from synk8s.cli.main import app
from synk8s.reports import results_check

pytestmark = pytest.mark.timeout(30)

LE_CF_SCE = {"prompts": "LE", "filter": True, "loss": "sce"}


def _zeroshot(root, seed, tuned, zeroshot=0.35, profile="paper"):
    report = {"dataset": "cifar100", "profile": profile, "zeroshot_top1": zeroshot, "tuned_top1": tuned,
              "seed": seed, "setting": LE_CF_SCE, "setting_digest": "s", "config_digest": f"z{seed}",
              "run_dir": f"{root}/runs/cifar100-z{seed}"}
    storage.put_json(f"{root}/runs/cifar100-z{seed}/evaluate-d{seed}/report.json", report)


def _fewshot(root, shots, ct_init, ct_syn, profile="paper"):
    report = {"dataset": "eurosat", "profile": profile, "shots": shots, "strategy": "RG", "schedule": "mix",
              "freeze_bn": True, "top1": {"zeroshot": 0.375, "ct_init": ct_init, "ct_syn": ct_syn},
              "config_digest": f"f{shots}", "run_dir": f"{root}/runs/eurosat-f"}
    storage.put_json(f"{root}/runs/eurosat-f/fewshot-evaluate-m{shots}/report.json", report)


def _pretrain(root, pretrained, scratch, profile="paper"):
    report = {"method": "supervised", "label_space": "cifar100", "classes": 100, "images": 1200000,
              "pretrain_init": "scratch", "profile": profile, "transfer": "cifar100", "metric": "top1",
              "pretrained": {"top1": pretrained}, "scratch": {"top1": scratch},
              "config_digest": "p", "run_dir": f"{root}/runs/cifar100-p"}
    storage.put_json(f"{root}/runs/cifar100-p/finetune-a/report.json", report)
    storage.put_json(f"{root}/runs/cifar100-p/finetune-b/manifest.json", {})  # the scratch side: no report


def _expect(tmp_path, cells, **extra):
    path = tmp_path / "expect.json"
    path.write_text(json.dumps({"defaults": {"scale": 100, "tolerance": 1.5}, "cells": cells, **extra}))
    return str(path)


CELLS = [
    {"study": "zeroshot", "dataset": "cifar100", "metric": "tuned_top1", "expected": 45.0, "required": True},
    {"study": "fewshot", "dataset": "eurosat", "metric": "top1.ct_syn", "where": {"shots": 16}, "expected": 88.0},
    {"study": "fewshot", "dataset": "eurosat", "metric": "top1.ct_init@shots=16 - top1.ct_init@shots=1",
     "scale": 1, "min": 0.1},
    {"study": "pretrain", "dataset": "cifar100", "metric": "pretrained.top1 - scratch.top1", "scale": 1, "min": 0.02},
]


def _store(root, tuned=(0.44, 0.46)):
    for seed, top1 in enumerate(tuned):
        _zeroshot(root, seed, top1)
    _fewshot(root, 1, 0.60, 0.62)
    _fewshot(root, 16, 0.85, 0.885)
    _pretrain(root, 0.84, 0.79)


def _check(*args):
    return CliRunner().invoke(app, ["results", *args])


def _rows(output):
    """metric -> the columns of its line (split at two or more spaces)."""
    lines = output.splitlines()
    return {cols[3]: cols for cols in (re.split(r"\s{2,}", line.strip()) for line in lines[1:-1])}


def test_cells_within_tolerance_and_bounds_pass(tmp_path):
    _store(str(tmp_path / "store"))
    out = _check(str(tmp_path / "store"), "--check", "--expect", _expect(tmp_path, CELLS))
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0].split() == [
        "study", "dataset", "cell", "metric", "expected", "tolerance", "measured", "status"
    ]
    rows = _rows(out.output)
    assert rows["tuned_top1"] == ["zeroshot", "cifar100", "-", "tuned_top1", "45", "±1.5", "45 (2 runs)", "ok"]
    assert rows["top1.ct_init@shots=16 - top1.ct_init@shots=1"][4:] == [">= 0.1", "-", "0.25 (1 run)", "ok"]
    assert rows["pretrained.top1 - scratch.top1"][6:] == ["0.05 (1 run)", "ok"]
    assert out.output.splitlines()[-1] == (
        f"check against {tmp_path / 'expect.json'}: 4 cells, 4 ok, 0 DRIFT, 0 missing (0 of them required): passed"
    )


def test_a_drifted_cell_fails_and_its_line_names_it(tmp_path):
    _store(str(tmp_path / "store"), tuned=(0.40, 0.42))  # 41.0 against 45 ± 1.5
    out = _check(str(tmp_path / "store"), "--check", "--expect", _expect(tmp_path, CELLS))
    assert out.exit_code == 1
    assert _rows(out.output)["tuned_top1"][-2:] == ["41 (2 runs)", "DRIFT"]
    assert out.output.splitlines()[-1].endswith("3 ok, 1 DRIFT, 0 missing (0 of them required): FAILED")


def test_a_bound_below_min_drifts(tmp_path):
    _store(str(tmp_path / "store"))
    _pretrain(str(tmp_path / "store"), 0.79, 0.79)  # pre-training gains nothing
    out = _check(str(tmp_path / "store"), "--check", "--expect", _expect(tmp_path, CELLS))
    assert out.exit_code == 1
    assert _rows(out.output)["pretrained.top1 - scratch.top1"][-2:] == ["0 (1 run)", "DRIFT"]


def test_a_missing_run_fails_only_when_required(tmp_path):
    root = str(tmp_path / "store")
    _fewshot(root, 1, 0.60, 0.62)
    _fewshot(root, 16, 0.85, 0.885)
    _pretrain(root, 0.84, 0.79)
    optional = [{**cell, "required": False} for cell in CELLS]
    out = _check(root, "--check", "--expect", _expect(tmp_path, optional))
    assert out.exit_code == 0, out.output
    assert _rows(out.output)["tuned_top1"][-2:] == ["-", "missing"]
    out = _check(root, "--check", "--expect", _expect(tmp_path, optional), "--require-all")
    assert out.exit_code == 1 and _rows(out.output)["tuned_top1"][-1] == "missing (required)"
    out = _check(root, "--check", "--expect", _expect(tmp_path, CELLS))  # the zero-shot cell is required
    assert out.exit_code == 1
    assert out.output.splitlines()[-1].endswith("3 ok, 0 DRIFT, 1 missing (1 of them required): FAILED")


def test_the_file_where_selects_runs_by_profile(tmp_path):
    root = str(tmp_path / "store")
    _store(root)
    _zeroshot(root, 7, 0.01, profile="tiny")  # another profile's run does not join the mean
    out = _check(root, "--check", "--expect", _expect(tmp_path, CELLS, where={"profile": "paper"}))
    assert out.exit_code == 0, out.output
    assert _rows(out.output)["tuned_top1"][-2:] == ["45 (2 runs)", "ok"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "is not JSON"),
        (json.dumps({"cells": []}), "'cells' must be a non-empty list"),
        (json.dumps({"cells": [{"study": "zeroshot", "dataset": "cifar100", "metric": "tuned_top1"}]}),
         "cell 1: give expected (or paper) with a tolerance, or min and/or max"),
        (json.dumps({"cells": [{"study": "detect", "dataset": "voc", "metric": "ap50", "min": 1}]}),
         "cell 1: study must be one of zeroshot, fewshot, pretrain, got 'detect'"),
        (json.dumps({"cells": [{"study": "zeroshot", "dataset": "cifar100", "metric": "tuned_top1", "expected": 45}]}),
         "cell 1: an expected cell needs a tolerance"),
        (json.dumps({"cells": [{"study": "zeroshot", "dataset": "cifar100", "metric": "a - b - c", "min": 0}]}),
         "cell 1: metric is a path or the difference of two"),
        (json.dumps({"cells": [{"study": "zeroshot", "dataset": "cifar100", "metric": "x",
                                "paper": {"table": "2", "row": "cifar100", "column": "LE+CF"}, "tolerance": 1}]}),
         "names no cell of paper_tables.json"),
        (json.dumps({"cells": [{"study": "zeroshot", "dataset": "cifar100", "metric": "x", "min": 0, "typo": 1}]}),
         "cell 1: unknown key(s) typo"),
    ],
)
def test_a_bad_expectations_file_is_one_line_and_exit_2(tmp_path, body, message):
    _store(str(tmp_path / "store"))
    path = tmp_path / "bad.json"
    path.write_text(body)
    out = _check(str(tmp_path / "store"), "--check", "--expect", str(path))
    assert out.exit_code == 2
    assert message in out.output and len(out.output.strip().splitlines()) == 1


def test_a_metric_path_a_run_lacks_is_a_usage_error(tmp_path):
    _store(str(tmp_path / "store"))
    cells = [{"study": "zeroshot", "dataset": "cifar100", "metric": "tuned_top5", "min": 0}]
    out = _check(str(tmp_path / "store"), "--check", "--expect", _expect(tmp_path, cells))
    assert out.exit_code == 2 and "has no field tuned_top5" in out.output


def test_check_flags_are_checked_against_each_other(tmp_path):
    _store(str(tmp_path / "store"))
    out = _check(str(tmp_path / "store"), "--check", "--table", "2")
    assert out.exit_code == 2 and "--check prints its own lines" in out.output
    out = _check(str(tmp_path / "store"), "--expect", "tiny")
    assert out.exit_code == 2 and "--expect and --require-all go with --check" in out.output
    out = _check(str(tmp_path / "store"), "--check", "--expect", str(tmp_path / "nowhere.json"))
    assert out.exit_code == 2 and "no such file" in out.output


def test_the_paper_file_covers_every_study_with_the_paper_numbers():
    cells = results_check.load_expectations("paper")
    assert {c.study for c in cells} == set(results_check.STUDIES)
    required = {(c.study, c.dataset, c.metric, c.expected) for c in cells if c.required}
    assert required >= {
        ("zeroshot", "cifar100", "zeroshot_top1", 35.35),
        ("zeroshot", "cifar100", "tuned_top1", 45.69),
        ("fewshot", "eurosat", "top1.ct_syn", 88.47),
        ("pretrain", "cifar100", "pretrained.top1", 83.9),
        ("pretrain", "cifar100", "scratch.top1", 78.83),
    }
    assert {c.tolerance for c in cells if c.metric.endswith("ap50")} == {2.0}
    assert {c.tolerance for c in cells if not c.metric.endswith("ap50")} == {1.5}
    assert all(dict(c.where)["profile"] == "paper" for c in cells)


def test_the_tiny_file_holds_bounded_cells_of_every_study():
    cells = results_check.load_expectations("tiny")
    assert {c.study for c in cells} == set(results_check.STUDIES)
    assert all(c.expected is None and c.low is not None for c in cells)
    shots = next(c for c in cells if "@shots=4" in c.metric)
    assert [dict(t.where) for t in shots.terms] == [{"shots": 4}, {"shots": 1}]


def test_a_sweep_file_stands_for_the_reports_it_lists(tmp_path):
    root = str(tmp_path / "store")
    _fewshot(root, 1, 0.60, 0.62)
    _fewshot(root, 16, 0.85, 0.885)
    runs = [storage.get_json(f"{root}/runs/eurosat-f/fewshot-evaluate-m{m}/report.json") for m in (1, 16)]
    sweep = f"{root}/runs/eurosat-f/fewshot-sweep-x/sweep.json"
    storage.put_json(sweep, {"dataset": "eurosat", "shots": [1, 16], "ct_init_top1": [0.6, 0.85], "runs": runs})
    reports = results_check.find_study_reports([sweep])
    assert sorted(r["shots"] for r in reports) == [1, 16] and {r["study"] for r in reports} == {"fewshot"}


def test_a_term_selection_replaces_the_cells_key(tmp_path):
    root = str(tmp_path / "store")
    _fewshot(root, 1, 0.60, 0.62)
    _fewshot(root, 16, 0.85, 0.885)
    cells = [{"study": "fewshot", "dataset": "eurosat", "where": {"shots": 16}, "scale": 1,
              "metric": "top1.ct_syn - top1.ct_syn@shots=1", "min": 0.2, "max": 0.3}]
    (outcome,) = results_check.check(results_check.load_expectations(_expect(tmp_path, cells)),
                                     results_check.find_study_reports([root]))
    assert outcome.status == "ok" and outcome.measured == pytest.approx(0.265)
    assert outcome.cell.bound_text() == ("in [0.2, 0.3]", "-")
