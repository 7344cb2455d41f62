"""The emulator generates a batch's answers while it runs, so the read that notices its end only
renames a file; the answers are the same bytes as those generated at the end, and a restart in the
middle of a generation still ends the batch with every answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import orjson

from batchrunner.emulator import EmulatorConfig, start_in_thread
from batchrunner.emulator.engine import Engine, Settings
from batchrunner.emulator.store import Store

PARAMS = {"model": "claude-haiku-4-5", "max_tokens": 16}
BODY = orjson.dumps({"requests": [
    {"custom_id": f"r-{i}", "params": {**PARAMS, "messages": [{"role": "user", "content": f"Review {i}: great, love it"}]}}
    for i in range(300)
]})


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition(), "not reached in time"


def prepared(store: Store, batch_id: str) -> dict[str, int] | None:
    row = store.get_batch(batch_id)
    assert row is not None
    return row.prepared


def ended_results(tmp_path: Path, name: str, ahead: bool) -> tuple[bytes, dict[str, int] | None]:
    now = [1_000_000.0]
    store = Store(tmp_path / name)
    engine = Engine(store, Settings(seed=5, processing_seconds=60.0, errored_rate=0.2), clock=lambda: now[0], prepare_ahead=ahead)
    batch_id = engine.create_batch(BODY)["id"]
    if ahead:
        wait_for(lambda: prepared(store, batch_id) is not None)
        assert not store.results_path(batch_id).exists(), "generated ahead, published only at the end"
    counts = prepared(store, batch_id)
    now[0] += 60.0
    assert engine.batch(batch_id)["processing_status"] == "ended"
    results = engine.results_path(batch_id).read_bytes()
    engine.close()
    return results, counts


def test_answers_generated_ahead_are_the_bytes_generated_at_the_end(tmp_path: Path) -> None:
    ahead, counts = ended_results(tmp_path, "ahead", ahead=True)
    at_end, _ = ended_results(tmp_path, "at-end", ahead=False)
    assert ahead == at_end
    lines = [orjson.loads(line) for line in ahead.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == sorted(f"r-{i}" for i in range(300))
    assert [line["custom_id"] for line in lines] != [f"r-{i}" for i in range(300)], "still shuffled by the seed"
    assert counts is not None and counts["errored"] == sum(line["result"]["type"] == "errored" for line in lines) > 0


def test_a_restart_in_the_middle_of_a_generation_still_ends_the_batch_with_every_answer(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = Store(data)
    batch_id = Engine(store, Settings(processing_seconds=0.5)).create_batch(BODY)["id"]
    store.close()
    (data / "results" / f"{batch_id}.ready.tmp").write_bytes(b'{"custom_id": "r-0", "res')  # a generation cut off
    with start_in_thread(EmulatorConfig(data_dir=data)) as server:
        headers = {"x-api-key": "k", "anthropic-version": "2026-10-21"}
        url = f"{server.base_url}/v1/messages/batches/{batch_id}"
        wait_for(lambda: httpx2.get(url, headers=headers).json()["processing_status"] == "ended")
        lines = httpx2.get(f"{url}/results", headers=headers).content.splitlines()
    assert sorted(orjson.loads(line)["custom_id"] for line in lines) == sorted(f"r-{i}" for i in range(300))
    assert not list((data / "results").glob("*.tmp")) and not list((data / "results").glob("*.prepared"))
