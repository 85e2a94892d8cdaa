"""The summary a finished run prints: every study's accuracies are in it, in the unit they are reported in."""

from rich.console import Console

from synk8s.cli.summary import summary_table


def _shown(report: dict) -> str:
    console = Console(record=True, width=400)
    console.print(summary_table(report, "report.json"))
    return console.export_text()


def test_a_fewshot_report_shows_each_heads_top1():
    shown = _shown({
        "dataset": "eurosat", "shots": 4, "top1": {"zeroshot": 0.075, "ct_init": 0.45, "ct_syn": 0.8625},
        "selection": {"rule": "last", "ct_init_val_top1": None, "ct_syn_epoch": 10},
    })  # fmt: skip
    assert "top1      │ zeroshot 7.50 %, ct_init 45.00 %, ct_syn 86.25 %" in shown
    assert "selection │ rule last, ct_syn_epoch 10" in shown  # the selection keeps its own row, no accuracy row


def test_a_transfer_report_shows_top1_as_percent_and_detection_ap_in_points():
    shown = _shown({
        "images": 1000, "pretrained": {"top1": 0.41125, "folder": "f", "test": 800},
        "scratch": {"ap": 38.64, "ap50": 84.14, "init": "scratch"},
        "cost": {"device_hours": 0.5}, "counts": {"real": 4},
    })  # fmt: skip
    assert "pretrained │ top1 41.12 %" in shown
    assert "scratch    │ ap 38.64, ap50 84.14" in shown
    assert "device_hours" not in shown  # no accuracy, no row
