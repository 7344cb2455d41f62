"""The backend's Models API: the live check before anything is created, and `batchrunner models`.

The catalog (catalog.py) is what batchrunner knew when it was released; the Models API is what
the backend offers today. Before `submit`, `retry` or `resume` create a batch they ask it about
the run's model (GET /v1/models/{id}, once, through the run's rate limiter) and judge the run's
request with `rules.check_request` against the live limits and capabilities, so what the API
would refuse a day later is refused now, with exit 2: `submit` compiles the spec against a
catalog of that one live model (so each problem names its spec line, as `validate` does);
`retry` and `resume` judge the run's compiled request. A model the backend does not know is
refused naming the closest ids it does know. A backend whose Models API cannot be reached at all
(connection refused, 5xx after the SDK's retries) is checked against the catalog, with a notice.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from batchrunner.catalog import BATCH_DISCOUNT, Catalog, ModelEntry, Prices
from batchrunner.client import Api, AsyncApi
from batchrunner.errors import ApiError, InputError, NotFound, Problem
from batchrunner.rules import check_request

THINKING_TYPES = ("adaptive", "between_tools", "disabled", "enabled")

Notify = Callable[[str], None]


def _unreachable(error: ApiError) -> bool:
    """No answer at all, or a server error the SDK's retries could not get past."""
    return not isinstance(error, NotFound) and (error.status is None or error.status >= 500)


async def _closest(api: AsyncApi, model_id: str, catalog: Catalog) -> list[str]:
    """The ids the backend lists (and the catalog's aliases of them) that look most like `model_id`;
    the catalog's own closest if the backend cannot list."""
    try:
        offered = [info["id"] for info in await api.list_models()]
    except ApiError:
        return catalog.closest(model_id)
    names = [name for model in offered for name in (model, *_aliases(catalog, model))]
    return difflib.get_close_matches(model_id, names, n=3, cutoff=0.6)


def _aliases(catalog: Catalog, model_id: str) -> tuple[str, ...]:
    entry = catalog.resolve(model_id)
    return entry.aliases if entry is not None else ()


async def live_model(
    api: AsyncApi, model_id: str, spec_path: Path, notice: Notify, *, line: int | None = None
) -> ModelEntry | None:
    """The model as the backend describes it now, with the catalog's prices and extras.

    Unknown to the backend: InputError naming the closest ids. Backend unreachable: the catalog's
    entry (None if the catalog does not know it either), after a notice.
    """
    catalog = Catalog.default()
    known = catalog.resolve(model_id)
    try:
        info = await api.retrieve_model(model_id)
    except NotFound:
        closest = await _closest(api, model_id, catalog)
        hint = f"the closest it offers: {', '.join(closest)}" if closest else "see `batchrunner models` for what it offers"
        raise InputError([Problem(spec_path, line, (
            f"`model: {model_id}`: the backend's Models API does not know this model (404); {hint}. "
            "Nothing was created"
        ))]) from None
    except ApiError as exc:
        if not _unreachable(exc):
            raise
        source = f"the built-in catalog (as of {catalog.as_of})"
        what = "checking against it instead" if known is not None else "it does not know the model either; not checked"
        notice(f"the Models API could not be reached ({exc.message}); {model_id}: {source}: {what}")
        return known
    try:
        return ModelEntry.from_live(info, known)
    except (KeyError, TypeError, ValueError) as exc:  # e.g. a gateway that leaves out `capabilities`
        notice(f"the Models API's description of {model_id} is incomplete ({exc}); checking against the built-in catalog")
        return known


async def live_catalog(
    api: AsyncApi, model_id: str, spec_path: Path, notice: Notify, *, line: int | None = None
) -> Catalog:
    """A catalog of the one model as the backend describes it now, found by the name the spec uses
    (at `line` of the spec); the packaged catalog if the backend cannot be reached."""
    catalog = Catalog.default()
    model = await live_model(api, model_id, spec_path, notice, line=line)
    if model is None or model is catalog.resolve(model_id):
        return catalog
    if model_id != model.id and model_id not in model.aliases:
        model = replace(model, aliases=(*model.aliases, model_id))
    return Catalog(as_of=f"live from the backend, {catalog.as_of} for prices", sources=catalog.sources, models=(model,))


async def check_live(
    api: AsyncApi, params: dict[str, Any], *, api_version: str, spec_path: Path, notice: Notify
) -> None:
    """Refuse (InputError, exit 2) a request the live model or the API version would refuse."""
    model_id = str(params["model"])
    model = await live_model(api, model_id, spec_path, notice)
    violations = check_request(params, api_version=api_version, model=model)
    if violations:
        raise InputError([
            Problem(spec_path, None, f"{violation.message} (live check of {model_id}, anthropic-version {api_version})")
            for violation in violations
        ])


# `batchrunner models`


def _batch_prices(prices: Prices | None) -> dict[str, float] | None:
    if prices is None:
        return None
    return {"input": prices.input * BATCH_DISCOUNT, "output": prices.output * BATCH_DISCOUNT}


def describe(entry: ModelEntry) -> dict[str, Any]:
    """One model as `batchrunner models` shows it: limits, thinking types, batch prices per MTok."""
    return {
        "id": entry.id,
        "display_name": entry.info.get("display_name"),
        "lifecycle": entry.lifecycle,
        "max_input_tokens": entry.max_input_tokens,
        "max_tokens": entry.max_tokens,
        "batch_max_tokens": entry.batch_max_tokens,
        "thinking": [kind for kind in THINKING_TYPES if entry.supports("thinking", "types", kind)],
        "batch_price_per_mtok": _batch_prices(entry.prices),
        "batch_price_tiers": [
            {"above_prompt_tokens": above, **(_batch_prices(prices) or {})} for above, prices in entry.tiers
        ],
    }


def offered_models(api: Api | None) -> dict[str, Any]:
    """What the backend's Models API lists (every page), priced from the catalog by exact id;
    with no `api`, the catalog's models that the API would list (retired ones are not)."""
    catalog = Catalog.default()
    if api is None:
        entries = [entry for entry in catalog.entries() if entry.lifecycle != "retired"]
        source = f"the built-in catalog (as of {catalog.as_of})"
    else:
        entries = [ModelEntry.from_live(info, catalog.resolve(info["id"])) for info in api.list_models()]
        source = f"the Models API of {api.backend.label}"
    return {"source": source, "catalog_as_of": catalog.as_of, "models": [describe(entry) for entry in entries]}
