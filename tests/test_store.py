"""Run data and output in an object store (issue 17, DESIGN §11), on a real S3-compatible server.

moto runs in server mode on loopback (conftest's `s3_endpoint`) and batchrunner reaches it as a
user's would: s3fs and botocore, configured by the standard AWS environment, AWS_ENDPOINT_URL
included. Nothing below s3fs is replaced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from click.testing import Result
from conftest import Bucket
from helpers import reviews

from batchrunner.emulator import EmulatorServer
from batchrunner.ledger import LEDGER_FILE


def to_bucket(job: Any, bucket: Bucket, key: str = "out.jsonl") -> str:
    """Point the job's `output:` at an object in the bucket."""
    url = bucket.url(key)
    job.spec.write_text(job.spec.read_text().replace("output: out/results.jsonl", f"output: {url}"))
    return url


def rows_of(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines()]


def test_a_job_with_its_run_data_and_output_in_s3_runs_end_to_end(
    make_job: Callable[..., Any], run_cli: Callable[..., Result], bucket: Bucket, isolated_env: Path
) -> None:
    job = make_job(reviews(5), batch_size=2)
    url = to_bucket(job, bucket)

    done = run_cli("--store", bucket.url("runs"), "submit", job.spec, "--backend", "local", "--run-id", "night")

    assert done.exit_code == 0, done.stderr
    assert [row["custom_id"] for row in rows_of(bucket.read("out.jsonl"))] == [f"r-{i}" for i in range(1, 6)]
    assert f"output: {url}" in done.stdout
    keys = bucket.keys()
    assert {"runs/night/rows.jsonl", "runs/night/requests-000.jsonl", "runs/night/requests-002.jsonl"} <= set(keys)
    assert len([key for key in keys if key.startswith("runs/night/results/")]) == 3
    status = orjson.loads(run_cli("--json", "status", "night").stdout)
    assert status["run"]["store"] == bucket.url("runs/night") and status["run"]["output"] == url
    assert not job.output.exists()


def new_host(previous: Path, host: Path) -> None:
    """A host with nothing of the run but its ledger (copied here: sharing one ledger is issue
    17's PostgreSQL part); the previous host is gone, with its spool."""
    host.mkdir()
    for ledger_file in previous.glob(f"{LEDGER_FILE}*"):
        shutil.copy(ledger_file, host / ledger_file.name)
    shutil.rmtree(previous)


def on_host(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A command in a process of its own, as on another machine."""
    command = [sys.executable, "-m", "batchrunner", "--home", str(home), *args]
    return subprocess.run(command, env=os.environ | (env or {}), capture_output=True, text=True, timeout=120)


def test_hosts_with_nothing_local_finish_and_retry_a_run_from_the_store(
    make_job: Callable[..., Any], bucket: Bucket, emulator: EmulatorServer, tmp_path: Path, monkeypatch: Any
) -> None:
    """Host A is killed mid-submit (one of three shards created); host B, with only the ledger,
    resumes and watches the run to the end from the store; host C retries its failed request.
    Each is a process of its own."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    rows = reviews(6)
    rows[3]["text"] += " [[emulator:errored_once:overloaded_error]]"
    job = make_job(rows, batch_size=2)
    to_bucket(job, bucket)
    host_a, host_b, host_c = tmp_path / "host-a", tmp_path / "host-b", tmp_path / "host-c"

    killed = on_host(host_a, "--store", bucket.url("runs"), "submit", str(job.spec), "--backend", "anthropic",
                     "--run-id", "shared", "--detach", env={"BATCHRUNNER_CRASH_AT": "submit.recorded"})
    assert killed.returncode == -9 and emulator.stats()["batches_created"] == 1, killed.stderr
    new_host(host_a, host_b)
    watched = on_host(host_b, "watch", "shared")

    assert watched.returncode == 3, watched.stderr
    assert emulator.stats()["batches_created"] == 3, "each shard created once: two of them from the store's request files"
    out = rows_of(bucket.read("out.jsonl"))
    assert [row["custom_id"] for row in out] == [f"r-{i}" for i in range(1, 7)]
    assert [row["status"] for row in out] == ["succeeded"] * 3 + ["errored"] + ["succeeded"] * 2
    assert len({row["batch_id"] for row in out}) == 3
    new_host(host_b, host_c)
    retried = on_host(host_c, "retry", "shared")

    assert retried.returncode == 0, retried.stderr
    out = rows_of(bucket.read("out.jsonl"))
    assert [row["custom_id"] for row in out] == [f"r-{i}" for i in range(1, 7)]
    assert {row["status"] for row in out} == {"succeeded"} and out[3]["attempt"] == 2
    assert "runs/shared/attempt-2/requests-001.jsonl" in bucket.keys()


def test_a_broken_upload_leaves_no_output_object(
    make_job: Callable[..., Any], run_cli: Callable[..., Result], bucket: Bucket
) -> None:
    """A real process, so that whatever it leaves open is closed (and flushed) at its exit too."""
    job = make_job(reviews(3))
    url = to_bucket(job, bucket)
    env = os.environ | {"BATCHRUNNER_FAIL_WRITE_AT": "output.write.upload"}
    command = ["--store", bucket.url("runs"), "submit", str(job.spec), "--backend", "local", "--run-id", "b"]

    broken = subprocess.run([sys.executable, "-m", "batchrunner", *command], env=env, capture_output=True, text=True, timeout=120)

    assert broken.returncode == 1
    assert f"upload to {url}:" in broken.stderr and "Traceback" not in broken.stderr
    assert "out.jsonl" not in bucket.keys()
    assert run_cli("collect", "b").exit_code == 0
    assert len(rows_of(bucket.read("out.jsonl"))) == 3


def test_a_crash_mid_upload_leaves_nothing_half_written(
    make_job: Callable[..., Any], run_cli: Callable[..., Result], bucket: Bucket, isolated_env: Path
) -> None:
    """A process killed while uploading the output (after its first part) leaves no object; the
    next collect writes it whole. A local output's temp file is swept as before."""
    job = make_job(reviews(4))
    to_bucket(job, bucket)
    assert run_cli("--store", bucket.url("runs"), "submit", job.spec, "--backend", "local", "--run-id", "c",
                   "--detach").exit_code == 4
    env = os.environ | {"BATCHRUNNER_CRASH_AT": "store.uploading"}

    killed = subprocess.run([sys.executable, "-m", "batchrunner", "watch", "c"], env=env, capture_output=True, timeout=120)

    assert killed.returncode == -9, killed.stderr[-2000:]
    assert "out.jsonl" not in bucket.keys()
    assert run_cli("collect", "c").exit_code == 0
    assert [row["custom_id"] for row in rows_of(bucket.read("out.jsonl"))] == ["r-1", "r-2", "r-3", "r-4"]


def test_a_url_whose_extra_is_missing_is_exit_2_naming_it(
    make_job: Callable[..., Any], run_cli: Callable[..., Result], isolated_env: Path
) -> None:
    job = make_job(reviews(2))

    for store, extra in (("gs://bucket/runs", "gcs"), ("az://container/runs", "azure")):
        refused = run_cli("--store", store, "submit", job.spec, "--backend", "local")
        assert refused.exit_code == 2 and f"pip install 'batchrunner[{extra}]'" in refused.stderr
    job.spec.write_text(job.spec.read_text().replace("output: out/results.jsonl", "output: gs://bucket/out.jsonl"))
    refused = run_cli("submit", job.spec, "--backend", "local")
    assert refused.exit_code == 2 and "pip install 'batchrunner[gcs]'" in refused.stderr
    assert not (isolated_env / LEDGER_FILE).exists(), "nothing was written"


def test_credentials_in_a_store_url_are_refused_and_never_shown(
    make_job: Callable[..., Any], run_cli: Callable[..., Result], bucket: Bucket, isolated_env: Path
) -> None:
    job = make_job(reviews(2))
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"

    for store in (f"s3://AKIDEXAMPLE:{secret}@{bucket.name}/runs", f"s3://{bucket.name}/runs?secret_key={secret}"):
        refused = run_cli("--store", store, "submit", job.spec, "--backend", "local")
        assert refused.exit_code == 2, refused.stderr
        assert "credentials do not go in the URL" in refused.stderr and "***" in refused.stderr
        assert secret not in refused.stdout + refused.stderr
    assert not (isolated_env / LEDGER_FILE).exists()


def test_credentials_in_an_output_url_are_refused_on_its_spec_line_by_validate_and_submit(
    make_job: Callable[..., Any], run_cli: Callable[..., Result], isolated_env: Path
) -> None:
    job = make_job(reviews(2))
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"

    for url in (f"s3://AKIDEXAMPLE:{secret}@bucket/out.jsonl", f"s3://bucket/out.jsonl?secret_key={secret}"):
        job.spec.write_text(job.spec.read_text().replace("output: out/results.jsonl", f"output: {url}"))
        for command in (("validate", job.spec), ("submit", job.spec, "--backend", "local")):
            refused = run_cli(*command)
            assert refused.exit_code == 2, refused.stderr
            assert "job.yaml:7: `output` s3://" in refused.stderr and "credentials do not go in the URL" in refused.stderr
            assert "***" in refused.stderr and secret not in refused.stdout + refused.stderr
        job.spec.write_text(job.spec.read_text().replace(f"output: {url}", "output: out/results.jsonl"))
    assert not (isolated_env / LEDGER_FILE).exists()


def test_a_missing_bucket_is_refused_by_submit_before_any_batch_is_created(
    make_job: Callable[..., Any], run_cli: Callable[..., Result], bucket: Bucket, isolated_env: Path
) -> None:
    """Found at the end, a missing bucket would fail a run whose batches are paid for; `validate`
    makes no network call, so it is `submit` that asks (one call: does the bucket exist?)."""
    job = make_job(reviews(2))
    missing = f"{bucket.name}-missing"
    job.spec.write_text(job.spec.read_text().replace("output: out/results.jsonl", f"output: s3://{missing}/out.jsonl"))
    assert run_cli("validate", job.spec).exit_code == 0

    refused = run_cli("submit", job.spec, "--backend", "local")

    assert refused.exit_code == 1, refused.stderr
    assert f"job.yaml:7: `output` s3://{missing}/out.jsonl: the bucket {missing} does not exist or cannot be reached" in refused.stderr
    assert not (isolated_env / LEDGER_FILE).exists(), "no run, no batch"
    job.spec.write_text(job.spec.read_text().replace(f"output: s3://{missing}/out.jsonl", "output: out/results.jsonl"))

    refused = run_cli("--store", f"s3://{missing}/runs", "submit", job.spec, "--backend", "local")

    assert refused.exit_code == 1, refused.stderr
    assert f"--store s3://{missing}/runs: the bucket {missing} does not exist or cannot be reached" in refused.stderr
    assert not (isolated_env / LEDGER_FILE).exists() and not job.output.exists()


def test_an_output_bucket_deleted_during_a_run_is_named_as_missing(
    make_job: Callable[..., Any], run_cli: Callable[..., Result], bucket: Bucket
) -> None:
    """Not "no such object": the user is to make the bucket again, and collect then writes the output."""
    job = make_job(reviews(2))
    url = to_bucket(job, bucket)
    assert run_cli("submit", job.spec, "--backend", "local", "--run-id", "gone", "--detach").exit_code == 4
    bucket.fs.rmdir(bucket.name)

    failed = run_cli("watch", "gone")

    assert failed.exit_code == 1
    assert f"upload to {url}: the bucket {bucket.name} does not exist" in failed.stderr, failed.stderr
    bucket.fs.mkdir(bucket.name)
    assert run_cli("collect", "gone").exit_code == 0
    assert [row["custom_id"] for row in rows_of(bucket.read("out.jsonl"))] == ["r-1", "r-2"]


def test_a_local_store_folder_holds_the_run_folders(
    make_job: Callable[..., Any], run_cli: Callable[..., Result], tmp_path: Path, isolated_env: Path
) -> None:
    job = make_job(reviews(2))
    store = tmp_path / "shared-disk"

    done = run_cli("--store", store, "submit", job.spec, "--backend", "local", "--run-id", "here")

    assert done.exit_code == 0, done.stderr
    assert (store / "here" / "rows.jsonl").exists() and len(list((store / "here" / "results").iterdir())) == 1
    assert not (isolated_env / "runs" / "here").exists()
    assert orjson.loads(run_cli("--json", "status", "here").stdout)["run"]["store"] == str(store / "here")


def test_a_run_whose_data_could_not_all_be_uploaded_leaves_nothing(
    make_job: Callable[..., Any], run_cli: Callable[..., Result], bucket: Bucket, isolated_env: Path, monkeypatch: Any
) -> None:
    """The store fails after the rows file is up: the run is not registered, and neither the
    objects already uploaded nor the local folder stay behind as orphans."""
    job = make_job(reviews(3), batch_size=2)
    monkeypatch.setenv("BATCHRUNNER_FAIL_WRITE_AT", "store.publish@2")

    failed = run_cli("--store", bucket.url("runs"), "submit", job.spec, "--backend", "local", "--run-id", "half")

    assert failed.exit_code == 1 and "No space left on device" in failed.stderr
    assert bucket.keys() == []
    assert not (isolated_env / "runs" / "half").exists()
    assert run_cli("status", "half").exit_code == 2


def test_an_upload_killed_after_its_first_part_leaves_no_object(bucket: Bucket, tmp_path: Path) -> None:
    """A file over one part (8 MB) goes up as a multipart upload: a process killed once its first
    part is on the server leaves an upload S3 never completes, and no object."""
    big = tmp_path / "results.jsonl"
    big.write_bytes(b'{"custom_id":"r-1","result":{"type":"succeeded"}}\n' * 200_000)  # 10 MB
    upload = f"from pathlib import Path; from batchrunner.store import put_whole; put_whole(Path({str(big)!r}), {bucket.url('big.jsonl')!r})"
    env = os.environ | {"BATCHRUNNER_CRASH_AT": "store.uploading"}

    killed = subprocess.run([sys.executable, "-c", upload], env=env, capture_output=True, timeout=120)

    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [part["Key"] for part in bucket.fs.list_multipart_uploads(bucket.name)] == ["big.jsonl"], "a part went up"
    assert "big.jsonl" not in bucket.keys()
    done = subprocess.run([sys.executable, "-c", upload], env=os.environ, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert bucket.read("big.jsonl") == big.read_bytes()
