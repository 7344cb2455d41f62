"""The public API is small and pinned: a change to it is a decision, not an accident."""

from __future__ import annotations

import subprocess
import sys

from helpers import reviews

import batchrunner

EXPECTED = {
    "ApiError", "BatchrunnerError", "BudgetExceeded", "CompileReport", "EmulatorConfig", "Events", "InputError",
    "JobSpec", "Ledger", "NotFound", "Outcome", "RowError", "RunLocked", "Selection", "SpecError", "StillRunning",
    "SubmitUncertain", "UnknownRun", "compile_job", "load_spec", "pipeline", "start_in_thread", "validate_job",
    "Job", "run", "run_async",
}  # fmt: skip


def test_exported_names_are_pinned_and_all_resolve():
    assert set(batchrunner.__all__) == EXPECTED
    for name in batchrunner.__all__:
        assert getattr(batchrunner, name) is not None


def test_importing_the_package_does_not_load_the_sdk():
    code = "import sys, batchrunner; print('anthropic' in sys.modules, 'pydantic' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]


def test_the_library_runs_a_job_without_the_cli(make_job, tmp_path):
    job = make_job(reviews(3))
    outcome = batchrunner.pipeline.submit(job.spec, home=tmp_path / "lib-home")
    assert outcome.exit_code == 0
    assert (
        batchrunner.pipeline.status(outcome.run.id, home=tmp_path / "lib-home").summary[
            "counts"
        ]["succeeded"]
        == 3
    )
