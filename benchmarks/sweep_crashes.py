"""Crash sweep: SIGKILL the real CLI at random instants of `submit` and `retry`, then recover and check.

    python benchmarks/sweep_crashes.py --instants 100           # RNG seed 0
    python benchmarks/sweep_crashes.py --seed 7 --instants 20 --keep

The crash points test (tests/test_crash_resume.py) kills at 14 named step boundaries; this one kills
wherever a timer lands, between the boundaries too. It first times one normal run of each scenario,
then draws each instant's delay from a seeded RNG over that span (stratified, so the instants spread
from the start to the end of the run):
- `submit` of 30 rows in 3 shards (a fresh run), recovered with `resume` (or `submit --run-id` again
  when the kill came before the run was registered);
- `retry` of a run whose 3 rows with `[[emulator:errored_once:...]]` errored the first time,
  recovered with `resume` (and `retry` again when the kill came before the attempt was registered).
At the kill it records the phase the ledger shows (read-only), checks `PRAGMA integrity_check` and
that the output is absent, the previous version or a whole new one; after recovery it checks exit 0,
every row once in input order and succeeded, no duplicate batch, integrity, and no stray temp file.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from reliability import (
    CLI_TIMEOUT_S,
    LEDGER,
    RUN_ID,
    Job,
    cli,
    cli_command,
    cli_env,
    duplicate_batches,
    exit_code_problems,
    integrity,
    ledger_status,
    leftovers,
    output_problems,
    rows_lost,
    traceback_problems,
    write_job,
)

from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread

ROWS = 30
SHARDS = 3
PROCESSING_SECONDS = 1.0  # long enough that some kills land while the poller waits
ERRORED_ONCE = (5, 17, 29)  # one row in each shard fails its first attempt
SCENARIOS = ("submit", "retry")
# What the ledger shows at the kill, for the attempt under test, least advanced batch first.
PHASES = ("not registered", "prepared", "creating", "submitted", "ended", "collected", "output written", "exited first")
_PHASE_OF_STATE = {"prepared": "prepared", "creating": "creating", "uncertain": "creating", "submitted": "submitted", "ended": "ended"}


@dataclass
class Instant:
    """One kill and its recovery; `problems` is empty when every invariant held."""

    number: int
    scenario: str
    delay: float
    folder: Path
    phase: str = ""
    problems: list[str] = field(default_factory=list)
    recovery: list[str] = field(default_factory=list)
    rows_lost: int = 0
    duplicates: int = 0
    integrity_failures: int = 0
    torn: int = 0
    orphaned_files: int = 0  # request files left on the server: uploaded, then killed before the ledger knew


def texts(scenario: str) -> list[str]:
    rows = [f"Works fine, arrived on time. #{n}" for n in range(1, ROWS + 1)]
    if scenario == "retry":
        for n in ERRORED_ONCE:
            rows[n - 1] += " [[emulator:errored_once:overloaded_error]]"
    return rows


def phase_at_kill(home: Path, attempt: int, written_before: str | None) -> str:
    """The least advanced state among the attempt's batches, read read-only from the ledger."""
    path = home / LEDGER
    if not path.exists():
        return "not registered"
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            run = db.execute("SELECT pk, output_written_at FROM runs WHERE id = ?", (RUN_ID,)).fetchone()
            if run is None:
                return "not registered"
            rows = db.execute("SELECT state FROM batches WHERE run_pk = ? AND attempt = ?", (run[0], attempt)).fetchall()
    except sqlite3.OperationalError as exc:  # killed before the schema was committed
        if "no such table" in str(exc):
            return "not registered"
        raise
    states = {state for (state,) in rows}
    if not states:
        return "not registered"
    for state, phase in _PHASE_OF_STATE.items():
        if state in states:
            return phase
    return "output written" if run[1] != written_before else "collected"


def written_at(home: Path) -> str | None:
    with closing(sqlite3.connect(f"file:{home / LEDGER}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT output_written_at FROM runs WHERE id = ?", (RUN_ID,)).fetchone()
    return row[0] if row else None


def command_for(scenario: str, job: Job) -> list[str | Path]:
    if scenario == "submit":
        return ["submit", job.spec, "--backend", "anthropic", "--run-id", RUN_ID]
    return ["retry", RUN_ID]


def prepare(scenario: str, folder: Path, server: EmulatorServer) -> tuple[Job, bytes | None, str | None]:
    """The job, and for `retry` a finished first run with failures: its output bytes and write time."""
    job = write_job(folder / "job", texts(scenario), batch_size=ROWS // SHARDS)
    if scenario == "submit":
        return job, None, None
    home = folder / "home"
    first = cli(home, cli_env(server), "submit", job.spec, "--backend", "anthropic", "--run-id", RUN_ID)
    if first.returncode != 3:
        raise RuntimeError(f"the first run should end with failures (exit 3), got {first.returncode}: {first.stderr}")
    return job, job.output.read_bytes(), written_at(home)


def kill_after(command: list[str], env: dict[str, str], delay: float | None) -> tuple[float, int]:
    """Run the CLI; SIGKILL it after `delay` seconds unless it exited first. Returns (seconds, exit code)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay if delay is not None else CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()  # this process only, by its pid: SIGKILL, as an OOM kill or power cut would
        process.wait()
    return time.monotonic() - started, process.returncode


def normal_span(scenario: str, workdir: Path) -> float:
    """How long one uninterrupted run of the scenario's command takes here, right now."""
    folder = workdir / f"normal-{scenario}"
    shutil.rmtree(folder, ignore_errors=True)
    with start_in_thread(EmulatorConfig(data_dir=folder / "emulator", processing_seconds=PROCESSING_SECONDS)) as server:
        job, _, _ = prepare(scenario, folder, server)
        seconds, code = kill_after(cli_command(folder / "home", *command_for(scenario, job)), cli_env(server), None)
    if code != 0:
        raise RuntimeError(f"a normal {scenario} run exited {code}; see {folder}")
    shutil.rmtree(folder, ignore_errors=True)
    return seconds


def run_instant(number: int, scenario: str, delay: float, workdir: Path) -> Instant:
    """Kill the scenario's command after `delay` seconds, recover, and check every invariant."""
    folder = workdir / f"instant-{number:03d}-{scenario}"
    shutil.rmtree(folder, ignore_errors=True)
    instant = Instant(number=number, scenario=scenario, delay=delay, folder=folder)
    home = folder / "home"
    attempt = 1 if scenario == "submit" else 2
    with start_in_thread(EmulatorConfig(data_dir=folder / "emulator", processing_seconds=PROCESSING_SECONDS)) as server:
        env = cli_env(server)
        job, previous, written_before = prepare(scenario, folder, server)
        _, code = kill_after(cli_command(home, *command_for(scenario, job)), env, delay)
        instant.phase = "exited first" if code != -9 else phase_at_kill(home, attempt, written_before)
        if code not in (-9, 0):
            instant.problems.append(f"a normal {scenario} exited {code} before the kill")
        torn = output_problems(job.output, job.ids, final=False, previous=previous)
        instant.torn = len(torn)
        instant.problems += [f"at the kill: {p}" for p in torn]
        if (home / LEDGER).exists() and integrity(home) != "ok":
            instant.integrity_failures += 1
            instant.problems.append(f"at the kill: integrity_check says {integrity(home)}")
        stderr = ""
        if instant.phase == "not registered" and scenario == "submit":
            instant.recovery.append("submit --run-id")
            recovered = cli(home, env, *command_for(scenario, job))
        else:
            instant.recovery.append("resume")
            recovered = cli(home, env, "resume", RUN_ID)
            if instant.phase == "not registered":  # the retry never registered its attempt: ask again
                stderr += recovered.stderr
                instant.recovery.append("retry")
                recovered = cli(home, env, "retry", RUN_ID)
        stderr += recovered.stderr
        instant.problems += traceback_problems(stderr)
        if recovered.returncode != 0:
            instant.problems.append(f"recovery exited {recovered.returncode}: {recovered.stderr.strip()[-500:]}")
        instant.duplicates = duplicate_batches(server, ledger_status(home))
        instant.orphaned_files = server.stats()["files_stored"]
    if instant.duplicates:
        instant.problems.append(f"{instant.duplicates} duplicate batch(es)")
    instant.rows_lost = rows_lost(job.output, job.ids)
    instant.problems += output_problems(job.output, job.ids, final=True) + leftovers(job.output)
    if not instant.problems:
        instant.problems += exit_code_problems(recovered.returncode, job.output)
    if integrity(home) != "ok":
        instant.integrity_failures += 1
        instant.problems.append(f"after recovery: integrity_check says {integrity(home)}")
    return instant


def draw_instants(rng: random.Random, count: int, spans: dict[str, float]) -> list[tuple[str, float]]:
    """Scenarios in turn; each scenario's delays are stratified over its normal span (the k-th of m
    drawn uniformly from the k-th m-th of it), so even a few instants spread from start to end."""
    per_scenario = {s: len(range(i, count, len(SCENARIOS))) for i, s in enumerate(SCENARIOS)}
    strata = {s: rng.sample(range(m), m) for s, m in per_scenario.items()}
    plan = []
    for n in range(count):
        scenario = SCENARIOS[n % len(SCENARIOS)]
        stratum = strata[scenario].pop()
        plan.append((scenario, spans[scenario] * (stratum + rng.random()) / per_scenario[scenario]))
    return plan


def describe(instant: Instant) -> str:
    verdict = "ok" if not instant.problems else "FAILED: " + "; ".join(instant.problems)
    orphans = f" · {instant.orphaned_files} request file(s) left on the server" if instant.orphaned_files else ""
    return (
        f"instant {instant.number:>3} {instant.scenario:<6} kill at {instant.delay:5.2f} s · {instant.phase:<14} · "
        f"{' + '.join(instant.recovery)}{orphans} · {verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instants", type=int, default=100, help="how many kills (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the RNG that draws the delays (default 0)")
    parser.add_argument("--workdir", type=Path, help="where instant folders go (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep every instant's folder, not only failing ones")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sweep-crashes-"))
    spans = {scenario: normal_span(scenario, workdir) for scenario in SCENARIOS}
    print("normal runs: " + ", ".join(f"{s} {t:.2f} s" for s, t in spans.items()), flush=True)
    started = time.monotonic()
    instants = []
    for number, (scenario, delay) in enumerate(draw_instants(random.Random(args.seed), args.instants, spans), start=1):
        instant = run_instant(number, scenario, delay, workdir)
        instants.append(instant)
        print(describe(instant), flush=True)
        if instant.problems:
            print(f"  kept {instant.folder}", flush=True)
        elif not args.keep:
            shutil.rmtree(instant.folder, ignore_errors=True)
    failed = [i for i in instants if i.problems]
    print(f"\n{len(instants)} instants (RNG seed {args.seed}), {len(failed)} failed · {time.monotonic() - started:.0f} s; workdir {workdir}")
    for scenario in SCENARIOS:
        hits = Counter(i.phase for i in instants if i.scenario == scenario)
        print(f"  {scenario:<6} phase at the kill: " + ", ".join(f"{p} {hits[p]}" for p in PHASES if hits[p]))
    print(
        f"rows lost {sum(i.rows_lost for i in instants)} · duplicate batches {sum(i.duplicates for i in instants)} · "
        f"integrity failures {sum(i.integrity_failures for i in instants)} · torn outputs {sum(i.torn for i in instants)}"
        f" · request files left on the server {sum(i.orphaned_files for i in instants)}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
