"""The engine's settings, defined once in `durable_nb.core.config`: `durable-nb serve` options,
`DurableApp` traits, environment variables and `EngineConfig` agree, and bad values are
refused with an error that names where they came from."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _support import (
    Jupyter,
    free_port,
    http_call,
    jupyter_env,
    start_server,
    stop_process,
    wait_for,
)
from traitlets import TraitError

from durable_nb.core import config as _config
from durable_nb.core.config import MB, SETTINGS, ConfigError, EngineConfig
from durable_nb.core.paths import default_db_path

SHARED = [s for s in SETTINGS if s.flag and s.jupyter and s.name != "db_path"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_NB_")}
    return {**env, "COLUMNS": "1000", **extra}  # COLUMNS: one line per option in --help


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=60)


def serve_help() -> dict[str, tuple[str, str]]:
    """`durable-nb serve --help`: option -> (its line, the default it shows)."""
    out = _run("-m", "durable_nb", "serve", "--help", env=_env())
    assert out.returncode == 0, out.stderr
    blocks: dict[str, str] = {}
    option = None
    for line in out.stdout.split("options:", 1)[1].splitlines():
        m = re.match(r"\s+(?:-h, )?(--[\w-]+)(?: [A-Z]+)?(.*)$", line)
        if m:
            option = m[1]
            blocks[option] = m[2]
        elif option and line.strip():
            blocks[option] += " " + line
    options = {}
    for name, text in blocks.items():
        text = " ".join(text.split())
        d = re.search(r"\(default: ([^;)]+)", text)
        options[name] = (text, d[1] if d else "")
    return options


def jupyter_help(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """The Jupyter server extension's `--help-all`: trait -> (its help, its default).

    jupyter-server prints `jupyter server --help-all` before it loads extensions, so no
    extension's traits appear there; the extension launched as an application prints
    them with the same traitlets machinery, next to the ServerApp options."""
    code = "from durable_nb.jupyter.extension import DurableApp; DurableApp.launch_instance()"
    out = _run("-c", code, "--help-all", env=jupyter_env(tmp_path, COLUMNS="1000"))
    assert out.returncode == 0, out.stderr
    assert "--ServerApp.port=" in out.stdout
    traits = {}
    for m in re.finditer(r"^--DurableApp\.(\w+)=<\w+>\n((?:    .*\n?)*)", out.stdout, re.M):
        text = " ".join(m[2].split())
        d = re.search(r"Default: (.*)$", text)
        traits[m[1]] = (text, d[1] if d else "")
    return traits


@pytest.mark.slow
def test_serve_help_and_the_jupyter_help_list_the_same_settings(tmp_path):
    serve, jupyter = serve_help(), jupyter_help(tmp_path)
    for s in SETTINGS:
        if s.flag:
            assert s.flag in serve, f"durable-nb serve has no {s.flag}"
        if s.jupyter:
            assert s.name in jupyter, f"DurableApp has no trait {s.name}"
            assert f"Environment variable: {s.env}." in jupyter[s.name][0]
    for s in SHARED:
        line, default = serve[s.flag]
        assert f"environment: {s.env})" in line, line
        shown = [text.strip("'") if s.kind is str else text  # a text default is quoted
                 for text in (default, jupyter[s.name][1])]
        assert s.kind(shown[0]) == s.kind(shown[1]) == s.default, s.name
        assert s.help.split(".")[0] in line and s.help.split(".")[0] in jupyter[s.name][0]
    assert "$DURABLE_NB_DB" in serve["--db"][0] and "DURABLE_NB_DB" in jupyter["db_path"][0]
    # the options users already rely on keep their names; nothing else is served
    assert set(serve) == {"--help", "--db", "--port", "--workers", "--min-idle-workers",
                          "--wait-grace", "--max-payload-mb", "--max-checkpoint-mb",
                          "--prune-after", "--executor", "--dask-scheduler",
                          "--executor-bind", "--executor-cert", "--executor-key",
                          "--otlp-endpoint"}
    # serve-only: the port (Jupyter has its own); Jupyter-only: idle-culling checks
    assert [s.name for s in SETTINGS if not s.jupyter] == ["port"]
    assert [s.name for s in SETTINGS if not s.flag] == ["activity_interval"]


def test_engine_config_comes_from_the_settings():
    from durable_nb.core.serial import DEFAULT_MAX_PAYLOAD
    from durable_nb.engine.engine import EngineConfig as FromEngine

    assert FromEngine is EngineConfig
    fields = {f.name: f.default for f in dataclasses.fields(EngineConfig)}
    assert list(fields) == [s.field for s in SETTINGS if s.field]
    for s in SETTINGS:
        if s.field and s.field != "db_path":
            assert fields[s.field] == s.to_engine(s.default), s.name
    config = EngineConfig(db_path=Path("x.duckdb"))
    assert (config.max_workers, config.min_idle_workers, config.wait_grace) == (8, 1, 1.0)
    assert config.max_payload == DEFAULT_MAX_PAYLOAD and config.max_checkpoint == 0  # the disk decides


def test_trait_config_beats_the_environment_which_beats_the_default(monkeypatch, tmp_path):
    """The traits `DurableApp` is made of, on a plain Configurable (importing
    jupyter-server takes seconds; the hosted-engine test below runs DurableApp itself)."""
    from traitlets.config import Config, Configurable

    class App(Configurable):
        max_workers = _config.jupyter_trait("max_workers")
        wait_grace = _config.jupyter_trait("wait_grace")
        max_checkpoint_mb = _config.jupyter_trait("max_checkpoint_mb")
        db_path = _config.jupyter_trait("db_path")

    monkeypatch.setenv("DURABLE_NB_MAX_WORKERS", "3")
    monkeypatch.setenv("DURABLE_NB_MAX_CHECKPOINT_MB", "2.5")
    app = App(config=Config({"App": {"max_workers": 5}}))
    assert app.max_workers == 5 and app.max_checkpoint_mb == 2.5 and app.wait_grace == 1.0
    assert app.db_path == str(default_db_path())
    monkeypatch.setenv("DURABLE_NB_DB", str(tmp_path / "elsewhere.duckdb"))
    assert App().db_path == str(tmp_path / "elsewhere.duckdb")
    monkeypatch.setenv("DURABLE_NB_WAIT_GRACE", "soon")
    with pytest.raises(ConfigError, match=r"\$DURABLE_NB_WAIT_GRACE is 'soon', not a number"):
        App().wait_grace  # noqa: B018
    with pytest.raises(TraitError):  # a configured value is checked like the variable
        App(config=Config({"App": {"max_workers": 0}})).max_workers  # noqa: B018


@pytest.mark.parametrize(("name", "text", "error"), [
    ("max_workers", "lots", "$DURABLE_NB_MAX_WORKERS is 'lots', not a whole number "
                            "(max_workers, default 8): correct it or unset it"),
    ("max_workers", "0", "$DURABLE_NB_MAX_WORKERS is 0, below the minimum of 1"),
    ("min_idle_workers", "1.5", "$DURABLE_NB_MIN_IDLE_WORKERS is '1.5', not a whole number"),
    ("wait_grace", "-1", "$DURABLE_NB_WAIT_GRACE is -1.0, below the minimum of 0.0"),
    ("port", "70000", "$DURABLE_NB_PORT is 70000, above the maximum of 65535"),
])
def test_a_malformed_variable_names_itself(name, text, error):
    setting = _config.BY_NAME[name]
    with pytest.raises(ConfigError) as exc:
        setting.from_env({setting.env: text})
    assert error in str(exc.value)


def test_an_empty_variable_counts_as_unset():
    s = _config.BY_NAME["max_workers"]
    assert s.from_env({s.env: ""}) == s.from_env({}) == 8


def test_serve_refuses_bad_values_before_starting(tmp_path):
    db = str(tmp_path / "bad.duckdb")
    out = _run("-m", "durable_nb", "serve", "--db", db,
               env=_env(DURABLE_NB_MAX_PAYLOAD_MB="64MB"))
    assert out.returncode == 1
    assert out.stderr.strip() == ("error: $DURABLE_NB_MAX_PAYLOAD_MB is '64MB', not a number "
                                  "(max_payload_mb, default 64.0): correct it or unset it")
    out = _run("-m", "durable_nb", "serve", "--db", db, "--min-idle-workers", "-1", env=_env())
    assert out.returncode == 2
    assert ("argument --min-idle-workers: --min-idle-workers is -1, below the minimum of 0"
            in out.stderr)
    out = _run("-m", "durable_nb", "serve", "--db", db, "--workers", "four", env=_env())
    assert out.returncode == 2 and "--workers is 'four', not a whole number" in out.stderr
    assert not Path(db).exists(), "nothing is created for a refused configuration"


def test_an_environment_variable_configures_a_real_engine(make_engine, monkeypatch):
    monkeypatch.setenv("DURABLE_NB_MAX_PAYLOAD_MB", "1")
    monkeypatch.setenv("DURABLE_NB_MIN_IDLE_WORKERS", "2")
    engine = make_engine()
    assert engine.client.request("GET", "/health")["max_payload"] == MB
    wait_for(lambda: len(engine.client.request("GET", "/workers")["workers"]) == 2,
             what="two idle workers ($DURABLE_NB_MIN_IDLE_WORKERS=2)")
    # the command line wins over the environment
    flagged = make_engine("--max-payload-mb", "2", name="flagged")
    assert flagged.client.request("GET", "/health")["max_payload"] == 2 * MB


@pytest.mark.slow
def test_an_environment_variable_configures_the_jupyter_hosted_engine(tmp_path):
    server = Jupyter(tmp_path, tmp_path / "j.duckdb", "--DurableApp.max_payload_mb=3",
                     env={"DURABLE_NB_MAX_PAYLOAD_MB": "2", "DURABLE_NB_MIN_IDLE_WORKERS": "2"})
    server.start()
    try:
        api, token = server.api, server.token
        status, health = http_call("GET", api + "/health", token)
        assert status == 200 and health["max_payload"] == 3 * MB  # the trait config wins
        wait_for(lambda: len(http_call("GET", api + "/workers", token)[1]["workers"]) == 2,
                 what="two idle workers ($DURABLE_NB_MIN_IDLE_WORKERS=2)")
    finally:
        server.stop()


@pytest.mark.slow
def test_a_malformed_variable_is_named_in_the_jupyter_server_log(tmp_path):
    """jupyter-server keeps running without an extension that fails to load, and logs why."""
    (tmp_path / "cfg").mkdir()
    log = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={free_port()}",
           f"--ServerApp.root_dir={tmp_path}", f"--DurableApp.db_path={tmp_path / 'j.duckdb'}"]
    env = jupyter_env(tmp_path / "cfg", DURABLE_NB_MIN_IDLE_WORKERS="many")
    message = "$DURABLE_NB_MIN_IDLE_WORKERS is 'many', not a whole number"
    proc = start_server(cmd, env, log, ready=lambda: message in log.read_text(), timeout=60,
                        what="jupyter server")
    stop_process(proc, 30)
    assert not (tmp_path / "j.duckdb").exists(), "no engine starts with a malformed setting"


def test_the_readme_lists_every_setting():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| ")]
    for s in SETTINGS:
        (row,) = [r for r in rows if f"`{s.env}`" in r]
        assert (f"`{s.flag}`" in row) == bool(s.flag) and (f"`{s.name}`" in row) == s.jupyter
