"""Ages such as `7d` or `12h`, as a spec's `cache.max_age` and `cache clear --older-than` take them."""

from __future__ import annotations

import re
from datetime import timedelta

_AGE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """`90s`, `30m`, `12h`, `7d`, `2w`; raises ValueError with what to write instead."""
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an age: write a number and a unit, such as 7d, 12h, 30m, 90s or 2w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})
