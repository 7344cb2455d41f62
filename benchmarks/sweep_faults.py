"""Fault sweep: the real CLI against an emulator that fails API calls, breaks downloads and errors requests.

    python benchmarks/sweep_faults.py --seeds 50          # seeds 1..50
    python benchmarks/sweep_faults.py --first 17 --seeds 1 --keep   # replay one seed, keep its folder

Each seed starts an emulator where 20% of API calls answer 429 (retry-after 1 s), 500 or 529 before
doing anything, 30% of results downloads send half their bytes and close, 5% of requests end errored
(retryable) and 2% expired; odd seeds also carry one row that always expires. It runs
`submit --backend anthropic` on 60 rows in 3 shards with `retry: {max_attempts: 3}` and checks:
the exit code (0 when every row succeeded, else 3), every input row once in input order with a
terminal status, no batch the ledger does not know (a duplicate would be paid twice), and every
output status against what the emulator served. A run that gives up with exit 1 on an expected
operational error (say, one batch's download broken five times in a row) is resumed the way a
user would, and counted apart. A failing seed is printed with its folder, which is kept.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import anthropic
import orjson
from reliability import (
    RUN_ID,
    cli,
    cli_env,
    duplicate_batches,
    exit_code_problems,
    ledger_status,
    leftovers,
    output_problems,
    rows_lost,
    traceback_problems,
    write_job,
)

from batchrunner.emulator import EmulatorConfig, start_in_thread

ROWS = 60
SHARDS = 3
MAX_ATTEMPTS = 3
ALWAYS_FAILS = "[[emulator:expired]]"
RESUMES = 3  # how often a run that gave up with exit 1 is resumed before the seed counts as failed


def fault_config(data_dir: Path, seed: int) -> EmulatorConfig:
    return EmulatorConfig(
        data_dir=data_dir,
        seed=seed,
        processing_seconds=0.3,
        fault_rate=0.2,
        truncate_rate=0.3,
        errored_rate=0.05,
        expired_rate=0.02,
    )


@dataclass
class SeedResult:
    """One seed: what happened, what was injected, and every broken invariant (none, when it passes)."""

    seed: int
    folder: Path
    exit_code: int | None = None
    gave_up: list[str] = field(default_factory=list)  # exit-1 messages of runs that were then resumed
    problems: list[str] = field(default_factory=list)
    rows_lost: int = 0
    duplicates: int = 0
    faults: int = 0
    truncated: int = 0
    uncertain_creates: int = 0
    batches: int = 0
    attempts: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def texts(seed: int) -> list[str]:
    """Reviews; on odd seeds row 30 always expires, so exit 3 is exercised as well as exit 0."""
    rows = [f"Works fine, arrived on time. #{n}" for n in range(1, ROWS + 1)]
    if seed % 2:
        rows[29] += f" {ALWAYS_FAILS}"
    return rows


def served(data_dir: Path, batch_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """custom_id → [(batch_id, result type)] as the emulator stored them, read through a fault-free
    emulator on the same data dir (it is durable), so the check itself meets no injected fault."""
    found: dict[str, list[tuple[str, str]]] = {}
    with start_in_thread(EmulatorConfig(data_dir=data_dir)) as server, anthropic.Anthropic(base_url=server.base_url, api_key="sk-sweep-key") as client:
        for batch_id in batch_ids:
            for result in client.messages.batches.results(batch_id):
                found.setdefault(result.custom_id, []).append((batch_id, result.result.type))
    return found


def served_problems(output: Path, results: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Each row's status is what its batch served; a success anywhere is never reported as a failure;
    a row that did not succeed was sent as often as the retry policy allows."""
    problems = []
    for line in output.read_bytes().splitlines():
        row = orjson.loads(line)
        sent = results.get(row["custom_id"], [])
        by_batch = dict(sent)
        if by_batch.get(row["batch_id"]) != row["status"]:
            problems.append(f"{row['custom_id']}: output says {row['status']} from {row['batch_id']}, the emulator served {by_batch.get(row['batch_id'])}")
        elif row["status"] != "succeeded" and any(kind == "succeeded" for _, kind in sent):
            problems.append(f"{row['custom_id']}: succeeded in some batch but the output says {row['status']}")
        elif row["status"] != "succeeded" and len(sent) != MAX_ATTEMPTS:
            problems.append(f"{row['custom_id']}: {row['status']} after {len(sent)} attempt(s), the policy allows {MAX_ATTEMPTS}")
    return problems


def run_seed(seed: int, workdir: Path) -> SeedResult:
    """Submit one job under this seed's faults, resume it if it gave up, and check every invariant."""
    folder = workdir / f"seed-{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    result = SeedResult(seed=seed, folder=folder)
    job = write_job(folder / "job", texts(seed), batch_size=ROWS // SHARDS, extra=f"retry: {{max_attempts: {MAX_ATTEMPTS}}}\n")
    home = folder / "home"
    started = time.monotonic()
    with start_in_thread(fault_config(folder / "emulator", seed)) as server:
        env = cli_env(server)
        ran = cli(home, env, "submit", job.spec, "--backend", "anthropic", "--run-id", RUN_ID)
        stderr = ran.stderr
        for _ in range(RESUMES):
            if ran.returncode != 1 or traceback_problems(ran.stderr):
                break
            result.gave_up.append(ran.stderr.strip().splitlines()[-1])
            ran = cli(home, env, "resume", RUN_ID)
            stderr += ran.stderr
        result.exit_code = ran.returncode
        result.seconds = time.monotonic() - started
        result.problems += traceback_problems(stderr)
        if ran.returncode not in (0, 3):
            result.problems.append(f"exit {ran.returncode}: {ran.stderr.strip()[-500:]}")
        status = ledger_status(home)
        stats = server.stats()
        result.duplicates = duplicate_batches(server, status)
    result.faults, result.truncated = stats["faults_injected"], stats["truncated_downloads"]
    result.uncertain_creates = stderr.count("; reconciling")
    result.batches = len(status["batches"])
    result.attempts = max((batch["attempt"] for batch in status["batches"]), default=0)
    result.rows_lost = rows_lost(job.output, job.ids)
    if result.duplicates:
        result.problems.append(f"{result.duplicates} duplicate batch(es)")
    result.problems += output_problems(job.output, job.ids, final=True) + leftovers(job.output)
    if not result.problems:
        result.problems += exit_code_problems(ran.returncode, job.output)
        batch_ids = [batch["batch_id"] for batch in status["batches"] if batch["batch_id"]]
        result.problems += served_problems(job.output, served(folder / "emulator", batch_ids))
        result.statuses.update(orjson.loads(line)["status"] for line in job.output.read_bytes().splitlines())
    return result


def describe(result: SeedResult) -> str:
    verdict = "ok" if not result.problems else "FAILED: " + "; ".join(result.problems)
    resumed = "".join(f" after exit 1 ({message}) and resume" for message in result.gave_up)
    return (
        f"seed {result.seed:>4}: exit {result.exit_code}{resumed} · {result.faults} faults, {result.truncated} broken downloads, "
        f"{result.uncertain_creates} uncertain creates · {result.batches} batches in {result.attempts} attempt(s) · "
        f"{result.seconds:.1f} s · {verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50, help="how many seeds (default 50)")
    parser.add_argument("--first", type=int, default=1, help="the first seed (default 1)")
    parser.add_argument("--workdir", type=Path, help="where seed folders go (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep every seed's folder, not only failing ones")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sweep-faults-"))
    results = []
    for seed in range(args.first, args.first + args.seeds):
        result = run_seed(seed, workdir)
        results.append(result)
        print(describe(result), flush=True)
        if result.problems:
            print(f"  reproduce: python benchmarks/sweep_faults.py --first {seed} --seeds 1 --keep; kept {result.folder}", flush=True)
        elif not args.keep:
            shutil.rmtree(result.folder, ignore_errors=True)
    failed = [r for r in results if r.problems]
    statuses: Counter[str] = sum((r.statuses for r in results), Counter())
    exits = Counter(r.exit_code for r in results)
    print(
        f"\n{len(results)} seeds, {len(failed)} failed · exit codes {dict(sorted(exits.items()))}"
        f" ({sum(1 for r in results if r.gave_up)} gave up with exit 1 first and were resumed)\n"
        f"faults survived: {sum(r.faults for r in results)} injected API errors (429/500/529), "
        f"{sum(r.truncated for r in results)} broken downloads, {sum(r.uncertain_creates for r in results)} uncertain creates reconciled\n"
        f"rows: {sum(statuses.values())} checked, statuses {dict(sorted(statuses.items()))} · "
        f"rows lost {sum(r.rows_lost for r in results)} · duplicate batches {sum(r.duplicates for r in results)}\n"
        f"batches: {sum(r.batches for r in results)} created, {sum(r.attempts > 1 for r in results)} seeds needed a retry attempt · "
        f"{sum(r.seconds for r in results):.0f} s in all; workdir {workdir}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
