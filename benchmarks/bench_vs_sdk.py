"""batchrunner against the twenty lines a user would write instead, side by side on one API.

    python benchmarks/bench_vs_sdk.py                      # 100,000 rows, batches end 20 s after create
    python benchmarks/bench_vs_sdk.py --rows 2000 --processing-seconds 2 --json

Starts one `batchrunner serve` process on loopback (results shuffled, as the API promises no order),
writes one classification job, then runs, each as its own process: (a) the hand-written SDK loop
(one `create` with every request, `retrieve` every 5 s, `results()` into a dict, output written in
input order) and (b) `batchrunner submit --backend anthropic`. For each it prints wall time, API
calls (from `/_emulator/stats`), the process's peak RSS, and whether every row came back in input
order; then the ratio. Exits 1 if either side lost or misordered a row.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

WORDS = "great terrible fine broken love refund fast slow sturdy flimsy value cheap works stopped".split()
MODEL = "claude-haiku-4-5"
SYSTEM = "You label the sentiment of product reviews."
SCHEMA = {"type": "object", "properties": {"label": {"enum": ["positive", "negative", "neutral"]}}, "required": ["label"]}


def write_job(folder: Path, rows: int) -> Path:
    rng = random.Random(1)
    with (folder / "rows.jsonl").open("wb") as out:
        for i in range(rows):
            out.write(orjson.dumps({"id": f"r-{i}", "text": " ".join(rng.choice(WORDS) for _ in range(12))}) + b"\n")
    spec = folder / "job.yaml"
    spec.write_text(
        f"name: bench\nmodel: {MODEL}\nmax_tokens: 16\ninput: rows.jsonl\nid_field: id\nsystem: {SYSTEM}\n"
        'prompt: "Review: {text}\\nLabel its sentiment."\n'
        f"output_schema: {orjson.dumps(SCHEMA).decode()}\noutput: batchrunner-out.jsonl\n"
    )
    return spec


def sdk_loop(rows_path: Path, output: Path) -> None:
    """What a user writes by hand with the SDK (the environment names the API)."""
    import anthropic

    client = anthropic.Anthropic()
    rows = [orjson.loads(line) for line in rows_path.open("rb")]
    requests: list[Any] = [
        {"custom_id": row["id"], "params": {
            "model": MODEL, "max_tokens": 16, "system": SYSTEM,
            "messages": [{"role": "user", "content": f"Review: {row['text']}\nLabel its sentiment."}],
            "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
        }}
        for row in rows
    ]
    batch = client.messages.batches.create(requests=requests)
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        time.sleep(5)
    results = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}
    with output.open("wb") as out:
        for row in rows:
            result = results[row["id"]]
            text = result.message.content[0].text if result.type == "succeeded" else None  # type: ignore[union-attr]
            out.write(orjson.dumps({"custom_id": row["id"], "status": result.type, "text": text}) + b"\n")


def api_calls(base_url: str) -> Counter[str]:
    import httpx2

    calls = httpx2.get(f"{base_url}/_emulator/stats").json()["calls"]
    return Counter({route: n for route, n in calls.items() if " /v1/" in route})


def run_side(command: list[str], env: dict[str, str], base_url: str) -> tuple[float, Counter[str], float]:
    """Wall seconds, API calls per route and peak RSS (MB) of one process, measured on its own."""
    before = api_calls(base_url)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{command[3:5]} exited {process.returncode}: {process.stderr.read().decode() if process.stderr else ''}")
    return elapsed, api_calls(base_url) - before, usage.ru_maxrss / 1024


def in_input_order(output: Path, rows: int) -> bool:
    ids = [orjson.loads(line)["custom_id"] for line in output.open("rb")]
    return ids == [f"r-{i}" for i in range(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--processing-seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    parser.add_argument("--sdk-loop", nargs=2, type=Path, metavar=("ROWS", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sdk_loop:
        sdk_loop(*args.sdk_loop)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = write_job(folder, args.rows)
        log = folder / "serve.log"
        with log.open("w") as stderr:
            server = subprocess.Popen(
                [sys.executable, "-m", "batchrunner", "serve", "--port", "0", "--data-dir", str(folder / "emulator"),
                 "--processing-seconds", str(args.processing_seconds)], stderr=stderr,
            )
        try:
            deadline = time.monotonic() + 60
            while not (found := re.search(r"ANTHROPIC_BASE_URL=(\S+)", log.read_text())):
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit(f"the emulator did not start: {log.read_text()}")
                time.sleep(0.05)
            base_url = found.group(1)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
            env.update(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY="bench")
            sdk_out = folder / "sdk-out.jsonl"
            sides = {
                "sdk": run_side([sys.executable, __file__, "--sdk-loop", str(folder / "rows.jsonl"), str(sdk_out)], env, base_url),
                "batchrunner": run_side(
                    [sys.executable, "-m", "batchrunner", "--home", str(folder / "home"), "-q", "submit", str(spec),
                     "--backend", "anthropic"], env, base_url,
                ),
            }
        finally:
            server.terminate()
            server.wait()
        ordered = {"sdk": in_input_order(sdk_out, args.rows), "batchrunner": in_input_order(folder / "batchrunner-out.jsonl", args.rows)}
    report = {
        "rows": args.rows, "processing_seconds": args.processing_seconds,
        **{name: {"wall_s": round(wall, 2), "api_calls": calls.total(), "calls_by_route": dict(sorted(calls.items())),
                  "peak_rss_mb": round(rss), "every_row_in_order": ordered[name]}
           for name, (wall, calls, rss) in sides.items()},
        "wall_ratio": round(sides["batchrunner"][0] / sides["sdk"][0], 2),
    }
    if args.json:
        print(orjson.dumps(report).decode())
    else:
        print(f"{args.rows:,} rows, every batch ends {args.processing_seconds:g} s after its create, results shuffled\n")
        print("| | wall s | API calls | peak RSS | every row, in input order |\n|---|---:|---:|---:|---|")
        for name, label in (("sdk", "hand-written SDK loop"), ("batchrunner", "`batchrunner submit`")):
            side = report[name]
            print(f"| {label} | {side['wall_s']:.1f} | {side['api_calls']} | {side['peak_rss_mb']} MB | {side['every_row_in_order']} |")
        print(f"\nbatchrunner / SDK wall time: {report['wall_ratio']:.2f}")
        for name in ("sdk", "batchrunner"):
            print(f"{name} calls: " + ", ".join(f"{route} {n}" for route, n in report[name]["calls_by_route"].items()))
    if not all(ordered.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
