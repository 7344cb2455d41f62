"""A whole job end to end through the CLI: compile, upload, create, poll, collect, join.

    python benchmarks/bench_pipeline.py --rows 200000 --batch-size 50000
    python benchmarks/bench_pipeline.py --rows 100000 --batch-size 100000 --processing-seconds 20 --local

Starts `batchrunner serve` as its own process, runs `batchrunner submit --backend anthropic`
against it as a user would, and reports wall time, rows/s end to end, the CLI process's peak
RSS (the emulator's memory is its own process's, not counted), and status polls per batch.
With `--local` there is no `serve`: `submit --backend local` runs the emulator inside the CLI,
so the peak RSS is the whole local run's.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

WORDS = "great terrible fine broken love refund fast slow sturdy flimsy value cheap works stopped".split()


def write_job(folder: Path, rows: int, batch_size: int) -> Path:
    rng = random.Random(1)
    with (folder / "rows.jsonl").open("wb") as out:
        for i in range(rows):
            text = " ".join(rng.choice(WORDS) for _ in range(12))
            out.write(orjson.dumps({"id": f"r-{i}", "text": text}) + b"\n")
    spec = folder / "job.yaml"
    spec.write_text(
        "name: bench\nmodel: claude-haiku-4-5\nmax_tokens: 16\ninput: rows.jsonl\nid_field: id\n"
        'prompt: "Review: {text}\\nLabel its sentiment."\n'
        "output_schema: {type: object, properties: {label: {enum: [positive, negative, neutral]}}, required: [label]}\n"
        f"output: out.jsonl\nbatch_size: {batch_size}\n"
    )
    return spec


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("the emulator did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--processing-seconds", type=float, default=5.0)
    parser.add_argument("--local", action="store_true", help="the embedded emulator, inside the CLI's process")
    args = parser.parse_args()
    if args.local:
        with tempfile.TemporaryDirectory() as tmp:
            run_local(Path(tmp), args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = write_job(folder, args.rows, args.batch_size)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchrunner",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(folder / "emulator"),
                "--processing-seconds",
                str(args.processing_seconds),
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(port)
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))
            }
            env.update(
                ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}", ANTHROPIC_API_KEY="bench"
            )
            command = [
                sys.executable,
                "-m",
                "batchrunner",
                "--home",
                str(folder / "home"),
                "--json",
                "-q",
                "submit",
                str(spec),
                "--backend",
                "anthropic",
            ]
            started = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, check=False)
            elapsed = time.perf_counter() - started
            peak = (
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            )  # the CLI: the server is not reaped yet
        finally:
            server.terminate()
            server.wait()
        if done.returncode != 0:
            sys.exit(f"submit exited {done.returncode}: {done.stderr.decode()}")
        print_report(folder, args, done.stdout, elapsed, peak)


def print_report(folder: Path, args: argparse.Namespace, stdout: bytes, elapsed: float, peak: float) -> None:
    report = orjson.loads(stdout)
    lines = sum(1 for _ in (folder / "out.jsonl").open("rb"))
    batches = len(report["batches"])
    print(
        f"{args.rows:,} rows in {batches} batches{' on local' if args.local else ''}: {elapsed:.1f} s end to end "
        f"(of which {args.processing_seconds:g} s is the emulator's simulated processing), "
        f"{args.rows / elapsed:,.0f} rows/s, peak RSS {peak:,.0f} MB, "
        f"{report['summary']['polls_per_batch']} status polls per batch, {lines:,} output lines"
    )


def run_local(folder: Path, args: argparse.Namespace) -> None:
    """`submit --backend local`: the emulator runs inside the measured process."""
    spec = write_job(folder, args.rows, args.batch_size)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
    env["BATCHRUNNER_LOCAL_PROCESSING_SECONDS"] = str(args.processing_seconds)
    command = [sys.executable, "-m", "batchrunner", "--home", str(folder / "home"), "--json", "-q", "submit", str(spec), "--backend", "local"]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"submit exited {done.returncode}: {done.stderr.decode()}")
    print_report(folder, args, done.stdout, elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


if __name__ == "__main__":
    main()
