"""Collect + join into the SQLite ledger and into a PostgreSQL ledger, in one run (issue 17).

    python benchmarks/bench_ledger.py --rows 1000000
    python benchmarks/bench_ledger.py --rows 1000000 --postgres postgresql://user@host/db   # an empty database

The same synthetic run as bench_collect.py (shuffled results files on disk, as after the
download) is built on each ledger, then joined by a fresh process, so each peak RSS is its
own. Without --postgres a throwaway PostgreSQL 15 server is started as the tests start it
(tests/pg.py) and stopped at the end. Target: PostgreSQL at least half SQLite's rows/s, peak
RSS under 200 MB.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import bench_collect  # noqa: E402
import pg  # noqa: E402


def measure(label: str, rows: int, ledger: str | None) -> float:
    """Build the run on this ledger, join it in a fresh process; returns rows/s."""
    env = dict(os.environ)
    env.pop("BATCHRUNNER_LEDGER", None)
    if ledger:
        env["BATCHRUNNER_LEDGER"] = ledger
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.clear()
        os.environ.update(env)
        started = time.perf_counter()
        bench_collect.build(Path(tmp), rows)
        print(f"{label}: built a run of {rows:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
        done = subprocess.run([sys.executable, bench_collect.__file__, "--join-only", tmp], env=env, check=True,
                              capture_output=True, text=True)
    line = done.stdout.strip().splitlines()[-1]
    print(f"{label}: {line}", flush=True)
    return float(re.search(r"([\d,]+) rows/s", line).group(1).replace(",", ""))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="an empty PostgreSQL database (default: start a throwaway server)")
    args = parser.parse_args()
    sqlite_rate = measure("sqlite", args.rows, None)
    with nullcontext(None) if args.postgres else pg.server() as admin:
        url = args.postgres or pg.create_database(admin, "bench_ledger")
        postgres_rate = measure("postgresql", args.rows, url)
    print(f"postgresql / sqlite: {postgres_rate / sqlite_rate:.2f}x the rows/s (target >= 0.5)")


if __name__ == "__main__":
    main()
