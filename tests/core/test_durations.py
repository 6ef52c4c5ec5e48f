"""Human durations: text with units, plain seconds, and the bounds every delay must respect."""

import math

import pytest

from durable_nb.core.durations import MAX_DURATION, parse_duration


@pytest.mark.parametrize("text,seconds", [
    ("10m", 600), ("1d", 86400), ("1h30m", 5400), ("45", 45), (2.5, 2.5), ("250ms", 0.25),
    (None, None), ("1w", 604800), (" 1H 30M ", 5400), ("0", 0), (0, 0), ("1.5s", 1.5),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["ten minutes", "5 parsecs", "-3", "", "1m x", "m10", "1h-30m"])
def test_parse_duration_rejects_malformed(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [-1, math.inf, math.nan, MAX_DURATION + 1, "11000d", True])
def test_numbers_outside_the_accepted_range_are_refused(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_the_longest_duration_is_accepted_and_the_result_is_a_float():
    assert parse_duration(MAX_DURATION) == MAX_DURATION
    assert isinstance(parse_duration(3), float)
