"""The request key: what makes two requests the same request, for the answer cache (DESIGN §10).

A key is the sha256 of the request's canonical body: its `params` (model, system, messages,
every parameter) serialized by orjson with sorted keys, so neither the spec's key order nor
the custom_id changes it, and the `anthropic-version` it is sent under. Keys are kept per
backend scope (`local`, or the API's base URL), so a simulated answer never serves a real run
and one endpoint's answers never serve another.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

LOCAL_SCOPE = "local"


def backend_scope(backend: str, base_url: str | None, default_url: str) -> str:
    """The identity a cached answer is kept under: `local`, or the base URL a real run talks to."""
    if backend == LOCAL_SCOPE:
        return LOCAL_SCOPE
    return (base_url or default_url).rstrip("/")


def request_key(params: dict[str, Any], api_version: str) -> str:
    """The hex sha256 of the canonical request body and the API version it is sent under."""
    digest = hashlib.sha256(api_version.encode())
    digest.update(b"\n")
    digest.update(orjson.dumps(params, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def line_key(line: bytes, api_version: str) -> str:
    """The key of one compiled request line `{"custom_id":...,"params":{...}}`."""
    return request_key(orjson.loads(line)["params"], api_version)


_PARAMS_AT = len(b'{"custom_id":"') + len(b'","params":')


def compiled_key(line: bytes, custom_id: str, api_version: str) -> str:
    """The key of a line as compile writes it (requestfile.encode_line: params already canonical,
    then `}` and a newline), hashed from its bytes without parsing; equal to `line_key(line)`."""
    digest = hashlib.sha256(api_version.encode())
    digest.update(b"\n")
    digest.update(memoryview(line)[_PARAMS_AT + len(custom_id) : -2])
    return digest.hexdigest()
