"""Writing the output: 1,000,000 results to JSONL, CSV and Parquet, rows/s and peak RSS each.

    python benchmarks/bench_output.py --repeat 3              # the README's numbers
    python benchmarks/bench_output.py --rows 2000 --json      # what the test runs

Builds a collected run as bench_collect.py does (rows.jsonl, a ledger with every result joined:
97% succeeded with a parsed label, the rest errored or expired), then times `write_output` once
per format, each in a fresh process so its peak RSS is its own. Targets: CSV and Parquet within
1.5x the JSONL time, each under 250 MB. `--repeat 3` reports each format's best of three (its
shortest wall time, its least CPU time) and the load average: on a shared machine the CPU
seconds move less than the wall seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

FORMATS = ("jsonl", "csv", "parquet")


def prepare(folder: Path, rows: int) -> None:
    """A run whose every batch is collected: only the output is left to write."""
    from bench_collect import build

    from batchrunner.collect import collect_batch
    from batchrunner.ledger import Ledger

    build(folder, rows)
    with Ledger(folder / "home") as ledger:
        run = ledger.run("bench")
        for batch in ledger.batches(run):
            asyncio.run(collect_batch(None, ledger, run, batch, lambda message: None))  # type: ignore[arg-type]  # on disk


def write(folder: Path, suffix: str) -> dict[str, object]:
    from batchrunner.collect import write_output
    from batchrunner.ledger import Ledger

    with Ledger(folder / "home") as ledger:
        run = dataclasses.replace(ledger.run("bench"), output_path=folder / f"out.{suffix}")
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        path = write_output(ledger, run, "local")
        seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    return {"format": suffix, "rows": run.requests, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
            "rows_per_s": round(run.requests / seconds), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "mb": round(Path(path).stat().st_size / 1e6, 1), "path": str(path)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--keep", type=Path, help="build the run in this folder and keep it")
    parser.add_argument("--repeat", type=int, default=1, help="write each format this many times; report the best")
    parser.add_argument("--write-only", nargs=2, metavar=("FOLDER", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_only:
        print(orjson.dumps(write(Path(args.write_only[0]), args.write_only[1])).decode())
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        prepare(folder, args.rows)
        load = os.getloadavg()[0]
        report: dict[str, dict[str, Any]] = {}
        for _ in range(args.repeat):  # the formats take turns, so a burst of load falls on each alike
            for suffix in FORMATS:
                done = subprocess.run([sys.executable, __file__, "--write-only", str(folder), suffix],
                                      capture_output=True, check=True, text=True)  # fmt: skip
                report[suffix] = best(report.get(suffix), orjson.loads(done.stdout))
        for suffix in FORMATS:  # wall time is what the target is about; CPU time moves less on a shared machine
            for measure in ("seconds", "cpu_seconds"):
                ratio = float(report[suffix][measure]) / float(report["jsonl"][measure])
                report[suffix][f"{measure}_vs_jsonl"] = round(ratio, 2)
        loads = {"load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2), "runs": args.repeat}
        if args.json:
            print(orjson.dumps({**report, **loads}).decode())
            return
        for suffix in FORMATS:
            r = report[suffix]
            print(f"{suffix:8} {r['rows']:,} rows in {r['seconds']:.2f} s ({r['cpu_seconds']:.2f} s CPU) = {r['rows_per_s']:,} rows/s, "
                  f"{r['seconds_vs_jsonl']:.2f}x JSONL's time ({r['cpu_seconds_vs_jsonl']:.2f}x its CPU time), "
                  f"peak RSS {r['peak_rss_mb']} MB, {r['mb']} MB on disk")  # fmt: skip
        print(f"best of {args.repeat}; load average {loads['load_before']} before, {loads['load_after']} after, on {os.cpu_count()} cores")


def best(kept: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The shortest wall time and the least CPU time of the runs so far (each its own best), the
    highest peak RSS."""
    if kept is None:
        return new
    fastest = dict(min(kept, new, key=lambda r: r["seconds"]))
    fastest["cpu_seconds"] = min(kept["cpu_seconds"], new["cpu_seconds"])
    fastest["peak_rss_mb"] = max(kept["peak_rss_mb"], new["peak_rss_mb"])
    return fastest


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
