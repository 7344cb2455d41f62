"""`batchrunner serve`: a real process a user starts, points the SDK at, and stops with Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import anthropic
import pytest
from click.testing import CliRunner

from batchrunner.cli import cli


def test_serve_prints_how_to_use_it_serves_the_sdk_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    home = tmp_path / "home"
    process = subprocess.Popen(
        [sys.executable, "-m", "batchrunner", "--home", str(home), "serve", "--port", "0", "--processing-seconds", "0.1"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stderr.readline()  # type: ignore[union-attr]
        found = re.search(r"ANTHROPIC_BASE_URL=(http://127\.0\.0\.1:\d+) ANTHROPIC_API_KEY=anything", line)
        assert found, line
        client = anthropic.Anthropic(base_url=found.group(1), api_key="anything", max_retries=0)
        uploaded = client.files.upload(file=("a.jsonl", b"{}\n"), extra_body={"purpose": "batch"})
        assert client.files.retrieve_metadata(uploaded.id).purpose == "batch"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    assert (home / "emulator" / "emulator.sqlite3").exists()


@pytest.mark.parametrize(
    "option",
    [["--fault-rate", "1.5"], ["--errored-rate", "-0.1"], ["--truncate-rate", "x"], ["--processing-seconds", "-1"], ["--port", "70000"]],
)
def test_serve_refuses_out_of_range_options_with_exit_2(option: list[str]) -> None:
    result = CliRunner().invoke(cli, ["serve", *option])
    assert result.exit_code == 2
    assert "Invalid value" in result.output
