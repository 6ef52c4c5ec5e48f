"""`durable-nb demo`: an engine starts, the example meets a retry, a killed worker and an
approval, and the commands a user tries next show the run it left."""

import getpass

import pytest
from _support import run_cli


@pytest.mark.slow
def test_demo_starts_an_engine_and_tells_the_story(fresh_db, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = run_cli("demo", env={**fresh_db, "TMPDIR": str(scratch)})
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "CRASHED" in text and "WorkerCrashed" in text
    assert "retry delay" in text and "ConnectionError" in text
    assert f"approval publish  approved by {getpass.getuser()}" in text
    assert "the waiting run holds 0 worker processes" in text
    assert "'fetch': 1" in text
    assert "demo-process-document  COMPLETED" in text
    run_id = text.split("Try: durable-nb show ")[1].split()[0]
    assert "keeps running in the background" in text and "durable-nb stop" in text
    assert list(scratch.iterdir()) == [], "the demo's scratch folder is removed"

    runs = run_cli("runs", env=fresh_db)
    assert runs.returncode == 0 and run_id in runs.stdout and "COMPLETED" in runs.stdout
    show = run_cli("show", run_id, env=fresh_db)
    assert show.returncode == 0
    assert show.stdout.splitlines()[0].startswith(f"{run_id}  demo-process-document  COMPLETED")
    assert "├─ attempt 1  CRASHED" in show.stdout
    sql = run_cli("sql", "select count(*) as n from runs", env=fresh_db)
    assert sql.stdout.split() == ["n", "1"]
    replay = run_cli("replay", run_id, env=fresh_db)
    assert replay.returncode == 0 and "replayed run" in replay.stdout
