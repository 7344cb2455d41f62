"""CI slice of the fault sweep (benchmarks/sweep_faults.py): a few seeds of injected API faults, broken
downloads and failed requests, each checked for every row once in order, right exit code, no duplicate batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import benchmark

sweep = benchmark("sweep_faults")

# From the 50-seed sweep, quick ones that between them hit every kind of fault: 429/500/529 answers,
# broken downloads, uncertain creates reconciled, retry attempts, and both exit 0 and exit 3.
SEEDS = (15, 20, 22)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_seed_of_faults_loses_no_row_and_pays_no_batch_twice(seed: int, tmp_path: Path):
    result = sweep.run_seed(seed, tmp_path)

    assert result.problems == [], f"{sweep.describe(result)}; its files are in {result.folder}"
    assert result.faults + result.truncated > 0, "the seed injected no fault at all"


def test_a_seed_of_faults_on_a_postgresql_ledger_loses_no_row_and_pays_no_batch_twice(
    tmp_path: Path, pg_ledger: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("BATCHRUNNER_LEDGER", pg_ledger)  # the sweep's processes and its status check both use it

    result = sweep.run_seed(SEEDS[0], tmp_path)

    assert result.problems == [], f"{sweep.describe(result)}; its files are in {result.folder}"
    assert result.faults + result.truncated > 0, "the seed injected no fault at all"
    assert not (result.folder / "home" / "ledger.sqlite3").exists(), "the run's ledger was PostgreSQL"
