"""Where a job's output may go: a writable file that is not in the state home.

The spec itself refuses an output that is its input or the spec (spec.py); this adds what only
a command knows, the state home, whose ledger and run folders an output there would overwrite,
or be deleted with.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchrunner.errors import Problem, SpecError
from batchrunner.spec import JobSpec, shown


def check_output(spec: JobSpec, home: Path) -> None:
    """Refuse, on the spec's `output:` line, an output that could never be written or would harm the state home."""
    out = spec.output_path
    where = (shown(spec.path), spec.key_line("output"))
    if out.is_dir():
        example = shown(out / f"{spec.name}.jsonl")
        raise SpecError([Problem(*where, f"`output` {shown(out)} is a folder: name a file such as {example}")])
    real_home = os.path.realpath(home)
    if os.path.commonpath([os.path.realpath(out), real_home]) == real_home:
        raise SpecError([Problem(
            *where,
            f"`output` {shown(out)} is inside the state home {shown(Path(real_home))}, which holds the ledger and run "
            "folders: write the output somewhere else",
        )])
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise SpecError([Problem(*where, f"cannot write the output {shown(out)}: {shown(parent)} is not a writable folder")])
