"""client.py's Models API calls and `batchrunner models`, against the emulator over loopback."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from batchrunner.catalog import Catalog
from batchrunner.client import Api, ResolvedBackend
from batchrunner.emulator import EmulatorServer
from batchrunner.errors import NotFound


def api_for(server: EmulatorServer, api_version: str | None = None) -> Api:
    return Api(ResolvedBackend("local", None), server.base_url, max_retries=0, api_version=api_version)


def test_retrieve_model_and_list_models_return_plain_dicts(emulator: EmulatorServer) -> None:
    api = api_for(emulator)

    info = api.retrieve_model("claude-haiku-4-5")
    assert (info["id"], info["max_tokens"], info["capabilities"]["structured_outputs"]) == (
        "claude-haiku-4-5-20251001", 64_000, {"supported": True})
    listed = [model["id"] for model in api.list_models()]
    assert listed == [e.id for e in Catalog.default().entries() if e.lifecycle != "retired"]


def test_an_unknown_model_is_not_found(emulator: EmulatorServer) -> None:
    with pytest.raises(NotFound, match="model claude-sonnet-9-9: not found: model: claude-sonnet-9-9"):
        api_for(emulator).retrieve_model("claude-sonnet-9-9")


@pytest.mark.parametrize("version", ["2023-06-01", "2026-10-21"])
def test_every_call_carries_the_runs_api_version(emulator: EmulatorServer, version: str) -> None:
    api = api_for(emulator, version)

    assert api.api_version == version
    request = api.sdk.models.with_raw_response.retrieve("claude-opus-5-5").http_request
    assert request.headers["anthropic-version"] == version


def test_models_offline_lists_the_catalog_with_batch_prices(run_cli) -> None:
    result = run_cli("models", "--offline")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "LIFECYCLE", "CONTEXT", "MAX", "OUTPUT", "THINKING", "BATCH", "IN", "$/MTOK",
                                "BATCH", "OUT", "$/MTOK"]
    opus = next(line for line in lines if line.startswith("claude-opus-5-5 "))
    assert opus.split() == ["claude-opus-5-5", "active", "1M", "128K", "(300K", "beta)", "adaptive", "2", "10"]
    haiku = next(line for line in lines if line.startswith("claude-haiku-5-5 "))
    assert "0.05 / 0.25 >100K" in haiku
    preview = next(line for line in lines if line.startswith("claude-mythos-preview "))
    assert preview.split()[-2:] == ["?", "?"]
    assert not any(line.startswith("claude-3-opus") for line in lines)
    assert lines[-1].startswith("from the built-in catalog (as of ")


def test_models_json_asks_the_backends_models_api(run_cli, emulator: EmulatorServer, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")

    result = run_cli("models", "--json")

    assert result.exit_code == 0, result.output
    listing = orjson.loads(result.stdout)
    assert listing["source"] == f"the Models API of anthropic ({emulator.base_url})"
    opus = next(model for model in listing["models"] if model["id"] == "claude-opus-5-5")
    assert opus == {
        "id": "claude-opus-5-5", "display_name": opus["display_name"], "lifecycle": "active",
        "max_input_tokens": 1_000_000, "max_tokens": 128_000, "batch_max_tokens": 300_000, "thinking": ["adaptive"],
        "batch_price_per_mtok": {"input": 2.0, "output": 10.0}, "batch_price_tiers": [],
    }
    assert emulator.stats()["calls"]["GET /v1/models"] == 1


def test_models_lists_what_a_newer_server_offers_with_unknown_prices(run_cli, tmp_path: Path, monkeypatch) -> None:
    from batchrunner.emulator import EmulatorConfig, start_in_thread

    catalog = orjson.loads((Path(__file__).parent.parent / "batchrunner" / "data" / "models.json").read_bytes())
    newer = {**catalog["models"][0], "id": "claude-opus-6", "created_at": "2026-12-24T00:00:00Z", "batchrunner": {}}
    models_file = tmp_path / "models.json"
    models_file.write_bytes(orjson.dumps({**catalog, "models": [newer, *catalog["models"]]}))
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "data", models_file=models_file)) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        result = run_cli("models")

    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[1].split()
    assert (first[0], first[-2:]) == ("claude-opus-6", ["?", "?"])


def test_serve_refuses_a_bad_models_file_naming_it(run_cli, tmp_path: Path) -> None:
    bad = tmp_path / "models.json"
    bad.write_text('{"models": [{"id": "x"}]}')

    result = run_cli("serve", "--port", "0", "--data-dir", tmp_path / "data", "--models", bad)

    assert result.exit_code == 2
    assert f"{bad}: not a model catalog: models[0] (x)" in result.stderr
