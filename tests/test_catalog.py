"""The packaged model catalog: exact lookups, the Models API shape, prices, and bad catalog files."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from batchrunner.catalog import Catalog, ModelEntry, Prices
from batchrunner.errors import InputError

CAPABILITY_LEAVES = ("batch", "citations", "code_execution", "image_input", "pdf_input", "structured_outputs")
THINKING_TYPES = ("adaptive", "between_tools", "disabled", "enabled")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.default()


def test_the_catalog_has_a_date_sources_and_every_model_of_the_reference(catalog: Catalog):
    assert catalog.as_of == "2026-11-30"
    assert catalog.sources["PR"].startswith("https://")
    ids = {entry.id for entry in catalog.entries()}
    for short in ("fable-5-2", "mythos-5-2", "opus-5-5", "sonnet-5-5", "haiku-5-5", "fable-5-1", "mythos-5-1",
                  "fable-5", "mythos-5", "opus-5", "sonnet-5", "opus-4-8", "opus-4-7", "mythos-preview",
                  "opus-4-6", "sonnet-4-6"):
        assert f"claude-{short}" in ids
    assert catalog.resolve("claude-haiku-4-5").id == "claude-haiku-4-5-20251001"
    assert catalog.resolve("claude-opus-4-1").lifecycle == "retired"


def test_every_entry_has_the_models_api_shape(catalog: Catalog):
    for entry in catalog.entries():
        info = entry.info
        assert info["type"] == "model" and info["id"] == entry.id and "batchrunner" not in info
        assert set(info) == {"type", "id", "display_name", "created_at", "lifecycle", "deprecated_at", "retires_at",
                             "line", "max_input_tokens", "max_tokens", "capabilities"}
        caps = info["capabilities"]
        for leaf in CAPABILITY_LEAVES:
            assert set(caps[leaf]) == {"supported"}
        assert set(caps["thinking"]["types"]) == set(THINKING_TYPES)
        assert set(caps["effort"]) == {"supported", "low", "medium", "high", "max", "xhigh"}
        assert set(caps["server_tools"]) == {"supported", "code_execution", "web_search"}


def test_entries_are_newest_first(catalog: Catalog):
    created = [entry.info["created_at"] for entry in catalog.entries()]
    assert created == sorted(created, reverse=True)


@pytest.mark.parametrize(
    ("model", "other"),
    [("claude-opus-5-5", "claude-opus-5"), ("claude-fable-5-2", "claude-fable-5")],
)
def test_a_newer_model_never_gets_the_entry_of_its_prefix(catalog: Catalog, model: str, other: str):
    assert catalog.resolve(model).id == model
    assert catalog.resolve(model).prices != catalog.resolve(other).prices
    assert catalog.resolve(model + "-x") is None
    assert catalog.resolve("claude-opus-5-") is None


def test_unknown_ids_get_the_closest_known_ones(catalog: Catalog):
    assert catalog.resolve("claude-sonnet-9-9") is None
    assert "claude-sonnet-5-5" in catalog.closest("claude-sonnet-9-9")
    assert catalog.closest("claude-opus-55")[0] == "claude-opus-5-5"


def test_prices_and_the_haiku_tier(catalog: Catalog):
    opus = catalog.resolve("claude-opus-5-5")
    assert opus.prices == Prices(input=4, output=20, cache_write_5m=5, cache_write_1h=8, cache_read=0.2)
    haiku = catalog.resolve("claude-haiku-5-5")
    assert haiku.prices_for(100_000).input == 0.10
    assert haiku.prices_for(100_001) == Prices(input=0.5, output=2.5, cache_write_5m=0.625, cache_write_1h=1.0, cache_read=0.05)
    assert catalog.resolve("claude-mythos-preview").prices is None


def test_supports_reads_the_capabilities(catalog: Catalog):
    opus = catalog.resolve("claude-opus-5-5")
    assert opus.supports("thinking", "types", "adaptive")
    assert not opus.supports("thinking", "types", "disabled")
    assert not opus.supports("no_such_capability")
    assert catalog.resolve("claude-haiku-4-5").supports("structured_outputs")
    assert not catalog.resolve("claude-haiku-4-5").supports("effort")


def test_a_live_model_info_wins_for_limits_but_keeps_the_catalog_prices(catalog: Catalog):
    known = catalog.resolve("claude-opus-5-5")
    live = dict(known.info, max_tokens=200_000)
    entry = ModelEntry.from_live(live, known)
    assert entry.max_tokens == 200_000 and entry.prices == known.prices and entry.forced_tool_choice is False
    newer = ModelEntry.from_live(dict(known.info, id="claude-opus-6"), None)
    assert newer.id == "claude-opus-6" and newer.prices is None


def test_a_catalog_file_loads_and_a_bad_one_names_itself(tmp_path: Path, catalog: Catalog):
    good = tmp_path / "models.json"
    newer = dict(catalog.resolve("claude-opus-5-5").info, id="claude-opus-6")
    good.write_bytes(orjson.dumps({"as_of": "2027-01-01", "sources": {}, "models": [newer]}))
    assert Catalog.from_file(good).resolve("claude-opus-6") is not None
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"models": [{"id": "claude-x"}]}))
    with pytest.raises(InputError, match=r"bad.json: not a model catalog: models\[0\] \(claude-x\)"):
        Catalog.from_file(bad)
    with pytest.raises(InputError, match="cannot read the model catalog"):
        Catalog.from_file(tmp_path / "missing.json")
