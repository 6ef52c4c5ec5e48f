"""`durable-nb prune`, as a user runs it against a real engine."""

from _support import run_cli

import durable_nb as dn


@dn.task(id="cli-prune")
def _quick(i: int) -> int:
    return i


def test_prune_deletes_finished_runs_through_the_engine(engine):
    env = {"DURABLE_NB_URL": engine.client.url, "DURABLE_NB_TOKEN": engine.client.token}
    done = [_quick.trigger(i) for i in range(3)]
    assert [r.result(timeout=60) for r in done] == [0, 1, 2]
    out = run_cli("prune", "--older-than", "1d", env=env)
    assert out.returncode == 0, out.stderr
    assert "pruned 0 runs" in out.stdout
    dry = run_cli("prune", "--older-than", "0s", "--status", "COMPLETED", "--dry-run", env=env)
    assert dry.returncode == 0 and "would prune 3 runs (COMPLETED)" in dry.stdout
    assert len(dn.runs()) == 3
    out = run_cli("prune", "--older-than", "0s", env=env)
    assert out.returncode == 0 and "pruned 3 runs" in out.stdout, out.stderr
    assert dn.runs() == [] and dn.sql("SELECT count(*) FROM steps").rows[0][0] == 0


def test_prune_refuses_bad_input_with_a_clear_error(engine):
    env = {"DURABLE_NB_URL": engine.client.url, "DURABLE_NB_TOKEN": engine.client.token}
    for args, says in ((("--older-than", "soon"), "not a duration"),
                       (("--older-than", "1d", "--status", "QUEUED"), "never pruned"),
                       (("--older-than", "1d", "--status", "DONE"), "unknown status")):
        out = run_cli("prune", *args, env=env)
        assert out.returncode == 1 and says in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    missing = run_cli("prune", env=env)
    assert missing.returncode == 2 and "--older-than" in missing.stderr


def test_serve_prune_after_prunes_at_start(make_engine):
    import time

    from _support import wait_for

    eng = make_engine("--prune-after", "1s")
    run = _quick.trigger(7)
    assert run.result(timeout=60) == 7
    finished = run.info()["finished_at"]
    wait_for(lambda: time.time() > finished + 1.5, 10, "the run to be over a second old")
    eng.restart()  # the engine prunes at start, then every hour
    wait_for(lambda: dn.runs() == [], 30, "the automatic prune")
    assert dn.sql("SELECT count(*) FROM transitions").rows[0][0] == 0
