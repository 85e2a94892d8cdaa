"""``synk8s results``: runs of one setting folded over seeds, beside the paper's cells, in Table 2's layout."""

import json
import math

import pytest
from typer.testing import CliRunner

from synk8s import storage
from synk8s.cli.main import app
from synk8s.errors import MissingDataError, UsageError
from synk8s.reports import results

pytestmark = pytest.mark.timeout(30)

# (prompts mode, filter, loss) -> tuned top-1 of seeds 0, 1, 2
RUNS = {
    ("B", False, "ce"): [0.40, 0.42, 0.44],
    ("LE", False, "sce"): [0.45, 0.46, 0.47],
    ("LE", True, "sce"): [0.50, 0.52, 0.57],
}


def _store_runs(root, dataset="cifar10", standin=True):
    for (mode, filtered, loss), tuned in RUNS.items():
        for seed, top1 in enumerate(tuned):
            digest = f"{mode}{int(filtered)}{loss}"
            report = {
                "dataset": dataset,
                "profile": "tiny",
                "zeroshot_top1": 0.30,
                "tuned_top1": top1,
                "config_digest": f"{digest}-{seed}",
                "run_dir": f"{root}/runs/{dataset}-{digest}{seed}",
                "seed": seed,
                "setting_digest": digest,
                "setting": {"prompts": mode, "filter": filtered, "loss": loss},
                "generator": "tiny-sd",
                **({"notice": "stand-in data"} if standin else {}),
            }
            storage.put_json(f"{root}/runs/{dataset}-{digest}{seed}/evaluate-{digest}/report.json", report)
            storage.put_json(f"{root}/runs/{dataset}-{digest}{seed}/tune-{digest}/manifest.json", {})


def test_seeds_fold_into_mean_and_sample_std(tmp_path):
    _store_runs(str(tmp_path))
    rows = results.aggregate(results.find_reports([str(tmp_path)]))
    assert [r.column for r in rows] == ["B/CE", "LE/SCE", "LE+CF/SCE"]
    best = rows[-1]
    assert best.seeds == (0, 1, 2) and best.tuned.n == 3
    assert best.tuned.mean == pytest.approx(53.0)
    assert best.tuned.std == pytest.approx(math.sqrt(((50 - 53) ** 2 + (52 - 53) ** 2 + (57 - 53) ** 2) / 2), abs=1e-3)
    assert best.paper == {"table": "2", "column": "LE+CF/SCE", "value": 80.06}
    assert best.standin


def test_one_seed_has_no_spread_and_a_b_with_cf_run_has_no_paper_cell():
    one = results.Stat.of([0.5])
    assert (one.n, one.mean, one.std, one.text()) == (1, 50.0, None, "50.00")
    assert results.table2_column({"prompts": "B", "filter": True, "loss": "sce"}) is None
    assert results.paper_cell("eurosat", "LE/CE")["value"] == 53.26
    assert results.paper_cell("dtd", "LE+CF/SCE") == {"table": "1", "column": "CLIP+SYN", "value": 43.19}


def test_results_prints_table_2_layout_from_stored_runs(tmp_path):
    _store_runs(str(tmp_path))
    out = CliRunner().invoke(app, ["results", str(tmp_path), "--table", "2"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    header = next(line for line in lines if line.startswith("| dataset"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "dataset", "source", "CLIP", "B/CE", "B/SCE", "LE/CE", "LE/SCE", "LE+CF/CE", "LE+CF/SCE"
    ]
    ours = next(line for line in lines if line.startswith("| cifar10 | ours"))
    cells = [c.strip() for c in ours.strip("|").split("|")]
    assert cells[1] == "ours (stand-in, 3 seeds)"
    assert cells[2:] == ["30.00 ± 0.00", "42.00 ± 2.00", "-", "-", "46.00 ± 1.00", "-", "53.00 ± 3.61"]
    paper = [c.strip() for c in lines[lines.index(ours) + 1].strip("|").split("|")]
    assert paper[1:] == ["paper", "70.31", "77.39 (+7.08)", "78.23 (+7.92)", "77.20 (+6.89)", "77.55 (+7.24)",
                         "80.01 (+9.70)", "80.06 (+9.75)"]
    assert any(line.startswith("| eurosat | paper | 37.51") for line in lines)  # not run: the paper's line alone
    assert "GLIDE" in out.output and "stand-in" in out.output


def test_results_writes_csv_and_json(tmp_path):
    _store_runs(str(tmp_path), dataset="eurosat", standin=False)
    csv_out = CliRunner().invoke(app, ["results", str(tmp_path), "--format", "csv"])
    header, *body = csv_out.output.splitlines()
    assert header.split(",") == list(results.CSV_COLUMNS) and len(body) == 3
    assert body[-1].startswith("eurosat,real,tiny,LE+CF/SCE,3,30.0,0.0,53.0,3.6056,")
    assert body[-1].endswith(",55.37,Table 2 LE+CF/SCE,tiny-sd,,,")
    target = tmp_path / "out.json"
    CliRunner().invoke(app, ["results", str(tmp_path), "--format", "json", "-o", str(target)])
    body = json.loads(target.read_text())
    assert [r["tuned"]["n"] for r in body["rows"]] == [3, 3, 3] and "GLIDE" in body["generator_note"]


def test_a_store_without_runs_and_bad_seeds_are_one_line_errors(tmp_path):
    with pytest.raises(MissingDataError, match="no run report"):
        results.find_reports([str(tmp_path)])
    assert results.parse_seeds("3") == [0, 1, 2] and results.parse_seeds("4,7") == [4, 7]
    for bad in ("0", "a,b", "1,1", ""):
        with pytest.raises(UsageError, match="--seeds"):
            results.parse_seeds(bad)


def test_aggregate_report_lands_in_the_store(tmp_path):
    _store_runs(str(tmp_path))
    uris = [str(p) for p in sorted(tmp_path.glob("runs/cifar10-LE1sce*/evaluate-*/report.json"))]
    uri = results.write_aggregate(uris, str(tmp_path))
    assert uri == f"{tmp_path}/results/cifar10-LE1sce.md"
    text = storage.get_bytes(uri).decode()
    assert "53.00 ± 3.61" in text and "80.06" in text
    assert json.loads(storage.get_bytes(uri[:-3] + ".json"))["rows"][0]["seeds"] == [0, 1, 2]
