"""Test durable_nb code in-process, with time under the test's control.

- ``TestEnvironment``: the whole system in the test's process (an engine on a temporary
  database, its API on loopback as the default client, workers in threads) on a manual
  clock. Time skips by itself while a test waits on a run's result and nothing else can
  happen, and ``env.skip("1h")`` moves it by hand: a task that sleeps a day, retries with
  minutes of back-off or waits for an approval with a timeout finishes in milliseconds.
- ``EngineHarness``: the engine alone with scripted workers (``FakePool``), driven
  message by message and timer by timer, for deterministic tests of scheduling, queue
  limits, retries, waits, timeouts and recovery.
- ``ManualClock``, ``FakePool``/``FakeWorker`` and ``ThreadPool``: the parts, injected
  into ``engine.Engine(config, clock=..., pool=...)``.
"""

from .clock import ManualClock, ManualTimer
from .environment import TestEnvironment
from .harness import EngineHarness
from .pools import FakePool, FakeWorker, ThreadPool, ThreadWorker

__all__ = ["EngineHarness", "FakePool", "FakeWorker", "ManualClock", "ManualTimer",
           "TestEnvironment", "ThreadPool", "ThreadWorker"]
