"""Collect + join throughput and peak memory, and batchrunner's collect against the SDK's results().

    python benchmarks/bench_collect.py --rows 1000000          # join N results (synthetic run)
    python benchmarks/bench_collect.py --sdk 100000            # one N-request batch on the emulator

Part 1 builds a run the way compile would leave it (rows.jsonl, request files of 100,000
lines, a ledger), writes each shard's results file in shuffled order, then times — in a fresh
process, so its peak RSS is its own — what `collect` does with them: parse every line, join it
into the ledger by custom_id, and write the output in input order.

Part 2 creates one batch on the emulator, waits for it, and times the SDK's own
`client.messages.batches.results()` iterator against batchrunner's download + join, then
`batchrunner collect RUN` as a whole process (start, imports, download, join, output) on
another run that sent the same batch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

SHARD = 100_000
# `python -m batchrunner ...` that prints its own VmHWM last: a child forked from this big process
# would report the parent's pages in its ru_maxrss.
PEAK_AT_EXIT = (
    "import atexit, runpy, sys; sys.argv[0] = 'batchrunner'; "
    "atexit.register(lambda: print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr)); "
    "runpy.run_module('batchrunner', run_name='__main__')"
)
LABELS = ("positive", "negative", "neutral")


def result_line(custom_id: str, rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.97:
        message = {
            "id": f"msg_{custom_id}",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": orjson.dumps({"label": rng.choice(LABELS)}).decode()}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": rng.randint(30, 90), "output_tokens": 6},
        }
        result: dict[str, object] = {"type": "succeeded", "message": message}
    elif kind < 0.99:
        error = {"type": "overloaded_error", "message": "Overloaded"}
        result = {"type": "errored", "error": {"type": "error", "error": error, "request_id": None}}
    else:
        result = {"type": "expired"}
    return orjson.dumps({"custom_id": custom_id, "result": result})


def build(folder: Path, rows: int) -> None:
    """A run as compile + the API would leave it; every batch already ended and downloaded."""
    from batchrunner.ledger import Ledger, NewRun
    from batchrunner.spec import RunSettings

    rng = random.Random(7)
    run_dir = folder / "home" / "runs" / "bench"
    (run_dir / "results").mkdir(parents=True)
    shards = []
    with (run_dir / "rows.jsonl").open("wb") as rows_file:
        for index, start in enumerate(range(0, rows, SHARD)):
            ids = [f"r-{i}" for i in range(start, min(rows, start + SHARD))]
            name = f"requests-{index:03d}.jsonl"
            with (run_dir / name).open("wb") as requests:
                for cid in ids:
                    rows_file.write(orjson.dumps({"id": cid, "text": f"Review number {cid}: it works."}) + b"\n")
                    requests.write(b'{"custom_id":"' + cid.encode() + b'","params":{}}\n')
            shards.append((index, start, name, len(ids), 0))
            rng.shuffle(ids)
            with (run_dir / "results" / f"msgbatch_{index:04d}.jsonl").open("wb") as results:
                results.writelines(result_line(cid, rng) + b"\n" for cid in ids)
    with Ledger(folder / "home") as ledger:
        run = ledger.create_run(
            NewRun(
                run_id="bench",
                job_name="bench",
                spec_path=folder / "job.yaml",
                output_path=folder / "out.jsonl",
                store=run_dir,
                backend="local",
                base_url=None,
                model="claude-haiku-4-5",
                settings=RunSettings(output_schema={"type": "object", "properties": {"label": {"enum": list(LABELS)}}}),
            ),
            shards=shards,
            custom_ids=(f"r-{i}" for i in range(rows)),
        )
        for batch in ledger.batches(run):
            with ledger.transaction() as db:
                db.execute(
                    "UPDATE batches SET state = 'ended', batch_id = ?, request_counts = ? WHERE pk = ?",
                    (f"msgbatch_{batch.shard:04d}", orjson.dumps({"succeeded": batch.requests}), batch.pk),
                )


def join(folder: Path) -> None:
    """`collect` once the results files are on disk (as after its download): parse, join, write the output."""
    from batchrunner.collect import collect_batch, write_output
    from batchrunner.ledger import Ledger

    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    with Ledger(folder / "home") as ledger:
        run = ledger.run("bench")
        for batch in ledger.batches(run):
            asyncio.run(collect_batch(None, ledger, run, batch, print))  # type: ignore[arg-type]  # on disk: no API call
        write_output(ledger, run, "local")
    elapsed = time.perf_counter() - started
    rows = run.requests
    size = sum(p.stat().st_size for p in (run.run_dir / "results").iterdir())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    print(
        f"collect+join {rows:,} results ({size / 1e6:,.0f} MB): {elapsed:.1f} s wall, "
        f"{rows / elapsed:,.0f} rows/s, {size / 1e6 / elapsed:,.0f} MB/s, peak RSS {usage.ru_maxrss / 1024:,.0f} MB; "
        f"{cpu:.1f} s CPU = {rows / cpu:,.0f} rows per CPU-second (steadier on a shared machine)"
    )


def sdk_comparison(n: int) -> None:
    import anthropic

    from batchrunner.client import Api, AsyncApi, ResolvedBackend
    from batchrunner.collect import collect_batch
    from batchrunner.emulator import EmulatorConfig, start_in_thread
    from batchrunner.ledger import Ledger, NewRun
    from batchrunner.spec import RunSettings

    with tempfile.TemporaryDirectory() as tmp, start_in_thread(
        EmulatorConfig(data_dir=Path(tmp) / "emu", processing_seconds=0.5)
    ) as server:
        folder = Path(tmp)
        source = folder / "source"
        source.mkdir()
        lines = [
            orjson.dumps(
                {
                    "custom_id": f"r-{i}",
                    "params": {
                        "model": "claude-haiku-4-5",
                        "max_tokens": 16,
                        "messages": [{"role": "user", "content": f"Review {i}: great value, would buy again."}],
                    },
                }
            )
            for i in range(n)
        ]
        (source / "requests-000.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        (source / "rows.jsonl").write_bytes(b"".join(b'{"n":%d}\n' % i for i in range(n)))
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k")
        started = time.perf_counter()
        batch = client.messages.batches.create(requests=[orjson.loads(line) for line in lines])
        print(f"create of {n:,} requests accepted in {time.perf_counter() - started:.1f} s (through the SDK)")
        while client.messages.batches.retrieve(batch.id).processing_status != "ended":
            time.sleep(0.2)

        started = time.perf_counter()
        count = sum(1 for _ in client.messages.batches.results(batch.id))
        sdk_seconds = time.perf_counter() - started
        print(f"SDK results() iterator, read only: {count:,} results in {sdk_seconds:.2f} s ({count / sdk_seconds:,.0f}/s)")

        def make_run(home: Path, run_id: str) -> None:
            """A run that sent this batch, ended and not yet collected, as submit leaves it."""
            run_dir = home / "runs" / run_id
            run_dir.mkdir(parents=True)
            for name in ("requests-000.jsonl", "rows.jsonl"):
                (run_dir / name).write_bytes((source / name).read_bytes())
            with Ledger(home) as ledger:
                run = ledger.create_run(
                    NewRun(
                        run_id=run_id,
                        job_name="sdk",
                        spec_path=folder / "job.yaml",
                        output_path=home / "out.jsonl",
                        store=run_dir,
                        backend="anthropic",
                        base_url=server.base_url,
                        model="claude-haiku-4-5",
                        settings=RunSettings(),
                    ),
                    shards=[(0, 0, "requests-000.jsonl", n, 0)],
                    custom_ids=(f"r-{i}" for i in range(n)),
                )
                (mine,) = ledger.batches(run)
                remote = client.messages.batches.retrieve(batch.id).model_dump(mode="json")
                ledger.record_status(ledger.record_created(ledger.record_intent(mine), remote), remote)

        os.environ["ANTHROPIC_API_KEY"] = "bench"  # the emulator takes any key
        make_run(folder / "home-process", "sdk")
        make_run(folder / "home", "sdk")
        with Ledger(folder / "home") as ledger:
            run = ledger.run("sdk")
            (mine,) = ledger.batches(run)
            api = Api(ResolvedBackend("anthropic", server.base_url), server.base_url)
            started = time.perf_counter()
            asyncio.run(collect_batch(AsyncApi(api, 1000), ledger, run, mine, print))
            ours = time.perf_counter() - started
        print(f"batchrunner collect (download to disk + join into the ledger): {ours:.2f} s ({n / ours:,.0f}/s), "
              f"{sdk_seconds / ours:.1f}x faster than the SDK only reading")

        command = [sys.executable, "-c", PEAK_AT_EXIT, "--home", str(folder / "home-process"), "-q", "collect", "sdk"]
        started = time.perf_counter()
        done = subprocess.run(command, env=os.environ | {"ANTHROPIC_BASE_URL": server.base_url}, capture_output=True, check=False)
        whole = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"batchrunner collect exited {done.returncode}: {done.stderr.decode()}")
        peak_mb = int(done.stderr.split()[-2]) / 1024
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import anthropic"], check=True)
        sdk_import = time.perf_counter() - started
        print(f"`batchrunner collect RUN` as a whole process (start, imports, download, join, output): {whole:.2f} s, "
              f"{whole / sdk_seconds:.2f}x the SDK's results() iteration alone, peak RSS {peak_mb:,.0f} MB; "
              f"a bare `python -c 'import anthropic'` process takes {sdk_import:.2f} s of it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, help="join this many synthetic results")
    parser.add_argument("--sdk", type=int, help="compare with the SDK's results() on a batch of this many")
    parser.add_argument("--join-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.join_only:
        join(args.join_only)
        return
    if args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            build(Path(tmp), args.rows)
            print(f"built a run of {args.rows:,} rows in {time.perf_counter() - started:.0f} s")
            subprocess.run([sys.executable, __file__, "--join-only", tmp], check=True)
    if args.sdk:
        sdk_comparison(args.sdk)


if __name__ == "__main__":
    main()
