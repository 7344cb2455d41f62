"""The emulator's Models API, from the packaged catalog, through the official SDK and in the 0.x dialect."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from batchrunner.catalog import Catalog
from batchrunner.emulator import EmulatorServer

LEGACY = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def client_for(server: EmulatorServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0)


def listed() -> list[str]:
    """What the API lists by default: active and deprecated models, newest first."""
    return [entry.id for entry in Catalog.default().entries() if entry.lifecycle != "retired"]


def test_retrieve_gives_the_model_info_the_catalog_holds(emulator: EmulatorServer) -> None:
    info = client_for(emulator).models.retrieve("claude-opus-5-5")

    assert (info.id, info.type, info.lifecycle, info.max_tokens) == ("claude-opus-5-5", "model", "active", 128_000)
    assert info.capabilities is not None and info.capabilities.thinking.types.enabled.supported is False
    assert info.model_dump(mode="json") == anthropic.types.ModelInfo.model_validate(
        Catalog.default().resolve("claude-opus-5-5").info  # type: ignore[union-attr]
    ).model_dump(mode="json")


def test_an_alias_resolves_to_its_model(emulator: EmulatorServer) -> None:
    assert client_for(emulator).models.retrieve("claude-haiku-4-5").id == "claude-haiku-4-5-20251001"


def test_an_unknown_model_is_404_not_found_error_naming_it(emulator: EmulatorServer) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client_for(emulator).models.retrieve("claude-opus-5-9")

    assert caught.value.body["error"] == {"type": "not_found_error", "message": "model: claude-opus-5-9"}  # type: ignore[index]


def test_list_pages_through_every_offered_model_newest_first(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    first = client.models.list(limit=5)

    assert [m.id for m in first.data] == listed()[:5] and first.has_more
    assert [m.id for m in client.models.list(limit=5)] == listed()  # the SDK follows after_id to the end
    assert "claude-3-opus-20240229" not in listed()


def test_retired_models_are_listed_only_when_asked_for(emulator: EmulatorServer) -> None:
    retired = [m.id for m in client_for(emulator).models.list(lifecycle=["retired"], limit=100)]

    assert "claude-3-opus-20240229" in retired and "claude-opus-5-5" not in retired


def page(server: EmulatorServer, **query: Any) -> dict[str, Any]:
    response = httpx2.get(server.base_url + "/v1/models", headers=LEGACY, params=query)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_0x_dialect_pages_both_ways_with_after_id_and_before_id(emulator: EmulatorServer) -> None:
    ids = listed()
    middle = page(emulator, limit=3, after_id=ids[2])
    assert [m["id"] for m in middle["data"]] == ids[3:6]
    assert (middle["first_id"], middle["last_id"], middle["has_more"]) == (ids[3], ids[5], True)

    back = page(emulator, limit=2, before_id=ids[3])
    assert [m["id"] for m in back["data"]] == ids[1:3] and back["has_more"] is True
    assert [m["id"] for m in page(emulator, limit=5, before_id=ids[1])["data"]] == ids[:1]
    assert page(emulator, limit=5, before_id=ids[1])["has_more"] is False

    last = page(emulator, limit=1000, after_id=ids[-2])
    assert [m["id"] for m in last["data"]] == ids[-1:] and last["has_more"] is False


@pytest.mark.parametrize(
    ("query", "says"),
    [({"limit": "0"}, "limit"), ({"after_id": "claude-nope"}, "claude-nope"), ({"lifecycle": "gone"}, "lifecycle")],
)
def test_bad_list_queries_are_400_naming_the_field(emulator: EmulatorServer, query: dict[str, str], says: str) -> None:
    response = httpx2.get(emulator.base_url + "/v1/models", headers=LEGACY, params=query)

    assert response.status_code == 400 and says in response.json()["error"]["message"]
