"""Streaming a batch's raw results through an S3-compatible store: MB/s and peak RSS.

    python benchmarks/bench_store.py --results 100000

Starts moto's S3 server in its own process (so the objects it keeps in memory are not counted),
writes a results file of N lines shaped like the API's, then times, in a fresh process each,
what a run with `--store s3://…` does with it: upload it whole (put_whole, multipart in 8 MB
parts) and download it to a spool file (RemoteStore.fetch) and read its lines, as collect does.
`baseline` is the interpreter with batchrunner.store imported (fsspec not yet): most of the
rest is botocore's. The RSS stays flat as N grows.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_collect import result_line

CHILD = r"""
import resource, sys, time
from pathlib import Path
from batchrunner.requestfile import iter_lines
from batchrunner.store import RemoteStore, put_whole
what, path, url = sys.argv[1:4]
start = time.perf_counter()
if what == "upload":
    put_whole(Path(path), url)
elif what == "baseline":
    pass
else:
    store = RemoteStore(url.rsplit("/", 1)[0], Path(path))
    assert sum(1 for _ in iter_lines(store.fetch(url.rsplit("/", 1)[1]))) == int(sys.argv[4])
took = time.perf_counter() - start
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=int, default=100_000)
    args = parser.parse_args()
    port = free_port()
    env = os.environ | {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
                        "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    moto_server = Path(sys.executable).with_name("moto_server")
    server = subprocess.Popen([str(moto_server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rng = random.Random(7)
            results = Path(tmp) / "results.jsonl"
            with results.open("wb") as out:
                for i in range(args.results):
                    out.write(result_line(f"r-{i}", rng) + b"\n")
            size_mb = results.stat().st_size / 1e6
            for _ in range(50):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            subprocess.run([sys.executable, "-c", "import s3fs; s3fs.S3FileSystem().mkdir('bench')"], env=env, check=True)
            url = "s3://bench/results/msgbatch_bench.jsonl"
            print(f"{args.results:,} results, {size_mb:.1f} MB")
            for what, path in (("baseline", results), ("upload", results), ("download", Path(tmp) / "spool")):
                done = subprocess.run([sys.executable, "-c", CHILD, what, str(path), url, str(args.results)], env=env, check=True,
                                      capture_output=True, text=True)
                took, rss = map(float, done.stdout.split())
                speed = "" if what == "baseline" else f"{size_mb / took:6.1f} MB/s"
                print(f"{what:8s} {took:6.2f} s  {speed:10s} peak RSS {rss:5.0f} MB")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
