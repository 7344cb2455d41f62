"""Compile speed and memory at 1M rows, against the bare loop the compiler has to keep up with.

    python benchmarks/bench_compile.py [--rows N] [--repeat K]

Generates N review rows in a temp folder, then runs each of these K times (the fastest run counts),
every run in a fresh process so its peak RSS is its own:
- baseline: read rows with orjson, render with str.format_map, validate each request with a pydantic
  TypeAdapter over TypedDicts, write with orjson;
- compile: the real compiler (ids, templates, duplicate check, shards, rows.jsonl) to a temp folder;
- validate: the same compile with nothing written, as `batchrunner validate` runs it.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import orjson

SPEC = """\
name: bench
model: claude-haiku-4-5
max_tokens: 64
input: rows.jsonl
output: results.jsonl
id_field: id
system: You label the sentiment of product reviews.
prompt: "Product: {product}\\nReview: {text}\\nIs this review positive, negative or neutral?"
params: {temperature: 0}
api_version: 2023-06-01
output_schema:
  type: object
  properties: {label: {type: string, enum: [positive, negative, neutral]}}
  required: [label]
"""
SYSTEM = "You label the sentiment of product reviews."
PROMPT = "Product: {product}\nReview: {text}\nIs this review positive, negative or neutral?"
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["positive", "negative", "neutral"]}},
    "required": ["label"],
}
WORDS = ["great", "terrible", "fine", "battery", "broke", "love", "returned", "cheap", "solid", "quiet", "loud", "works", "daily", "again", "never"]


def generate(path: Path, rows: int) -> None:
    rng = random.Random(1)
    with path.open("wb") as out:
        for i in range(1, rows + 1):
            text = " ".join(rng.choices(WORDS, k=rng.randint(8, 40))).capitalize() + "."
            out.write(orjson.dumps({"id": f"r-{i}", "product": rng.choice(WORDS), "text": text}) + b"\n")


def baseline(folder: Path) -> int:
    from pydantic import TypeAdapter
    from typing_extensions import TypedDict

    class Message(TypedDict):
        role: Literal["user", "assistant"]
        content: str

    class Params(TypedDict):
        model: str
        max_tokens: int
        system: str
        messages: list[Message]
        temperature: float
        output_config: dict[str, object]

    class Request(TypedDict):
        custom_id: str
        params: Params

    adapter = TypeAdapter(Request)
    output_config = {"format": {"type": "json_schema", "schema": SCHEMA}}
    n = 0
    with (folder / "rows.jsonl").open("rb") as rows, (folder / "baseline.jsonl").open("wb") as out:
        for line in rows:
            row = orjson.loads(line)
            request = {
                "custom_id": row["id"],
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 64,
                    "system": SYSTEM,
                    "messages": [{"role": "user", "content": PROMPT.format_map(row)}],
                    "temperature": 0.0,
                    "output_config": output_config,
                },
            }
            adapter.validate_python(request)
            out.write(orjson.dumps(request) + b"\n")
            n += 1
    return n


def compiler(folder: Path, write: bool) -> int:
    from batchrunner.compile import compile_job
    from batchrunner.spec import load_spec

    return compile_job(load_spec(folder / "job.yaml"), folder / "compiled" if write else None).requests


def child(kind: str, folder: Path) -> None:
    started = time.perf_counter()
    n = baseline(folder) if kind == "baseline" else compiler(folder, write=kind == "compile")
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(orjson.dumps({"kind": kind, "rows": n, "seconds": seconds, "peak_rss_mb": peak_mb}).decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=["baseline", "compile", "validate"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate(folder / "rows.jsonl", args.rows)
        (folder / "job.yaml").write_text(SPEC)
        size_mb = (folder / "rows.jsonl").stat().st_size / 1e6
        print(f"{args.rows:,} rows, {size_mb:,.0f} MB of JSONL, Python {sys.version.split()[0]}")
        results = {}
        for kind in ("baseline", "compile", "validate"):
            runs = [
                orjson.loads(subprocess.run(
                    [sys.executable, __file__, "--child", kind, "--folder", str(folder)],
                    check=True, capture_output=True, text=True,
                ).stdout)
                for _ in range(args.repeat)
            ]
            results[kind] = result = min(runs, key=lambda run: run["seconds"])
            result["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
            rate = result["rows"] / result["seconds"]
            print(f"{kind:>9}: {rate:>9,.0f} rows/s  {result['seconds']:6.2f} s  peak RSS {result['peak_rss_mb']:5.0f} MB")
        for kind in ("compile", "validate"):
            print(f"{kind} takes {results[kind]['seconds'] / results['baseline']['seconds']:.2f}x the baseline's time")


if __name__ == "__main__":
    main()
