"""What a hostile user tries first (issue 12): an output that reaches the input, the spec or the
state home through a link; numbers that are nan or inf; control characters; an empty home.

Each must stop with exit 2 and a message naming the file and line (or the setting), before
anything is sent or written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import read_rows, reviews

from batchrunner.cli import cli


def spec_text(input_path: str, output_path: str) -> str:
    return (
        "name: job\n"
        "model: claude-haiku-4-5\n"
        "max_tokens: 32\n"
        f"input: {input_path}\n"
        "id_field: id\n"
        'prompt: "Review: {text}"\n'
        f"output: {output_path}\n"
    )


OUTPUT_LINE = 7
ROWS = b'{"id": "r-1", "text": "good"}\n{"id": "r-2", "text": "bad"}\n'


def write_job(folder: Path, input_path: str, output_path: str) -> Path:
    spec = folder / "job.yaml"
    spec.write_text(spec_text(input_path, output_path))
    return spec


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """data/rows.jsonl, `linked` a symlink to data, `here` a symlink to the folder itself."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.jsonl").write_bytes(ROWS)
    (tmp_path / "linked").symlink_to("data")
    (tmp_path / "here").symlink_to(".")
    return tmp_path


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ("linked/rows.jsonl", "is the same file as `input`: the results would overwrite the rows"),
        ("here/data/rows.jsonl", "is the same file as `input`"),
        ("here/job.yaml", "is the job spec itself"),
        ("hardlink.jsonl", "is the same file as `input`"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "submit"])
def test_an_output_that_reaches_the_input_or_the_spec_through_a_link_is_refused(
    linked, output, says, command, run_cli, isolated_env
):
    os.link(linked / "data" / "rows.jsonl", linked / "hardlink.jsonl")
    spec = write_job(linked, "data/rows.jsonl", output)
    before = spec.read_bytes()

    result = run_cli(command, spec, *(["--backend", "local"] if command == "submit" else []))

    assert result.exit_code == 2, result.output
    assert f"job.yaml:{OUTPUT_LINE}: `output` {says}" in result.stderr
    assert (linked / "data" / "rows.jsonl").read_bytes() == ROWS
    assert spec.read_bytes() == before
    assert not isolated_env.exists(), "nothing was written, not even a state home"


@pytest.mark.parametrize("output", [".batchrunner/results.jsonl", ".batchrunner/runs/results.jsonl", "state/out.jsonl"])  # (the ledger file itself: its extension is refused first)
@pytest.mark.parametrize("command", ["validate", "submit"])
def test_an_output_inside_the_state_home_is_refused_on_its_spec_line(tmp_path, output, command, monkeypatch, run_cli):
    (tmp_path / "rows.jsonl").write_bytes(ROWS)
    (tmp_path / "state").symlink_to(".batchrunner")  # the home, reached through a link
    spec = write_job(tmp_path, "rows.jsonl", output)
    monkeypatch.chdir(tmp_path)
    assert run_cli("--home", ".batchrunner", "runs").exit_code == 0  # the home and its ledger exist

    result = run_cli("--home", ".batchrunner", command, spec, *(["--backend", "local"] if command == "submit" else []))

    assert result.exit_code == 2, result.output
    assert f"job.yaml:{OUTPUT_LINE}: `output` {output} is inside the state home" in result.stderr
    assert "holds the ledger and run folders" in result.stderr
    assert not (tmp_path / ".batchrunner" / "runs").exists(), "no run was prepared"


def test_a_second_job_writing_the_same_output_is_warned_about_by_name(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", "30")
    (tmp_path / "rows.jsonl").write_bytes(ROWS)
    (tmp_path / "results").mkdir()
    (tmp_path / "same").symlink_to("results")
    first = write_job(tmp_path, "rows.jsonl", "results/out.jsonl")
    second = tmp_path / "other.yaml"
    second.write_text(spec_text("rows.jsonl", "same/out.jsonl").replace("name: job", "name: other"))
    monkeypatch.chdir(tmp_path)
    assert run_cli("submit", first, "--run-id", "first", "--detach", "--backend", "local").exit_code == 4

    result = run_cli("-q", "submit", second, "--run-id", "second", "--detach", "--backend", "local")

    assert result.exit_code == 4, result.stderr
    assert "warning: run first (job job) also writes same/out.jsonl" in result.stderr
    assert "overwrites the other's output" in result.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "soon"])
def test_a_local_processing_time_that_is_not_a_finite_number_stops_submit_before_anything(
    value, make_job, run_cli, monkeypatch, isolated_env
):
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", value)
    job = make_job(reviews(2))

    result = run_cli("submit", job.spec, "--backend", "local")

    assert result.exit_code == 2, result.output
    assert f"BATCHRUNNER_LOCAL_PROCESSING_SECONDS={value!r}: give a finite number of seconds" in result.stderr
    assert "Traceback" not in result.output
    assert not isolated_env.exists(), "no run was registered"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--processing-seconds", "nan"),
        ("--processing-seconds", "inf"),
        ("--errored-rate", "nan"),
        ("--expired-rate", "1.5"),
        ("--fault-rate", "nan"),
        ("--truncate-rate", "-0.5"),
        ("--seed", str(2**64)),
    ],
)
def test_serve_refuses_numbers_that_are_not_finite_or_in_range(option, value):
    result = CliRunner().invoke(cli, ["serve", option, value])

    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output


@pytest.mark.parametrize("command", ["submit", "watch", "retry"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_timeout_that_is_not_finite_is_refused(command, value, make_job, run_cli):
    target = make_job(reviews(1)).spec if command == "submit" else "some-run"

    result = run_cli(command, target, "--timeout", value)

    assert result.exit_code == 2, result.output
    assert f"Invalid value for '--timeout': {value!r} is not a finite number" in result.stderr


@pytest.mark.parametrize(
    ("char", "name"), [("\x00", "U+0000 (NUL)"), ("\x1b", "U+001B (ESC)"), ("\x7f", "U+007F (DEL)"), ("\x01", "U+0001")]
)
def test_a_control_character_in_the_spec_names_its_line(char, name, tmp_path, run_cli):
    (tmp_path / "rows.jsonl").write_bytes(ROWS)
    spec = tmp_path / "job.yaml"
    spec.write_text(spec_text("rows.jsonl", "out.jsonl").replace('"Review: {text}"', f'"Review:{char} {{text}}"'))

    result = run_cli("validate", spec)

    assert result.exit_code == 2, result.output
    assert f"job.yaml:6: the control character {name} is not allowed in a YAML file" in result.stderr
    assert "ReaderError" not in result.output and "unexpected" not in result.output


def test_the_escape_the_message_suggests_works(tmp_path, run_cli):
    (tmp_path / "rows.jsonl").write_bytes(ROWS)
    spec = tmp_path / "job.yaml"
    spec.write_text(spec_text("rows.jsonl", "out.jsonl").replace('"Review: {text}"', '"Review:\\x1b {text}"'))

    assert run_cli("validate", spec).exit_code == 0


@pytest.mark.parametrize("how", ["flag", "env"])
def test_an_empty_state_home_is_refused_instead_of_using_the_working_folder(how, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    if how == "env":
        monkeypatch.setenv("BATCHRUNNER_HOME", "")
        result = run_cli("runs")
    else:
        result = run_cli("--home", "", "runs")

    assert result.exit_code == 2, result.output
    assert "the state home is an empty path" in result.stderr
    assert list(tmp_path.iterdir()) == [], "no ledger in the working folder"


def test_a_good_job_still_runs_after_all_these_checks(make_job, run_cli):
    job = make_job(reviews(3))

    result = run_cli("submit", job.spec, "--backend", "local")

    assert result.exit_code == 0, result.stderr
    assert [row["custom_id"] for row in read_rows(job.output)] == ["r-1", "r-2", "r-3"]
