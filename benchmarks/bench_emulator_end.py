"""Ending a big batch on the emulator: how long the first read after its end takes, and the
emulator process's peak RSS (VmHWM) across the create and the end.

Starts `batchrunner serve` as its own process, creates one batch of `--requests` requests with a raw
POST, sleeps (without polling) until a second past its end, then times one `retrieve`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx2
import orjson

HEADERS = {"x-api-key": "bench", "anthropic-version": "2026-10-21", "content-type": "application/json"}


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--processing-seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        with log.open("w") as stderr:
            server = subprocess.Popen(
                [sys.executable, "-m", "batchrunner", "--home", tmp, "serve", "--port", "0",
                 "--processing-seconds", str(args.processing_seconds)], stderr=stderr,
            )
        try:
            while not (found := re.search(r"ANTHROPIC_BASE_URL=(\S+)", log.read_text())):
                time.sleep(0.05)
            base_url = found.group(1)
            body = orjson.dumps({"requests": [
                {"custom_id": f"row-{i}", "params": {
                    "model": "claude-haiku-4-5", "max_tokens": 16, "system": "You label the sentiment of product reviews.",
                    "messages": [{"role": "user", "content": f"Review {i}: the kettle boils fast but the handle gets hot."}]}}
                for i in range(args.requests)
            ]})
            created = httpx2.post(f"{base_url}/v1/messages/batches", content=body, headers=HEADERS, timeout=300).json()
            after_create = peak_rss_mb(server.pid)
            ends = datetime.fromisoformat(created["created_at"].replace("Z", "+00:00")).timestamp() + args.processing_seconds
            time.sleep(max(0.0, ends + 1.0 - time.time()))
            started = time.perf_counter()
            batch = httpx2.get(f"{base_url}/v1/messages/batches/{created['id']}", headers=HEADERS, timeout=300).json()
            first_read = time.perf_counter() - started
            assert batch["processing_status"] == "ended", batch
            print(f"{args.requests:,} requests: first retrieve after the end {first_read:.3f} s; "
                  f"emulator peak RSS {after_create:.0f} MB after the create, {peak_rss_mb(server.pid):.0f} MB after the end")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
