"""The answer cache at 1M rows: an all-cached re-run against a plain compile of the same job.

    python benchmarks/bench_cache.py [--rows N] [--repeat K] [--duplicates-rows M]

Generates N review rows (the bench_compile job), fills a state home's cache with an answer for
every request (inserted directly: sending a million requests to the emulator first would only
make the benchmark slow), then runs each of these K times in a fresh process (fastest shown,
highest peak RSS, least CPU time: on a shared machine it moves less than the wall time):
- compile: `compile_job` to a folder, as a first run compiles before it sends;
- cached re-run: `pipeline.submit` on the `local` backend, every request a hit: compile with the
  cache lookups, register the run with its cached answers, write the output; no batch.
Then a first run of M rows where every text appears twice is submitted on `local`, and the
requests it sent are counted (half of M).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_compile import SPEC, generate  # noqa: E402

FRAGMENT = b'"text":"{\\"label\\":\\"positive\\"}","parsed":{"label":"positive"},"stop_reason":"end_turn",' \
    b'"usage":{"input_tokens":40,"output_tokens":5},"error":null'  # the middle of an output line, as collect stores it


def fill_cache(folder: Path, home: Path) -> int:
    """Compile once and cache an answer under every request's key, as a collected run would."""
    from batchrunner.compile import compile_job
    from batchrunner.ledger import Ledger
    from batchrunner.request_key import LOCAL_SCOPE, line_key
    from batchrunner.requestfile import iter_lines
    from batchrunner.spec import load_spec

    spec = load_spec(folder / "job.yaml")
    report = compile_job(spec, folder / "seed")
    n = 0
    with Ledger(home) as ledger, ledger.transaction() as db:
        for shard in report.shards:
            assert shard.path is not None
            rows = [
                (LOCAL_SCOPE, line_key(line, spec.api_version), spec.model, FRAGMENT, 40, 5, 0, 0, "msgbatch_seed", 1, "seed", "2026-01-01T00:00:00Z")
                for line in iter_lines(shard.path)
            ]
            db.executemany(
                "INSERT INTO answer_cache (scope, request_key, model, result, input_tokens, output_tokens,"
                " cache_write_tokens, cache_read_tokens, batch_id, attempt, run_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
            n += len(rows)
    return n


def child(kind: str, folder: Path, home: Path) -> None:
    started = time.perf_counter()
    if kind == "compile":
        from batchrunner.compile import compile_job
        from batchrunner.spec import load_spec

        rows = compile_job(load_spec(folder / "job.yaml"), folder / "compiled").requests
        extra: dict[str, object] = {}
    else:
        from batchrunner import pipeline

        outcome = pipeline.submit(folder / "job.yaml", home=home, backend="local")
        rows = outcome.run.requests
        extra = {"cached": outcome.summary["cached"], "batches": len(outcome.batches), "exit_code": outcome.exit_code}
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    extra["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print(orjson.dumps({"kind": kind, "rows": rows, "seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, **extra}).decode())


def run_child(kind: str, folder: Path, home: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--folder", str(folder), "--home", str(home)],
        check=True, capture_output=True, text=True, env={**os.environ, "BATCHRUNNER_LOCAL_PROCESSING_SECONDS": "0.5"},
    )
    result: dict[str, object] = orjson.loads(done.stdout.splitlines()[-1])
    return result


def duplicates_run(folder: Path, rows: int) -> tuple[int, int]:
    """A first run over rows whose texts each appear twice: (rows, requests sent)."""
    from batchrunner import pipeline

    with (folder / "rows.jsonl").open("wb") as out:
        for i in range(rows):
            out.write(orjson.dumps({"id": f"r-{i}", "product": "kettle", "text": f"Review number {i // 2}."}) + b"\n")
    (folder / "job.yaml").write_text(SPEC)
    outcome = pipeline.submit(folder / "job.yaml", home=folder / "home", backend="local")
    assert outcome.exit_code == 0
    return outcome.run.requests, sum(batch.requests for batch in outcome.batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duplicates-rows", type=int, default=10_000)
    parser.add_argument("--child", choices=["compile", "rerun"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.home)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder, home = Path(tmp), Path(tmp) / "home"
        generate(folder / "rows.jsonl", args.rows)
        (folder / "job.yaml").write_text(SPEC)
        print(f"{args.rows:,} rows, {(folder / 'rows.jsonl').stat().st_size / 1e6:,.0f} MB of JSONL, "
              f"{fill_cache(folder, home):,} answers cached, Python {sys.version.split()[0]}")
        results = {}
        for kind in ("compile", "rerun"):
            runs = [run_child(kind, folder, home) for _ in range(args.repeat)]
            results[kind] = result = min(runs, key=lambda run: float(run["seconds"]))  # type: ignore[arg-type]
            result["peak_rss_mb"] = max(float(run["peak_rss_mb"]) for run in runs)  # type: ignore[arg-type]
            seconds = float(result["seconds"])  # type: ignore[arg-type]
            rate = int(result["rows"]) / seconds  # type: ignore[call-overload]
            more = f"  cached {result['cached']:,}, batches {result['batches']}, exit {result['exit_code']}" if kind == "rerun" else ""
            result["cpu_seconds"] = min(float(run["cpu_seconds"]) for run in runs)  # type: ignore[arg-type]
            print(f"{kind:>8}: {rate:>9,.0f} rows/s  {seconds:6.2f} s  peak RSS {result['peak_rss_mb']:5.0f} MB  "
                  f"CPU {result['cpu_seconds']:6.2f} s{more}")
        ratio = float(results["rerun"]["seconds"]) / float(results["compile"]["seconds"])  # type: ignore[arg-type]
        cpu = float(results["rerun"]["cpu_seconds"]) / float(results["compile"]["cpu_seconds"])  # type: ignore[arg-type]
        print(f"the all-cached re-run takes {ratio:.2f}x the compile's time ({cpu:.2f}x its CPU time)")
    with tempfile.TemporaryDirectory() as tmp:
        rows, sent = duplicates_run(Path(tmp), args.duplicates_rows)
        print(f"first run, every text twice: {rows:,} rows, {sent:,} requests sent")


if __name__ == "__main__":
    main()
