"""Chaos at CI size: hundreds of runs while workers and the engine are SIGKILLed.

One chaos run (module fixture) feeds one test per invariant, so a failure names the
invariant that broke, with the run, step or wait key and statuses at fault. The seed is
random unless ``DURABLE_NB_CHAOS_SEED`` is set; every failure message repeats it. The
size is ``DURABLE_NB_CHAOS_RUNS`` root runs (default 200). The long mode is
``python -m benchmarks.chaos``.
"""

from __future__ import annotations

import os
import random

import pytest
from chaos_checks import INVARIANTS, Report
from chaos_harness import Chaos, ChaosConfig

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.fixture(scope="module")
def chaos_report(tmp_path_factory) -> Report:
    seed = int(os.environ.get("DURABLE_NB_CHAOS_SEED") or random.randrange(1, 10**6))
    runs = int(os.environ.get("DURABLE_NB_CHAOS_RUNS") or 200)
    config = ChaosConfig(workdir=tmp_path_factory.mktemp("chaos"), seed=seed, runs=runs)
    report = Chaos(config).run()
    print(report.summary())
    return report


@pytest.mark.parametrize("invariant", list(INVARIANTS))
def test_invariant_holds(chaos_report: Report, invariant: str) -> None:
    assert not chaos_report.violations.get(invariant), chaos_report.failures(invariant)


def test_the_faults_really_happened(chaos_report: Report) -> None:
    """A chaos run whose killer barely struck proves nothing: require real faults."""
    f = chaos_report.figures
    runs = int(os.environ.get("DURABLE_NB_CHAOS_RUNS") or 200)
    worker_kills = sum(f.get("worker kills", {}).values())
    assert worker_kills >= runs // 8, f"only {worker_kills} worker kills: {f}"
    assert sum(f.get("engine kills", {}).values()) >= 2, f
    assert sum(f.get("engine starts", {}).values()) >= 3, f
    assert sum(f.get("kills while a wait was pending (store)", {}).values()) >= runs // 20, f
