"""Where a job's output may not go: into the state home.

The spec refuses an output that is its input or the spec itself (spec.py); only a command knows
the state home, whose ledger and run folders an output there would overwrite, or be deleted with.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchrunner.errors import Problem, SpecError
from batchrunner.spec import JobSpec, shown


def check_output_outside(spec: JobSpec, home: Path) -> None:
    """Refuse, on the spec's `output:` line, an output inside the state home (through links too)."""
    real_home = os.path.realpath(home)
    if os.path.commonpath([os.path.realpath(spec.output_path), real_home]) == real_home:
        raise SpecError([Problem(
            shown(spec.path),
            spec.key_line("output"),
            f"`output` {shown(spec.output_path)} is inside the state home {shown(Path(real_home))}, which holds "
            "the ledger and run folders: write the output somewhere else",
        )])
