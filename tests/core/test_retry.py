"""Retry backoff against the shared conformance cases."""

import json
from pathlib import Path

import pytest

import durable_nb as dn

# The project carries its own copy of the shared conformance cases, so a fresh clone runs
# them; SHARED is where the shared original lives when the repository sits beside it.
CASES = Path(__file__).resolve().parents[1] / "data" / "retry_delays.json"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "retry_delays.json"


def _cases():
    data = json.loads(CASES.read_text())
    return [pytest.param(c, id=f"case{i}") for i, c in enumerate(data["cases"])]


def test_conformance_file_is_present():
    assert CASES.exists(), f"conformance cases not found at {CASES}"
    assert len(json.loads(CASES.read_text())["cases"]) >= 5


def test_conformance_copy_equals_shared_cases():
    if not SHARED.exists():
        pytest.skip(f"no shared conformance cases at {SHARED} to compare the copy with")
    assert json.loads(CASES.read_text()) == json.loads(SHARED.read_text()), (
        f"{CASES} differs from {SHARED}: copy the shared file over it"
    )


@pytest.mark.parametrize("case", _cases())
def test_retry_delays_match_conformance(case):
    retry = dn.Retry(**case["options"])
    for attempt, expected in case["delays"].items():
        got = retry.delay(int(attempt), r=case["r"])
        assert got == expected, (case["options"], attempt, got, expected)


def test_randomized_delay_is_within_one_to_two_times():
    retry = dn.Retry(max_attempts=5, min_timeout=1, factor=2, max_timeout=100)
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0)):
        d = retry.delay(attempt)
        assert base <= d < 2 * base + 0.001


def test_retry_rejects_bad_options():
    with pytest.raises(ValueError, match="max_attempts"):
        dn.Retry(max_attempts=0)
