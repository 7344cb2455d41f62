"""The output benchmark, small: every format gets every row, in input order."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq
from helpers import read_rows

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_output.py"


def test_the_benchmark_writes_every_row_in_order_to_each_format(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--rows", "3000", "--json", "--keep", str(tmp_path)],
                          capture_output=True, check=False, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    report = orjson.loads(done.stdout)
    assert {name: report[name]["rows"] for name in ("jsonl", "csv", "parquet")} == {"jsonl": 3000, "csv": 3000, "parquet": 3000}
    ids = [f"r-{i}" for i in range(3000)]
    assert [line["custom_id"] for line in read_rows(tmp_path / "out.jsonl")] == ids
    with (tmp_path / "out.csv").open(newline="") as f:
        assert [record["custom_id"] for record in csv.DictReader(f)] == ids
    assert pq.read_table(tmp_path / "out.parquet").column("custom_id").to_pylist() == ids
