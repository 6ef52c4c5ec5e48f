"""The engine's settings, defined once.

`SETTINGS` lists each setting with its type, default, help, size unit and environment
variable. From it come `EngineConfig` (what the engine reads), the options of
`durable-nb serve` (`add_serve_options` / `serve_values`) and the traits of the Jupyter
server extension's ``DurableApp`` (`jupyter_trait`). A value is taken from the command
line or the trait config first, then from ``DURABLE_NB_<NAME>``, then from the default.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .durations import parse_duration
from .errors import DurableError
from .paths import default_db_path, resolve_db
from .placement import EXECUTORS
from .serial import DEFAULT_MAX_PAYLOAD

MB = 1024 * 1024
ENV_PREFIX = "DURABLE_NB_"
KIND_NAMES = {int: "a whole number", float: "a number", str: "a text"}


class ConfigError(DurableError, ValueError):
    """A setting's value (from an option, a trait or the environment) is not valid."""


def _duration_or_off(text: Any) -> float | None:
    """Seconds of a duration setting such as ``30d``; None when empty or 0 (off)."""
    return parse_duration(str(text).strip() or None) or None


def _executor(text: Any) -> str:
    value = str(text).strip().lower() or "local"
    if value not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, not {text!r}")
    return value


def _host_port(text: Any) -> tuple[str, int]:
    """(host, port) of ``HOST``, ``HOST:PORT`` or ``[V6]:PORT`` (port 0: any free port)."""
    value = str(text).strip() or "127.0.0.1"
    host, port = value, "0"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":") or "0"
    elif value.count(":") == 1:
        host, port = value.split(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST or HOST:PORT, not {text!r}")
    return host, int(port)


def _otlp_url(text: Any) -> str:
    """An OTLP/HTTP endpoint: ``http(s)://HOST[:PORT][/PATH]`` (empty: no export)."""
    value = str(text).strip()
    if not value:
        return ""
    parsed = urllib.parse.urlparse(value)
    try:
        parsed.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:
        parsed = parsed._replace(netloc="")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"expected an http:// or https:// URL such as "
                         f"http://127.0.0.1:4318, not {text!r}")
    try:  # asked without importing it: only the engine that exports loads it
        importlib.metadata.version("opentelemetry-exporter-otlp-proto-http")
    except importlib.metadata.PackageNotFoundError:
        raise ValueError("exporting spans needs OpenTelemetry's SDK and OTLP exporter: "
                         "pip install 'durable_nb[otlp]'") from None
    return value


OTEL_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"  # OpenTelemetry's own variable


def _otel_endpoint() -> str:
    """The standard ``OTEL_EXPORTER_OTLP_ENDPOINT``, checked, when no setting names one."""
    text = os.environ.get(OTEL_ENDPOINT, "")
    try:
        return _otlp_url(text)
    except ValueError as exc:
        raise ConfigError(f"${OTEL_ENDPOINT}: {exc} (otlp_endpoint): correct it or unset "
                          "it") from None


@dataclass(frozen=True)
class Setting:
    """One setting, in the unit users write (MiB for sizes, seconds for times)."""

    name: str  # the DurableApp trait, and the environment variable's suffix
    kind: type  # int, float or str
    default: Any
    help: str
    flag: str | None = None  # the `durable-nb serve` option; None: not an option of serve
    field: str | None = None  # the EngineConfig field; None: not read by the engine
    scale: int = 1  # engine value = value * scale (MiB -> bytes)
    minimum: float | None = None
    maximum: float | None = None
    jupyter: bool = True  # a trait of DurableApp
    env_name: str | None = None  # when not DURABLE_NB_<NAME>
    fallback: Callable[[], Any] | None = None  # computes the default when it depends on more
    convert: Callable[[Any], Any] | None = None  # the engine's value of a text (a duration)

    @property
    def env(self) -> str:
        return self.env_name or ENV_PREFIX + self.name.upper()

    @property
    def dest(self) -> str:
        """The attribute argparse stores the option in."""
        return (self.flag or self.name).lstrip("-").replace("-", "_")

    def parse(self, text: str, source: str) -> Any:
        """``text`` as this setting's type, checked; ``source`` names where it came from
        (an option, or an environment variable)."""
        try:
            value = self.kind(text.strip()) if self.kind is not str else text
        except ValueError:
            raise ConfigError(f"{source} is {text!r}, not {KIND_NAMES[self.kind]}"
                              f"{self._hint(source)}") from None
        if self.convert is not None:
            try:
                self.convert(value)
            except ValueError as exc:
                raise ConfigError(f"{source}: {exc}{self._hint(source)}") from None
        return self.check(value, source)

    def check(self, value: Any, source: str) -> Any:
        """``value`` if it is within this setting's bounds, else a ConfigError."""
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{source} is {value!r}, below the minimum of {self.minimum}"
                              f"{self._hint(source)}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"{source} is {value!r}, above the maximum of {self.maximum}"
                              f"{self._hint(source)}")
        return value

    def _hint(self, source: str) -> str:
        fix = "correct it or unset it" if source.startswith("$") else "correct it"
        return f" ({self.name}, default {self.default_text()}): {fix}"

    def from_env(self, environ: Mapping[str, str] | None = None) -> Any:
        """The value of the environment variable if set (and not empty), else the default."""
        text = (os.environ if environ is None else environ).get(self.env, "")
        if text.strip():
            return self.parse(text, f"${self.env}")
        return self.fallback() if self.fallback else self.default

    def default_text(self) -> str:
        return repr(self.default) if self.kind is str else str(self.default)

    def to_engine(self, value: Any) -> Any:
        """``value`` in the engine's unit (bytes for sizes, a resolved Path for the db)."""
        if self.name == "db_path":
            return resolve_db(value or None)
        if self.convert is not None:
            return self.convert(value)
        return int(value * self.scale) if self.scale != 1 else value


SETTINGS: tuple[Setting, ...] = (
    Setting("db_path", str, "",
            "DuckDB file of the engine. Default: $DURABLE_NB_DB, else "
            "durable_nb/durable.duckdb in the Jupyter data directory. When another process "
            "owns the file, a Jupyter server forwards the durable API to it.",
            flag="--db", field="db_path", env_name="DURABLE_NB_DB",
            fallback=lambda: str(default_db_path())),
    Setting("port", int, 0, "Port on 127.0.0.1 of the engine's HTTP API (0: any free port).",
            flag="--port", minimum=0, maximum=65535, jupyter=False),
    Setting("max_workers", int, 8, "Maximum worker processes executing runs at once.",
            flag="--workers", field="max_workers", minimum=1, maximum=4096),
    Setting("min_idle_workers", int, 1,
            "Worker processes kept started and idle, so a run starts without delay.",
            flag="--min-idle-workers", field="min_idle_workers", minimum=0, maximum=4096),
    Setting("wait_grace", float, 1.0,
            "Seconds a run waiting on an approval, event or sleep keeps its worker before "
            "it is suspended and the worker freed.",
            flag="--wait-grace", field="wait_grace", minimum=0.0),
    Setting("max_payload_mb", float, DEFAULT_MAX_PAYLOAD / MB,
            "Largest payload, step result or return value of a run, in MiB; larger values "
            "are refused with an error that says so.",
            flag="--max-payload-mb", field="max_payload", scale=MB, minimum=0.001),
    Setting("max_checkpoint_mb", float, 0.0,
            "Largest checkpoint of one %%durable cell (all its variables), in MiB. 0 (the "
            "default): no fixed limit; what a checkpoint adds may take at most half of the "
            "free space on the database's disk, and one that would take more is refused "
            "with an error that says so, before the disk fills.",
            flag="--max-checkpoint-mb", field="max_checkpoint", scale=MB, minimum=0.0),
    Setting("prune_after", str, "",
            "Delete finished runs (with their steps, logs, checkpoints and the values only "
            "they refer to) once they finished this long ago, e.g. 30d or 12h: at start, "
            "then every hour. Empty or 0 (the default): never; `durable-nb prune` does it "
            "by hand.",
            flag="--prune-after", field="prune_after", convert=_duration_or_off),
    Setting("executor", str, "local",
            "Where attempts run: local (worker processes of the engine) or dask (tasks on a "
            "Dask cluster; see dask_scheduler). Tasks declared with executor=\"local\" and "
            "%%durable cells always run locally.",
            flag="--executor", field="executor", convert=_executor),
    Setting("dask_scheduler", str, "",
            "Address of the Dask scheduler (tcp://HOST:8786) when executor is dask. Empty: the "
            "engine starts a LocalCluster of worker processes on this machine.",
            flag="--dask-scheduler", field="dask_scheduler"),
    Setting("executor_bind", str, "127.0.0.1",
            "HOST or HOST:PORT where the engine listens for the attempts running on Dask to "
            "connect back. The default is loopback: give an address the Dask workers can reach "
            "when they run on other machines.",
            flag="--executor-bind", field="executor_bind", convert=_host_port),
    Setting("executor_cert", str, "",
            "PEM certificate (with its key in executor_key, or in the same file) for TLS on the "
            "attempts' channel; the attempts trust exactly this certificate. Empty: plain TCP, "
            "each attempt authenticated by its own token.",
            flag="--executor-cert", field="executor_cert"),
    Setting("executor_key", str, "",
            "PEM private key of executor_cert (empty: the key is in the certificate's file).",
            flag="--executor-key", field="executor_key"),
    Setting("otlp_endpoint", str, "",
            "OTLP/HTTP endpoint to export runs, attempts, steps and waits to as "
            "OpenTelemetry spans, e.g. http://127.0.0.1:4318 (traces go to /v1/traces "
            "below it). Empty (the default): $OTEL_EXPORTER_OTLP_ENDPOINT if set, else no "
            "export. Needs `pip install durable_nb[otlp]`.",
            flag="--otlp-endpoint", field="otlp_endpoint", fallback=_otel_endpoint,
            convert=_otlp_url),
    Setting("activity_interval", float, 5.0,
            "Seconds between checks for QUEUED or EXECUTING runs. While there are any, the "
            "Jupyter server reports activity, so idle culling does not stop it mid-run.",
            minimum=0.05),
)
BY_NAME = {s.name: s for s in SETTINGS}


def _engine_default(field: str) -> Any:
    (s,) = (s for s in SETTINGS if s.field == field)
    return s.to_engine(s.default)


@dataclass
class EngineConfig:
    """Settings of one engine, in the engine's units; build it with `engine_config`."""

    db_path: Path
    max_workers: int = _engine_default("max_workers")
    min_idle_workers: int = _engine_default("min_idle_workers")
    wait_grace: float = _engine_default("wait_grace")
    max_payload: int = _engine_default("max_payload")
    max_checkpoint: int = _engine_default("max_checkpoint")
    prune_after: float | None = _engine_default("prune_after")
    executor: str = _engine_default("executor")
    dask_scheduler: str = _engine_default("dask_scheduler")
    executor_bind: tuple[str, int] = _engine_default("executor_bind")
    executor_cert: str = _engine_default("executor_cert")
    executor_key: str = _engine_default("executor_key")
    otlp_endpoint: str = _engine_default("otlp_endpoint")


def engine_config(values: Mapping[str, Any]) -> EngineConfig:
    """The EngineConfig of ``values`` (setting name -> value in the users' unit)."""
    return EngineConfig(**{s.field: s.to_engine(values[s.name])
                           for s in SETTINGS if s.field})


# ------------------------------------------------------------------ `durable-nb serve`

def _cli_type(s: Setting) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return s.parse(text, s.flag or s.name)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = s.kind.__name__  # argparse names the type in its errors
    return convert


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """One option per setting of `durable-nb serve` (``--db`` is every command's)."""
    for s in SETTINGS:
        if s.flag is None or s.flag == "--db":
            continue
        metavar = {int: "N", float: "MB" if s.scale == MB else "S"}.get(s.kind, "VALUE")
        parser.add_argument(
            s.flag, dest=s.dest, type=_cli_type(s), default=None, metavar=metavar,
            help=f"{s.help} (default: {s.default_text()}; environment: "
                 f"{s.env})".replace("%", "%%"))


def serve_values(args: argparse.Namespace) -> dict[str, Any]:
    """Every setting of `durable-nb serve`: the option if given, else its environment
    variable, else the default (a ConfigError names a malformed variable)."""
    values = {}
    for s in SETTINGS:
        if s.flag is None:
            continue
        given = getattr(args, s.dest, None)
        values[s.name] = given if given is not None else s.from_env()
    return values


# ------------------------------------------------------------------ DurableApp traits

def jupyter_trait(name: str) -> Any:
    """The configurable trait of setting ``name`` for ``DurableApp``: its help and static
    default as `jupyter ... --help-all` shows them; when not configured, its value comes
    from the environment variable, else the default."""
    s = BY_NAME[name]
    bounds = {k: v for k, v in (("min", s.minimum), ("max", s.maximum)) if v is not None}
    help = f"{s.help} Environment variable: {s.env}."
    return _trait_class(s.kind)(s, s.default, help=help, **bounds).tag(config=True)


@cache
def _trait_class(kind: type) -> type:
    """A traitlets type (Integer, Float, Unicode) whose dynamic default reads the
    setting's environment variable (a configured value still takes precedence)."""
    import traitlets

    base = {int: traitlets.Integer, float: traitlets.Float, str: traitlets.Unicode}[kind]

    class FromEnv(base):  # type: ignore[valid-type, misc]
        def __init__(self, setting: Setting, *args: Any, **kwargs: Any):
            self.setting = setting
            super().__init__(*args, **kwargs)

        def default(self, obj: Any = None) -> Any:
            return self.setting.from_env()

    FromEnv.__name__ = base.__name__  # `--help-all` shows the type: --DurableApp.x=<Integer>
    return FromEnv
