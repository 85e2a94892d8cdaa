"""Rerun of the README's main command when every stage is complete: kfp.local skipped vs started.

    python benchmarks/bench_rerun.py --folder /tmp/rerun-bench --rounds 3

In ``--folder`` (created; the store and stand-in data go there) the command
``synk8s submit zeroshot --dataset cifar100 --local --profile tiny`` runs once (the first run; in a
folder that holds a finished run already, a rerun),
then ``--rounds`` times each, interleaved: the command as it is (a complete run is replayed in the
submitting process, :mod:`synk8s.pipelines.replay`) and the same command with the replay switched
off, so kfp.local starts every task, each of which finds its stage complete. Last, one stage output
is damaged (the tuned head's bytes) and the command runs again: the tune stage must run again (its
head is rewritten) and the others not. Prints one JSON line: wall seconds, their medians and ratio,
whether kfp.local's log was written by the replayed reruns, and the folders of the run (stage
folders, ``cost``) where the damaged rerun rewrote files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import commit  # noqa: E402

COMMAND = ["submit", "zeroshot", "--dataset", "cifar100", "--local", "--profile", "tiny"]
# The same CLI with the replay switched off: kfp.local runs every task (each resumes its stage).
NO_REPLAY = (
    "import synk8s.pipelines.replay as replay; replay.complete_output = lambda *a, **k: None; "
    "from synk8s.cli.main import main; import sys; sys.argv = ['synk8s', *sys.argv[1:]]; main()"
)


def _run(folder: Path, replay: bool) -> float:
    """Wall seconds of the command in ``folder``; raises when it fails."""
    argv = [sys.executable, "-m", "synk8s", *COMMAND] if replay else [sys.executable, "-c", NO_REPLAY, *COMMAND]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the command failed ({'replay' if replay else 'kfp.local'}): {done.stderr[-2000:]}")
    return seconds


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="working folder (store, data)")
    parser.add_argument("--rounds", type=int, default=3, help="reruns of each kind, interleaved")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    first = _run(args.folder, replay=True)
    log = args.folder / "synk8s-store" / "kfp-local" / "last-run.log"
    replayed, started, log_written = [], [], False
    for _ in range(args.rounds):
        before = log.stat().st_mtime_ns
        replayed.append(round(_run(args.folder, replay=True), 2))
        log_written |= log.stat().st_mtime_ns != before
        started.append(round(_run(args.folder, replay=False), 2))
    (head,) = (args.folder / "synk8s-store" / "runs").glob("cifar100-*/tune-*/head.safetensors")
    head.write_bytes(head.read_bytes()[:-8] + bytes(8))
    before = _mtimes(args.folder / "synk8s-store" / "runs")
    damaged = _run(args.folder, replay=True)
    after = _mtimes(args.folder / "synk8s-store" / "runs")
    rewritten = sorted({name.split("/")[1] for name in after if after[name] != before.get(name)})
    line = {
        "benchmark": "rerun_complete_run",
        "command": "synk8s " + " ".join(COMMAND),
        "first_run_s": round(first, 2),
        "rerun_replayed_s": replayed,
        "rerun_kfp_local_s": started,
        "median_replayed_s": statistics.median(replayed),
        "median_kfp_local_s": statistics.median(started),
        "kfp_local_over_replayed": round(statistics.median(started) / statistics.median(replayed), 2),
        "replayed_rerun_wrote_kfp_local_log": log_written,
        "damaged_tune_rerun_s": round(damaged, 2),
        "damaged_tune_rerun_rewrote": rewritten,
        "commit": commit(),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
