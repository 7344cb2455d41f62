"""Collect buffers a batch's results for its in-order write; classification results repeat (a label
and its usage), so equal fragments are held once and a big batch's join stays small (issue 14)."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import orjson
from helpers import benchmark

from batchrunner.collect import collect_batch, write_output
from batchrunner.ledger import Ledger

ROWS = 40_000


def test_joining_a_batch_of_repeating_labels_holds_each_fragment_once(tmp_path: Path) -> None:
    benchmark("bench_collect").build(tmp_path, ROWS)  # a run with one ended batch of 40,000 shuffled results on disk
    with Ledger(tmp_path / "home") as ledger:
        run = ledger.run("bench")
        (batch,) = ledger.batches(run)
        tracemalloc.start()
        try:
            asyncio.run(collect_batch(None, ledger, run, batch, print))  # type: ignore[arg-type]  # on disk: no API call
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        write_output(ledger, run, "local")
    lines = [orjson.loads(line) for line in (tmp_path / "out.jsonl").open("rb")]
    assert [line["custom_id"] for line in lines] == [f"r-{i}" for i in range(ROWS)]
    assert {line["parsed"]["label"] for line in lines if line["status"] == "succeeded"} == {"positive", "negative", "neutral"}
    assert peak < 13 * 2**20, f"peak {peak / 2**20:.1f} MB"
