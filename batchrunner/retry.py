"""Retry: a new attempt made of exactly the selected requests, copied from the original lines.

Selection is by latest status, error type or custom_id. The new attempt's request files are
byte-for-byte the validated lines of the first attempt (nothing is re-rendered, so a spec
edited since cannot change what is retried), sharded as the originals were, so every shard
stays under the limits its original met.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchrunner.atomic import private_folder
from batchrunner.errors import InputError, Problem
from batchrunner.ledger import Ledger, Run
from batchrunner.requestfile import attempt_name, copy_lines, copy_lines_with_ids, request_ids
from batchrunner.store import run_data

NEVER_RETRIED_BY_DEFAULT = ("invalid_request_error",)
DEFAULT_STATUSES = ("errored", "expired")
RETRYABLE_STATUSES = ("errored", "expired", "canceled", "pending")


@dataclass(frozen=True)
class Selection:
    """Which requests to send again. Named custom_ids win over status and error type.

    No statuses means the default (errored and expired), or with error types only the
    requests that failed with those types.
    """

    statuses: tuple[str, ...] | None = None
    error_types: tuple[str, ...] | None = None
    custom_ids: tuple[str, ...] = ()
    ids_file: Path | None = None  # the --ids-file the ids in `ids_file_lines` were read from
    ids_file_lines: Mapping[str, int] = field(default_factory=dict)  # custom_id -> its line there

    def named_at(self, custom_id: str) -> tuple[Path | str, int | None]:
        """Where the user named this id, for an error: its --ids-file line, or --custom-id."""
        line = self.ids_file_lines.get(custom_id)
        return ("--custom-id", None) if self.ids_file is None or line is None else (self.ids_file, line)


def read_ids_file(path: Path) -> dict[str, int]:
    """One custom_id per line, in order, each with the line it is first on; blank lines, `#`
    comment lines and trailing `# comments` are skipped."""
    ids: dict[str, int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").partition("#")[0].strip()
            except UnicodeDecodeError:
                raise InputError([Problem(path, number, "is not UTF-8 text; write one custom_id per line")]) from None
            if line:
                ids.setdefault(line, number)
    return ids


def select(ledger: Ledger, run: Run, selection: Selection) -> list[int]:
    """The seqs to retry, in input order; an unknown or already-succeeded custom_id is an error."""
    if selection.custom_ids:
        found = {custom_id: (seq, status) for seq, custom_id, status in ledger.requests_by_custom_id(run, selection.custom_ids)}
        problems = []
        for custom_id in selection.custom_ids:
            if custom_id not in found:
                problems.append(Problem(*selection.named_at(custom_id), f"{custom_id!r} is not a request of run {run.id}"))
            elif found[custom_id][1] == "succeeded":
                problems.append(
                    Problem(*selection.named_at(custom_id), f"{custom_id!r} already succeeded; a retry never replaces a success")
                )
        if problems:
            raise InputError(problems[:20], more=max(0, len(problems) - 20))
        return sorted(seq for seq, _ in found.values())
    statuses = selection.statuses
    if statuses is None:
        statuses = ("errored",) if selection.error_types else DEFAULT_STATUSES
    unknown = set(statuses) - set(RETRYABLE_STATUSES)
    if unknown:
        raise InputError(f"--status {','.join(sorted(unknown))}: choose from {', '.join(RETRYABLE_STATUSES)}")
    return [
        seq
        for seq, _ in ledger.select_requests(
            run,
            statuses=statuses,
            error_types=selection.error_types,
            exclude_error_types=NEVER_RETRIED_BY_DEFAULT,
        )
    ]


def prepare_attempt(ledger: Ledger, run: Run, seqs: list[int]) -> int:
    """Write the new attempt's request files and register its batches; returns the attempt number.

    A row that shared another row's request is retried by sending that request (once). A run
    whose cached or shared rows were not sent has request files that are not stretches of the
    input (no first_seq): their lines are picked by custom_id.
    """
    attempt = ledger.next_attempt(run)
    seqs = ledger.primary_seqs(run, seqs)
    originals = [batch for batch in ledger.batches(run) if batch.attempt == 1]
    if any(batch.first_seq is None for batch in originals):
        wanted = ledger.custom_ids_at(run, seqs)
        picked = []
        data = run_data(run)  # on another host than the submit's: fetched to its spool
        for original in originals:
            source = data.fetch(original.request_file)
            count = sum(1 for custom_id in request_ids(source) if custom_id in wanted)
            if count:
                name = attempt_name(attempt, original.shard)
                dest = run.run_dir / name
                private_folder(dest.parent)
                size = copy_lines_with_ids(source, wanted, dest)
                data.publish(name, dest)
                picked.append((original.shard, name, count, size))
        ledger.add_attempt(run, attempt, picked)
        return attempt
    shards = []
    first_seq = 0
    position = 0
    for original in ledger.batches(run):
        if original.attempt != 1:
            continue
        end = first_seq + original.requests
        chosen = []
        while position < len(seqs) and seqs[position] < end:
            chosen.append(seqs[position])
            position += 1
        if chosen:
            name = attempt_name(attempt, original.shard)
            dest = run.run_dir / name
            private_folder(dest.parent)
            data = run_data(run)
            size = copy_lines(data.fetch(original.request_file), first_seq, chosen, dest)
            data.publish(name, dest)
            shards.append((original.shard, name, len(chosen), size))
        first_seq = end
    ledger.add_attempt(run, attempt, shards)
    return attempt
