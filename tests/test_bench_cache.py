"""The cache benchmark, small: the re-run answers every row from the cache and creates no batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_cache.py"


def test_the_benchmark_reruns_every_row_from_the_cache() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--rows", "300", "--repeat", "1", "--duplicates-rows", "40"],
                          capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "300 answers cached" in done.stdout
    assert "cached 300, batches 0, exit 0" in done.stdout
    assert "every text twice: 40 rows, 20 requests sent" in done.stdout
