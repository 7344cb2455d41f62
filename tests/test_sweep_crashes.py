"""CI slice of the crash sweep (benchmarks/sweep_crashes.py): SIGKILL at a few random instants, then recover.

The long sweep times a normal run of each scenario; to stay small, this slice times one normal
`submit` and uses it as the span for `retry` too (a retry of 3 rows takes about as long: the same
imports, creates, processing time and collect).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from helpers import benchmark

sweep = benchmark("sweep_crashes")

INSTANTS = 5
RNG_SEED = 7


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, float]]:
    span = sweep.normal_span("submit", tmp_path_factory.mktemp("normal"))
    return sweep.draw_instants(random.Random(RNG_SEED), INSTANTS, {scenario: span for scenario in sweep.SCENARIOS})


@pytest.mark.parametrize("number", range(INSTANTS))
def test_a_kill_at_a_random_instant_is_recovered_exactly_once(number: int, plan: list[tuple[str, float]], tmp_path: Path):
    scenario, delay = plan[number]

    instant = sweep.run_instant(number, scenario, delay, tmp_path)

    assert instant.problems == [], f"{sweep.describe(instant)}; its files are in {instant.folder}"
