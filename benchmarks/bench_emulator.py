"""How fast the emulator is, measured through the official SDK on loopback.

    python benchmarks/bench_emulator.py [--requests 100000] [--polls 3000] [--in-thread]

By default the emulator runs as its own process (like `batchrunner serve`), so the client and the
server do not share one GIL; `--in-thread` measures the embedded `local` backend instead. Prints
one Markdown table row per measurement, ready for the README.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anthropic
import httpx2
import orjson

from batchrunner.emulator import EmulatorConfig, start_in_thread

SERVE = (
    "import sys; from pathlib import Path; from batchrunner.emulator import EmulatorConfig, serve_forever; "
    "serve_forever(EmulatorConfig(data_dir=Path(sys.argv[1]), processing_seconds=1.0, requests_per_minute=None), "
    "on_ready=lambda url: print(url, flush=True))"
)
HEADERS = {"x-api-key": "bench", "anthropic-version": "2023-06-01"}


@contextmanager
def emulator(data_dir: Path, in_thread: bool) -> Iterator[str]:
    if in_thread:
        with start_in_thread(EmulatorConfig(data_dir=data_dir, processing_seconds=1.0, requests_per_minute=None)) as server:
            yield server.base_url
        return
    process = subprocess.Popen([sys.executable, "-c", SERVE, str(data_dir)], stdout=subprocess.PIPE, text=True)
    try:
        yield process.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        process.terminate()
        process.wait()


def row(what: str, value: float, unit: str, detail: str) -> None:
    print(f"| {what} | {value:,.1f} {unit} | {detail} |", flush=True)


def requests(count: int) -> list[dict[str, object]]:
    return [
        {"custom_id": f"row-{i}", "params": {
            "model": "claude-haiku-4-5", "max_tokens": 128, "system": "You label the sentiment of product reviews.",
            "messages": [{"role": "user", "content": f"Review {i}: the kettle boils fast but the handle gets hot."}],
        }}
        for i in range(count)
    ]


def wait_until_ended(client: anthropic.Anthropic, batch_id: str) -> float:
    """Polls until ended; returns how long the call that found it ended took (it writes the results)."""
    while True:
        started = time.perf_counter()
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return time.perf_counter() - started
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--polls", type=int, default=3000)
    parser.add_argument("--in-thread", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, emulator(Path(tmp), args.in_thread) as base_url:
        client = anthropic.Anthropic(base_url=base_url, api_key="bench", max_retries=0)
        print("| measurement | result | detail |\n|---|---|---|")

        small = client.messages.batches.create(requests=requests(1))
        client.messages.batches.retrieve(small.id)
        started = time.perf_counter()
        for _ in range(args.polls):
            client.messages.batches.retrieve(small.id)
        row("status polls through the SDK", args.polls / (time.perf_counter() - started), "polls/s",
            f"{args.polls} sequential `retrieve` calls, one client")
        with httpx2.Client(headers=HEADERS) as raw_client:
            started = time.perf_counter()
            for _ in range(args.polls):
                raw_client.get(f"{base_url}/v1/messages/batches/{small.id}").raise_for_status()
            row("status polls, plain keep-alive HTTP", args.polls / (time.perf_counter() - started), "polls/s",
                "the same calls without the SDK: what the server itself sustains for one client")

        body = orjson.dumps({"requests": requests(args.requests)})
        started = time.perf_counter()
        raw = httpx2.post(f"{base_url}/v1/messages/batches", content=body,
                          headers={**HEADERS, "content-type": "application/json"}, timeout=120)
        raw.raise_for_status()
        row("create accepted (raw POST)", time.perf_counter() - started, "s",
            f"{args.requests:,} requests, {len(body) / 1e6:.1f} MB body, server-side accept")
        started = time.perf_counter()
        big = client.with_options(timeout=300).messages.batches.create(requests=requests(args.requests))
        row("create through the SDK", time.perf_counter() - started, "s",
            f"{args.requests:,} requests, including the SDK's own serialization")

        finishing = wait_until_ended(client, raw.json()["id"])
        row("ending a batch (first read after its end)", finishing, "s", f"{args.requests:,} answers, generated while it ran")
        wait_until_ended(client, big.id)

        url = f"{base_url}/v1/messages/batches/{big.id}/results"
        started = time.perf_counter()
        size = 0
        with httpx2.stream("GET", url, headers=HEADERS, timeout=120) as response:
            for chunk in response.iter_raw(1024 * 1024):
                size += len(chunk)
        row("results, plain streaming GET", size / 1e6 / (time.perf_counter() - started), "MB/s", f"{size / 1e6:.1f} MB results file")

        started = time.perf_counter()
        lines = sum(1 for _ in client.messages.batches.results(big.id))
        row("results through the SDK's `results()`", size / 1e6 / (time.perf_counter() - started), "MB/s",
            f"{lines:,} lines parsed into SDK models")


if __name__ == "__main__":
    main()
