"""The architecture, held: each module imports only what its stage may (DESIGN §1), read with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "batchrunner"

# Ours each module may import. Data flows spec → compile → submit → poll → collect; only
# pipeline knows the order, and only cli sits on top.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "states": {"errors"},
    "settings": {"errors"},
    "atomic": {"crashpoints", "store"},  # store: an output at an object store URL is uploaded whole
    "crashpoints": {"settings"},
    "template": set(),
    "paths": set(),
    "run_settings": set(),
    "request_shape": set(),
    "catalog": {"errors"},
    "rules": {"catalog"},
    "pricing": {"catalog"},
    "extras": {"paths"},
    "durations": set(),
    "request_key": set(),
    "spec": {"durations", "errors", "extras", "output", "paths", "request_shape", "rules", "run_settings", "template"},  # output: its suffixes
    "inputs": {"errors"},
    "output": {"atomic", "extras", "paths", "requestfile"},
    "attachments": {"inputs", "spec", "template"},
    "compile": {
        "atomic", "attachments", "catalog", "crashpoints", "errors", "inputs", "pricing", "requestfile", "rules", "spec",
        "template",
    },
    "requestfile": {"atomic", "crashpoints"},
    "store": {"atomic", "crashpoints", "errors", "extras", "paths"},  # extras: the URL rules spec.py holds `output:` to
    "ledger": {"atomic", "crashpoints", "errors", "paths", "run_settings", "settings", "states"},  # the run's frozen RunSettings; BATCHRUNNER_LEDGER
    "client": {"atomic", "errors", "settings", "emulator"},  # atomic: the state home, made private
    "session": {"client", "errors", "ledger", "settings", "states"},
    "files": {"atomic", "client", "errors", "ledger"},
    "uploads": {"attachments", "client", "crashpoints", "errors", "files", "ledger"},
    "submit": {"client", "crashpoints", "errors", "ledger", "requestfile", "states", "store"},
    "poll": {"client", "crashpoints", "errors", "ledger", "run_settings", "states"},
    "collect": {
        "atomic", "client", "crashpoints", "errors", "files", "ledger", "output", "request_key", "requestfile", "states",
        "store",
    },  # files: stream_to_file
    "answer_cache": {"client", "crashpoints", "errors", "ledger", "request_key", "spec"},
    "retry": {"atomic", "errors", "ledger", "requestfile", "store"},
    "models": {"catalog", "client", "errors", "rules"},
}
STAGES_AND_BELOW = set(ALLOWED) - {"emulator"}
ALLOWED["pipeline"] = STAGES_AND_BELOW
ALLOWED["cli"] = STAGES_AND_BELOW | {"pipeline", "emulator"}
ALLOWED["library"] = STAGES_AND_BELOW | {"pipeline"}
ALLOWED["__init__"] = STAGES_AND_BELOW | {"pipeline"}
ALLOWED["__main__"] = {"cli"}

THIRD_PARTY_OWNERS = {"click": {"cli"}, "anthropic": {"client"}, "httpx2": {"client"}, "sqlite3": {"ledger"}, "psycopg": {"ledger"}, "fsspec": {"store"}}  # (the emulator has its own)


def imports(path: Path) -> set[str]:
    """Top-level names of everything a file imports, at any depth (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "batchrunner":
                found.update(f"batchrunner.{alias.name}" for alias in node.names)
    return found


def ours(names: set[str]) -> set[str]:
    return {name.split(".")[1] for name in names if name.startswith("batchrunner.")}


def layer(path: Path) -> str:
    """A module's row in ALLOWED: its own name, or its package's (every file of ledger/ is `ledger`)."""
    return path.stem if path.parent == PACKAGE else path.parent.name


@pytest.mark.parametrize(
    "path",
    sorted([
        *PACKAGE.glob("*.py"), *(PACKAGE / "ledger").glob("*.py"), *(PACKAGE / "store").glob("*.py"),
        *(PACKAGE / "inputs").glob("*.py"), *(PACKAGE / "output").glob("*.py"),
    ]),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_each_module_imports_only_what_its_stage_may(path: Path):
    assert layer(path) in ALLOWED, f"{path.name} is new: give it a row in ALLOWED"
    names = imports(path)
    assert ours(names) - {layer(path)} <= ALLOWED[layer(path)]
    for package, owners in THIRD_PARTY_OWNERS.items():
        if any(name == package or name.startswith(package + ".") for name in names):
            assert layer(path) in owners, f"only {owners} may import {package}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "emulator").glob("*.py")), ids=lambda p: p.stem)
def test_the_emulator_imports_nothing_of_the_pipeline(path: Path):
    assert ours(imports(path)) <= {"emulator", "catalog", "rules"}  # it judges requests as validate does
    assert not {"click", "anthropic", "httpx2"} & {name.split(".")[0] for name in imports(path)}
