"""Fan-out at scale, simulated on one machine: how each cost grows with shards, objects and tars.

Each subcommand prints one JSON line whose ratios compare sizes measured in the same run:

* ``compile``: every pipeline compiled with ``generate.num_shards`` 10, 100 and 1000 (the config
  allows at most 1024): seconds and spec bytes, the spec's growth per 10x shards (1.0: constant),
  and the bytes that grow at run time instead (the shard list the ParallelFor iterates, with the
  paper config and a config twice its size, against etcd's 1.5 MiB; the fan-in).
* ``collect``: the generate stage's collect step over N tiny real shards (the tiny profile's painter,
  one image per shard) for N = 100 and 1000: seconds per shard at 10x the shards.
* ``store``: tiny objects put through :mod:`synk8s.storage` into a local S3 server (moto's
  standalone server, in a process of its own), then one listing of the prefix and 1000 reads, at
  10k and 100k objects (``--counts``): cost per object and its ratio at 10x the objects.
* ``loader``: the pre-training shard stream (:class:`synk8s.stream.ShardStream`) over the same drawn
  images split into 10 and 100 tars, with 0 and 2 DataLoader workers: images/s.

    python benchmarks/bench_scale.py compile
    python benchmarks/bench_scale.py collect --counts 100,1000
    python benchmarks/bench_scale.py store --counts 10000,100000
    python benchmarks/bench_scale.py loader --workers 0,2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from timing import environment  # benchmarks/timing.py, beside this script

from synk8s import config, storage

PIPELINE_NAMES = ("zeroshot", "fewshot", "fewshot_sweep", "pretrain")
ETCD_OBJECT_BYTES = 1_572_864  # 1.5 MiB: etcd's default request limit, which caps an Argo Workflow object
# 200 GPU node labels: the paper config more than doubles (3.7 KB -> 8.5 KB) while the shard items stay as they are
GROWN_CONFIG = ("cluster.gpu_node_selector={" + ", ".join(f"label-{i:03d}: value-{i:03d}" for i in range(200)) + "}",)


def _ratio(large: float, small: float) -> float:
    return round(large / small, 3) if small else float("nan")


def bench_compile(args: argparse.Namespace) -> dict:
    """Compile seconds and spec bytes per pipeline and shard count; bytes ratio per 10x shards."""
    from synk8s.pipelines import compile_pipeline

    counts = [int(c) for c in args.counts.split(",")]
    found: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        compile_pipeline("zeroshot", config.load("paper"), f"{folder}/warm.yaml")  # imports, component build
        for name in PIPELINE_NAMES:
            rows = {}
            for count in counts:
                cfg = config.load("paper", [f"generate.num_shards={count}"])
                start = time.perf_counter()
                path = compile_pipeline(name, cfg, f"{folder}/{name}-{count}.yaml")
                rows[count] = {"seconds": round(time.perf_counter() - start, 3), "bytes": path.stat().st_size}
            first, last = counts[0], counts[-1]
            per_10x = (rows[last]["bytes"] / rows[first]["bytes"]) ** (1 / math.log10(last / first))
            found[name] = {
                "seconds": {str(c): r["seconds"] for c, r in rows.items()},
                "bytes": {str(c): r["bytes"] for c, r in rows.items()},
                "bytes_ratio_per_10x_shards": round(per_10x, 4),
            }
        runtime = _runtime_bytes(counts, f"{folder}/store")
    return {"benchmark": "scale_compile", "shards": counts, "pipelines": found, "runtime_bytes": runtime}


def _runtime_bytes(counts: list[int], root: str) -> dict:
    """What grows at run time instead: the generate shard list (one item per shard, each carrying the
    digest of the config its shard list stored under ``root``), with the paper config and with one
    grown by :data:`GROWN_CONFIG`, and the fan-in of the shard tasks' outputs (one folder URI each)
    that ``dsl.Collected`` hands to collect. Against etcd's 1.5 MiB cap on an Argo Workflow object."""
    from synk8s.components.run_stage import shard_items

    from synk8s.stages.table import TABLE

    found: dict = {"store_root_chars": len(root), "config_bytes": {}, "shard_list": {}, "item_max": {}, "collected": {}}
    for grown in (False, True):
        name = "grown" if grown else "paper"
        for count in counts:
            cfg = config.load("paper", [f"generate.num_shards={count}", f"store.root={root}", *(GROWN_CONFIG * grown)])
            run = TABLE.run_dir(cfg)
            items = shard_items("generate", cfg.model_dump_json(), run, prompts=TABLE.stage_dir(run, "prompts", cfg))
            found["config_bytes"][name] = len(cfg.model_dump_json())
            found["shard_list"].setdefault(name, {})[str(count)] = len(json.dumps(items))
            found["item_max"].setdefault(name, {})[str(count)] = max(len(json.dumps(item)) for item in items)
            if not grown:
                found["collected"][str(count)] = len(json.dumps([TABLE.stage_dir(run, "generate", cfg)] * count))
    largest = max(found["shard_list"]["grown"].values())
    found["largest_shard_list_over_etcd_limit"] = round(largest / ETCD_OBJECT_BYTES, 4)
    return found


def bench_collect(args: argparse.Namespace) -> dict:
    """Seconds of the collect step over N one-image shards, and the cost per shard at the largest N."""
    from synk8s.stages.table import TABLE

    counts = [int(c) for c in args.counts.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        for count in counts:
            cfg = config.load(
                "tiny",
                [f"store.root={folder}/{count}", "dataset.name=cifar10", f"generate.num_shards={count}",
                 f"generate.images_per_class={count // 10}"],
            )  # fmt: skip
            run = TABLE.run_dir(cfg)
            TABLE.execute("prompts", cfg, run)
            start = time.perf_counter()
            for shard in range(count):
                TABLE.execute("generate", cfg, run, shard=shard, num_shards=count)
            made = time.perf_counter() - start
            start = time.perf_counter()
            done = TABLE.execute("generate", cfg, run, collect=True, resume=False, num_shards=count)
            seconds = time.perf_counter() - start
            manifest = storage.stat(done.result.manifest_uri).size
            rows[count] = {"write_shards_s": round(made, 2), "collect_s": round(seconds, 3), "manifest_bytes": manifest}
    small, large = counts[0], counts[-1]
    per_shard = {c: r["collect_s"] / c for c, r in rows.items()}
    return {
        "benchmark": "scale_collect",
        "shards": {str(c): r for c, r in rows.items()},
        "collect_ms_per_shard": {str(c): round(1000 * v, 3) for c, v in per_shard.items()},
        "per_shard_ratio_at_10x": _ratio(per_shard[large], per_shard[small]),
        "manifest_bytes_per_shard": {str(c): round(r["manifest_bytes"] / c, 1) for c, r in rows.items()},
    }


def _put_many(prefix: str, count: int, threads: int) -> float:
    """Put ``count`` 16-byte objects under ``prefix`` from ``threads`` threads; returns seconds."""
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: storage.put_bytes(f"{prefix}/{i:07d}.json", b"{\"i\": %07d}   " % i), range(count)))
    return time.perf_counter() - start


@contextlib.contextmanager
def _moto_server() -> Iterator[str]:
    """Moto's S3 server in a process of its own (as MinIO runs apart from its clients); yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"moto did not listen on 127.0.0.1:{port} within 20 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _store_row(prefix: str, count: int, args: argparse.Namespace) -> dict:
    """Put ``count`` objects under ``prefix``, list it once and read ``args.reads`` of them spread over it."""
    put = _put_many(prefix, count, args.threads)
    start = time.perf_counter()
    listed = storage.list(prefix)
    list_s = time.perf_counter() - start
    if len(listed) != count:
        raise RuntimeError(f"listed {len(listed)} objects under {prefix}, put {count}")
    step = max(1, count // args.reads)
    start = time.perf_counter()
    for i in range(0, step * args.reads, step):
        storage.get_bytes(f"{prefix}/{i:07d}.json")
    read_s = time.perf_counter() - start
    return {"put_s": round(put, 2), "list_s": round(list_s, 3), "read_s": round(read_s, 3)}


def bench_store(args: argparse.Namespace) -> dict:
    """Put, list and read tiny objects on a local S3 server through :mod:`synk8s.storage`; cost per object.

    ``storage.list`` pages through the prefix's names and reads each object's recorded SHA-256 with
    a HEAD request (8 at once), as every listing in synk8s does; a read is one verified GET.
    """
    counts = [int(c) for c in args.counts.split(",")]
    rows = {}
    with _moto_server() as url:
        os.environ.update(SYNK8S_S3_ENDPOINT=url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret")
        storage.clear_cache()
        storage.ensure_bucket("s3://bench-scale")
        for count in counts:
            rows[count] = _store_row(f"s3://bench-scale/n{count}", count, args)
    small, large = counts[0], counts[-1]

    def per_object(key: str, count: int) -> float:
        return rows[count][key] / (args.reads if key == "read_s" else count)

    return {
        "benchmark": "scale_store",
        "server": "moto standalone server, own process (in-memory)",
        "put_threads": args.threads,
        "reads": args.reads,
        "objects": {str(c): r for c, r in rows.items()},
        "ms_per_object": {
            key: {str(c): round(1000 * per_object(key, c), 3) for c in counts} for key in ("put_s", "list_s", "read_s")
        },
        "per_object_ratio": {
            key: _ratio(per_object(key, large), per_object(key, small)) for key in ("put_s", "list_s", "read_s")
        },
    }


def bench_loader(args: argparse.Namespace) -> dict:
    """Images/s of the shard stream over the same images in 10 and 100 tars, per worker count."""
    import torch
    from bench_pretrain import loader_images_per_s

    from synk8s.datasets.drawn_images import write_drawn_images

    torch.set_num_threads(1)
    tar_counts = [int(t) for t in args.tars.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    images = args.images
    rates: dict[int, dict[int, float]] = {t: {} for t in tar_counts}
    options = argparse.Namespace(method="supervised", resolution=32, workers=0, loader_batches=args.batches)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        for tars in tar_counts:
            write_drawn_images(f"{folder}/{tars}", classes=10, per_class=images // 10, seed=0,
                               samples_per_tar=images // tars)  # fmt: skip
        for _ in range(args.repeats):  # the tar counts take turns, the best of each counts
            for tars in tar_counts:
                for w in workers:
                    rate = loader_images_per_s(options, f"{folder}/{tars}", 32, w)
                    rates[tars][w] = max(rates[tars].get(w, 0.0), rate)
    small, large = tar_counts[0], tar_counts[-1]
    return {
        "benchmark": "scale_loader",
        "images": images,
        "batch": 32,
        "batches": args.batches,
        "images_per_s": {str(t): {str(w): round(r, 1) for w, r in by.items()} for t, by in rates.items()},
        "many_over_few_tars": {str(w): _ratio(rates[large][w], rates[small][w]) for w in workers},
        "workers_over_inline": {str(t): _ratio(rates[t][workers[-1]], rates[t][workers[0]]) for t in tar_counts},
    }


def main(argv: list[str] | None = None) -> dict:
    """Run one subcommand; print (and return) its JSON result line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compile", help="spec size and compile time per shard count")
    p.add_argument("--counts", default="10,100,1000", help="generate.num_shards values, <= 1024 (default 10,100,1000)")
    p = sub.add_parser("collect", help="collect over thousands of tiny shards")
    p.add_argument("--counts", default="100,1000", help="shard counts, multiples of 10, <= 1024 (default 100,1000)")
    p = sub.add_parser("store", help="put, list and read tiny objects on a local S3 server")
    p.add_argument("--counts", default="10000,100000", help="object counts (default 10000,100000)")
    p.add_argument("--reads", type=int, default=1000, help="objects read at each count (default 1000)")
    p.add_argument("--threads", type=int, default=8, help="threads putting objects (default 8)")
    p = sub.add_parser("loader", help="shard stream images/s over few vs many tars")
    p.add_argument("--tars", default="10,100", help="tar counts (default 10,100)")
    p.add_argument("--workers", default="0,2", help="DataLoader worker counts (default 0,2)")
    p.add_argument("--images", type=int, default=2000, help="images in all (default 2000)")
    p.add_argument("--batches", type=int, default=30, help="batches of 32 timed (default 30)")
    p.add_argument("--repeats", type=int, default=3, help="rounds; the fastest counts (default 3)")
    args = parser.parse_args(argv)
    run = {"compile": bench_compile, "collect": bench_collect, "store": bench_store, "loader": bench_loader}
    result = {**run[args.command](args), **environment()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
