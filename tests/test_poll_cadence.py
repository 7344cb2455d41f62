"""How often a batch is polled: not before it is `initial_interval` old, then a tenth of its age
between the spec's two intervals, so the end of a batch is noticed within about 10 % of its
duration and the README's poll counts hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchrunner.poll import first_wait, next_interval
from batchrunner.spec import PollSettings

README = Path(__file__).resolve().parent.parent / "README.md"


def polls_until_noticed(duration: float, settings: PollSettings) -> tuple[int, float]:
    """Wait for the first poll from age 0, then after each computed wait, until a poll sees the batch ended."""
    age, polls = first_wait(0.0, settings), 1
    while age < duration:
        age += next_interval(age, settings)
        polls += 1
    return polls, age - duration


def test_the_wait_is_a_tenth_of_the_age_between_the_two_intervals() -> None:
    settings = PollSettings(initial_interval=1.0, max_interval=60.0)
    assert [next_interval(age, settings) for age in (0.0, 5.0, 10.0, 50.0, 600.0, 7200.0)] == [1.0, 1.0, 1.0, 5.0, 60.0, 60.0]


def test_a_batch_is_first_polled_once_it_is_initial_interval_old() -> None:
    settings = PollSettings(initial_interval=2.0)
    assert [first_wait(age, settings) for age in (0.0, 1.5, 2.0, 300.0, -5.0)] == [2.0, 0.5, 0.0, 0.0, 2.0]


@pytest.mark.parametrize(("duration", "polls"), [(20.0, 10), (3600.0, 96), (86_400.0, 1476)])
def test_the_readme_poll_counts(duration: float, polls: int) -> None:
    assert polls_until_noticed(duration, PollSettings())[0] == polls
    polling = re.search(r"^- \*\*Polling\*\*.*?(?=^\S|^- )", README.read_text(), re.MULTILINE | re.DOTALL)
    assert polling is not None and f"{polls:,}" in polling.group(0)


@pytest.mark.parametrize("duration", [12.0, 20.0, 30.0, 95.0, 420.0, 3000.0])
def test_the_end_is_noticed_within_a_tenth_of_the_duration(duration: float) -> None:
    assert polls_until_noticed(duration, PollSettings())[1] <= 0.1 * duration
