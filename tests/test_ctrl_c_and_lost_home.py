"""Ctrl-C at every step boundary (BATCHRUNNER_INTERRUPT_AT: a real SIGINT, sent by the process to
itself there), and a state home deleted under a running `local` submit (issue 12, items 3 and 4).

Once the run is in the ledger, Ctrl-C detaches: exit 4, a hint naming the run, and a later
`resume` finishes it with every row once. Before that nothing was sent: exit 130.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import read_rows, reviews

from batchrunner.crashpoints import POINTS
from batchrunner.emulator import EmulatorServer

ROWS = 30
SHARDS = 3


def terminal_sigint() -> None:
    """Ctrl-C behaves as at a terminal, even when the tests run in the background (SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
    env.update(extra)
    return env


def server_env(server: EmulatorServer, **extra: str) -> dict[str, str]:
    return user_env(ANTHROPIC_BASE_URL=server.base_url, ANTHROPIC_API_KEY="sk-test-key", BATCHRUNNER_RECONCILE_WAIT="1", **extra)


def batchrunner(home: Path, env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "batchrunner", "--home", str(home), *map(str, args)]
    return subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=120, preexec_fn=terminal_sigint)


@pytest.mark.parametrize("point", POINTS)
def test_ctrl_c_at_each_step_detaches_and_resume_finishes_every_row_once(point, make_job, slow_emulator, tmp_path):
    job = make_job(reviews(ROWS), batch_size=ROWS // SHARDS)
    home = tmp_path / "state"

    stopped = batchrunner(home, server_env(slow_emulator, BATCHRUNNER_INTERRUPT_AT=point), "submit", job.spec, "--run-id", "nightly")

    assert "Aborted!" not in stopped.stderr and "Traceback" not in stopped.stderr
    assert "error:" not in stopped.stderr, "a Ctrl-C is not an error"
    env = server_env(slow_emulator)
    if point in ("cache.planned", "compile.done"):
        assert stopped.returncode == 130, stopped.stderr
        assert "interrupted; nothing was sent" in stopped.stderr
        assert slow_emulator.stats()["batches_created"] == 0
        recovered = batchrunner(home, env, "submit", job.spec, "--run-id", "nightly")
    else:
        assert stopped.returncode == 4, stopped.stderr
        assert "detached from run nightly" in stopped.stderr
        came_back = ("Come back with `batchrunner watch nightly`", "its batches have ended. `batchrunner collect nightly` finishes it")
        assert any(how in stopped.stderr for how in came_back), stopped.stderr
        if point.startswith("output."):
            assert came_back[1] in stopped.stderr, "every batch has ended by the time the output is written"
        recovered = batchrunner(home, env, "resume", "nightly")

    assert recovered.returncode == 0, recovered.stderr
    assert slow_emulator.stats()["batches_created"] == SHARDS, "no batch was created twice"
    out = read_rows(job.output)
    assert [row["custom_id"] for row in out] == [f"r-{i}" for i in range(1, ROWS + 1)]
    assert {row["status"] for row in out} == {"succeeded"}
    leftovers = [p.name for p in job.output.parent.iterdir() if p.name != job.output.name]
    assert leftovers == [], "no temp file is left beside the output"


def test_a_half_submitted_run_says_how_to_resume_it_and_a_plain_submit_names_it(make_job, slow_emulator, tmp_path):
    job = make_job(reviews(ROWS), batch_size=ROWS // SHARDS)
    home = tmp_path / "state"
    stopped = batchrunner(home, server_env(slow_emulator, BATCHRUNNER_INTERRUPT_AT="submit.recorded"), "submit", job.spec, "--run-id", "half")
    assert stopped.returncode == 4, stopped.stderr
    assert "detached from run half; its batches keep running. Come back with `batchrunner watch half`" in stopped.stderr
    assert "which also submits any batch not sent yet" in stopped.stderr

    again = batchrunner(home, server_env(slow_emulator), "-q", "submit", job.spec, "--detach")

    assert again.returncode == 4, again.stderr
    assert "warning: run half of this job is not finished (submitting); `batchrunner resume half` finishes it" in again.stderr


def test_deleting_the_state_home_during_a_local_run_ends_it_with_one_line(make_job, tmp_path):
    job = make_job(reviews(5))
    home = tmp_path / "state"
    log = tmp_path / "submit.log"
    env = user_env(BATCHRUNNER_LOCAL_PROCESSING_SECONDS="3")
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "batchrunner", "--home", str(home), "submit", str(job.spec), "--backend", "local"],
            env=env, stderr=stderr, stdout=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while "created msgbatch_" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)

        shutil.rmtree(home)

        assert process.wait(timeout=60) == 1, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert f"error: the state home {home} was deleted during run job-" in text
    assert "Traceback" not in text and "trying again" not in text
    assert len(text.splitlines()) <= 4, text


def test_ctrl_c_while_attachments_upload_creates_no_batch_and_the_next_submit_finishes(make_job, slow_emulator, tmp_path):
    docs = tmp_path / "job" / "docs"
    rows = [{"id": f"r-{i}", "text": f"summary {i}", "doc": f"docs/report-{i}.pdf"} for i in range(1, 5)]
    job = make_job(rows, extra="attachments:\n  - field: doc\n")
    docs.mkdir()
    for i in range(1, 5):
        (docs / f"report-{i}.pdf").write_bytes(b"%PDF-1.4\n" + f"% report {i}\n".encode() + b"%%EOF\n")
    home = tmp_path / "state"

    stopped = batchrunner(home, server_env(slow_emulator, BATCHRUNNER_INTERRUPT_AT="attachments.uploaded"), "submit", job.spec)

    assert stopped.returncode == 130, stopped.stderr
    assert "interrupted; no batch was created (attachments uploaded so far are reused next time)" in stopped.stderr
    assert slow_emulator.stats()["batches_created"] == 0
    again = batchrunner(home, server_env(slow_emulator), "submit", job.spec)
    assert again.returncode == 0, again.stderr
    assert {row["status"] for row in read_rows(job.output)} == {"succeeded"}
