"""`batchrunner serve`: a real process a user starts, points the SDK at, and stops with Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import pytest
from click.testing import CliRunner
from helpers import announced_url

from batchrunner.cli import cli


def ctrl_c_reaches_python() -> None:
    """A terminal delivers Ctrl-C; a harness that runs us in the background may have set SIGINT
    to ignored, which children inherit and which stops Python from raising KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_prints_how_to_use_it_serves_the_sdk_and_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    home = tmp_path / "home"
    log = tmp_path / "serve.log"  # a file, not a pipe nobody drains: a full pipe would block the server
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "batchrunner", "--home", str(home), "serve", "--port", "0", "--processing-seconds", "0.1"],
            stderr=stderr, text=True, preexec_fn=ctrl_c_reaches_python,
        )
    try:
        found = announced_url(log, process, r"ANTHROPIC_BASE_URL=(http://127\.0\.0\.1:\d+) ANTHROPIC_API_KEY=anything")
        client = anthropic.Anthropic(base_url=found.group(1), api_key="anything", max_retries=0)
        uploaded = client.files.upload(file=("a.jsonl", b"{}\n"), extra_body={"purpose": "batch"})
        assert client.files.retrieve_metadata(uploaded.id).purpose == "batch"
    finally:
        process.send_signal(stop)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()  # never leave a server behind a failed test
            raise
    assert code == 0, log.read_text()
    assert (home / "emulator" / "emulator.sqlite3").exists()
    assert "Traceback" not in log.read_text()


def test_serve_on_a_port_in_use_names_the_port_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "batchrunner", "--home", str(tmp_path), "serve", "--port", str(port)],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    assert done.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use; pick another --port" in done.stderr


@pytest.mark.parametrize(
    "option",
    [["--fault-rate", "1.5"], ["--errored-rate", "-0.1"], ["--truncate-rate", "x"], ["--processing-seconds", "-1"], ["--port", "70000"], ["--rpm", "0"]],
)
def test_serve_refuses_out_of_range_options_with_exit_2(option: list[str]) -> None:
    result = CliRunner().invoke(cli, ["serve", *option])
    assert result.exit_code == 2
    assert "Invalid value" in result.output


def test_serve_strict_in_order_with_another_catalog(tmp_path: Path) -> None:
    import orjson

    catalog = orjson.loads((Path(__file__).parent.parent / "batchrunner" / "data" / "models.json").read_bytes())
    newer = {**catalog["models"][0], "id": "claude-opus-6", "display_name": "Claude Opus 6", "batchrunner": {}}
    models = tmp_path / "models.json"
    models.write_bytes(orjson.dumps({**catalog, "models": [newer, *catalog["models"]]}))
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "batchrunner", "--home", str(tmp_path / "home"), "serve", "--port", "0",
               "--processing-seconds", "0.1", "--models", str(models), "--keep-order", "--reject-unknown-fields"]
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stderr=stderr, text=True)
    try:
        found = announced_url(log, process, r"ANTHROPIC_BASE_URL=(http://127\.0\.0\.1:\d+)")
        client = anthropic.Anthropic(base_url=found.group(1), api_key="anything", max_retries=0)

        with pytest.raises(anthropic.BadRequestError, match="purpose: Extra inputs are not permitted"):
            client.files.upload(file=("a.jsonl", b"{}\n"), extra_body={"purpose": "batch"})
        assert client.models.retrieve("claude-opus-6").display_name == "Claude Opus 6"
        ids = [f"r-{i}" for i in range(30)]
        params = {"model": "claude-opus-6", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}
        batch = client.messages.batches.create(requests=[{"custom_id": i, "params": params} for i in ids])  # type: ignore[misc]
        while client.messages.batches.retrieve(batch.id).processing_status != "ended":
            time.sleep(0.05)
        results = list(client.messages.batches.results(batch.id))
        assert [r.custom_id for r in results] == ids and {r.result.type for r in results} == {"succeeded"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
