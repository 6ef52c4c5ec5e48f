"""What is measured, on which systems, with which settings.

Kept as plain data so the table, the footnotes and the README say the same
thing as the code that runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SYSTEMS_DIR = "systems"


@dataclass(frozen=True)
class Workload:
    """One benchmark workload; ``n`` is (full, quick)."""

    key: str
    title: str
    n: tuple[int, int]
    better: str  # "lower" or "higher", for the reader
    params: dict[str, tuple[int, int]] = field(default_factory=dict)


WORKLOADS: tuple[Workload, ...] = (
    Workload("step", "1. step overhead: one run of n no-op steps", (2000, 300), "lower"),
    Workload("run", "2. run overhead: n sequential one-step runs", (500, 100), "lower"),
    Workload("latency", "3. trigger->start latency on an idle queue", (200, 50), "lower"),
    Workload("throughput", "4. throughput, one-step runs, queue concurrency 2", (2000, 300), "higher"),
    Workload("recovery", "5. recovery after SIGKILL of the engine (process)", (1000, 200), "lower"),
    Workload("checkpoint", "6. checkpoint growth, 50 MB array + counter", (100, 20), "lower"),
    Workload("notebook", "7. notebook round trip, %%durable --wait", (50, 10), "lower"),
    Workload("memory", "8. resident set after n finished one-step runs", (10000, 1000), "lower"),
    Workload("namespace", "9. 1 GB DataFrame in a namespace, n trivial statements: s each",
             (10, 3), "lower"),
    Workload("column", "10. the same, one column changed per statement: s each", (10, 3), "lower"),
    Workload("concurrency", "11. 8 concurrent runs of n steps: aggregate steps/s", (1000, 200),
             "higher"),
    Workload("million", "12. n finished runs: filtered, paginated runs() in ms", (1_000_000, 100_000),
             "lower"),
    Workload("bigrun", "13. a run of n steps: widget first render in ms (Chromium)", (10_000, 2_000),
             "lower"),
    Workload("dask", "14. Dask executor, 4 Dask workers: one-step runs/s (rows: local, 1, 2, 4)",
             (1000, 200), "higher"),
)

FLOORS: tuple[Workload, ...] = (
    Workload("floor_call", "plain Python function call", (1, 1), "lower"),
    Workload("floor_fdatasync", "os.write + os.fdatasync, 200 B", (500, 100), "lower"),
    Workload("floor_duckdb", "DuckDB autocommit INSERT, file db", (500, 100), "lower"),
    Workload("floor_sqlite", "SQLite WAL synchronous=FULL autocommit INSERT", (500, 100), "lower"),
    Workload("floor_hash", "xxh3_128 over 1 GB (quick 200 MB) in memory", (1, 1), "higher"),
    Workload("floor_disk_write", "write + fdatasync of 1 GB (quick 200 MB)", (1, 1), "higher"),
    Workload("floor_disk_read", "read of it, page cache dropped (fadvise)", (1, 1), "higher"),
)


@dataclass(frozen=True)
class System:
    """A system under test.

    ``packages`` empty means: run in the harness's interpreter.  ``caps``
    lowers n for a workload (full, quick) where the system is too slow to
    finish the standard n within the time limit; ``params`` are extra
    per-workload figures passed to the script; ``batch`` runs all workloads
    of one repetition in one process (for systems with a slow start).
    """

    name: str
    script: str
    packages: tuple[str, ...]
    dists: tuple[str, ...]
    settings: str
    na: dict[str, str] = field(default_factory=dict)
    caps: dict[str, tuple[int, int]] = field(default_factory=dict)
    params: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    batch: bool = False
    notes: tuple[str, ...] = ()


DURABLE_NB = System(
    name="durable_nb",
    script="durable_nb_bench.py",
    packages=(),
    dists=("durable_nb", "duckdb"),
    settings=(
        "standalone engine started by the harness (python -m durable_nb serve --db FILE, engine "
        "defaults: 8 workers) on a fresh DuckDB file per workload; client in the benchmark process "
        "via dn.connect(db=FILE, start=False); runs = task.trigger(...).result(); queues = "
        "dn.Queue(name, concurrency_limit=2); checkpoint = a %%durable cell (durable_nb.client.cells."
        "trigger_cell) of n statements, each a checkpoint; recovery: the engine is SIGKILLed and "
        "started again; memory: the engine process's resident set (its workers are given apart)"
    ),
    notes=(
        "durable_nb, dask: the engine, a Dask scheduler, 1 to 4 Dask worker processes (one thread "
        "each, dask worker --no-nanny on 127.0.0.1) and the client share this machine's CPUs; with "
        "fewer CPUs than processes (2 CPUs run 4 Dask workers) the Dask rows give the CPU each run "
        "and step costs across those processes, not what a cluster of separate hosts would do",
    ),
)

NO_DASK = "durable_nb only: this harness runs no peer on a Dask cluster"

DBOS = System(
    name="dbos",
    script="dbos_bench.py",
    packages=("dbos>=2",),
    dists=("dbos", "sqlalchemy"),
    settings=(
        "@DBOS.workflow/@DBOS.step, SQLite system database on a file "
        "(system_database_url=sqlite:///FILE, DBOS' defaults: rollback journal, busy_timeout 30 s); "
        "runs = DBOS.start_workflow(...).get_result(); queues: concurrency 2 with the default 1 s "
        "polling interval (main figure) and with polling_interval_sec=0.01 (extra rows); "
        "recovery: the process running the workflows is SIGKILLed and a new one calls DBOS.launch(), "
        "which recovers PENDING workflows; memory: the resident set of that process (DBOS runs "
        "in it)"
    ),
    na={
        "checkpoint": "DBOS has no state object to checkpoint; only step outputs are stored",
        "notebook": "durable_nb only (IPython magic)",
        "namespace": "DBOS has no state object to checkpoint; only step outputs are stored",
        "column": "DBOS has no state object to checkpoint; only step outputs are stored",
        "bigrun": "no notebook widget to render a run in",
        "dask": f"{NO_DASK} (DBOS runs workflows in the process that launched it)",
    },
    # The default queue polls every second and takes at most 2 runs per poll.
    params={"latency": {"n_default": (60, 4)}, "throughput": {"n_default": (120, 4)}},
    notes=(
        "dbos latency on the default queue: a random idle gap of 0-1 s precedes each trigger so "
        "triggers fall at a random phase of the 1 s poll (sequential triggers would otherwise "
        "always land just after a poll and wait ~1 s)",
    ),
)

LANGGRAPH = System(
    name="langgraph",
    script="langgraph_bench.py",
    packages=("langgraph", "langgraph-checkpoint-sqlite", "numpy", "pandas"),
    dists=("langgraph", "langgraph-checkpoint-sqlite", "langgraph-checkpoint", "numpy", "pandas"),
    settings=(
        "SqliteSaver on a file (it sets journal_mode=WAL; synchronous left at FULL), "
        'invoke(..., durability="sync"); a run = one graph.invoke on a new thread_id; a step = one '
        "node execution (superstep) followed by a checkpoint; step workload = one node looping on "
        "itself through a conditional edge; memory: the resident set of the process that invokes "
        "the graph; namespace/column: the DataFrame in the graph's state (JsonPlusSerializer with "
        "pickle_fallback=True, as msgpack has no DataFrame type), one superstep per statement"
    ),
    # Each superstep stores the whole frame (twice when the node returns it): at 1 GB, 10
    # statements would take some 10-20 GB of disk and most of the time limit.
    caps={"namespace": (5, 3), "column": (5, 3)},
    # SQLite stores at most 1,000,000,000 bytes in one value (SQLITE_MAX_LENGTH) and
    # SqliteSaver puts the whole checkpoint in one: a 1.02 GB frame fails with "string or
    # blob too big", so the full-mode frame is 7,500,000 rows (960 MB) here.
    params={"namespace": {"rows": (7_500_000, 1_600_000)},
            "column": {"rows": (7_500_000, 1_600_000)}},
    notes=(
        "langgraph, namespace/column: the frame is 960 MB in full mode (7,500,000 rows), as "
        "SqliteSaver stores the whole checkpoint in one SQLite value and SQLite refuses values "
        'over 1,000,000,000 bytes ("string or blob too big" at 1.02 GB); its ratios use that size',
    ),
    na={
        "latency": "LangGraph (the library) has no queue or trigger; invoke runs in the caller",
        "throughput": "LangGraph (the library) has no queue",
        "recovery": "no automatic recovery: the application must re-invoke each thread itself",
        "notebook": "durable_nb only (IPython magic)",
        "bigrun": "no notebook widget to render a run in",
        "million": "no store of runs to list: a checkpointer lists the checkpoints of one thread",
        "dask": f"{NO_DASK} (the library runs nodes in the caller)",
    },
)

PREFECT = System(
    name="prefect",
    script="prefect_bench.py",
    packages=("prefect>=3",),
    dists=("prefect",),
    settings=(
        "persist_result=True on flows and tasks; default local API = the ephemeral server Prefect "
        "starts on 127.0.0.1 with SQLite in a fresh PREFECT_HOME; analytics off (DO_NOT_TRACK=1, "
        "PREFECT_SERVER_ANALYTICS_ENABLED=false); flow heartbeats off for the main figures "
        "(extra row: default); a run = a flow run, a step = a task run in it; queue workloads: "
        "task.delay() to a task-worker process with limit=2 (a run = one background task run); "
        "all workloads of a repetition share one process, timed after a warm-up flow run and after "
        "the server has gone idle"
    ),
    na={
        "recovery": "no automatic resume of crashed in-process flow runs (needs deployments + workers)",
        "checkpoint": "Prefect has no state object to checkpoint; only task results are stored",
        "memory": "not run: at its run overhead (~0.27 s per flow run) 10,000 runs take ~45 min",
        "notebook": "durable_nb only (IPython magic)",
        "namespace": "Prefect has no state object to checkpoint; only task results are stored",
        "column": "Prefect has no state object to checkpoint; only task results are stored",
        "bigrun": "no notebook widget to render a run in",
        "million": "not run: its server's database is built only through its API, and "
                   "1,000,000 flow runs at ~0.27 s each take three days",
        "dask": f"{NO_DASK} (prefect-dask's DaskTaskRunner, not installed here, is the nearest)",
    },
    caps={"step": (2000, 150), "run": (200, 20), "latency": (100, 20), "throughput": (150, 12)},
    params={"run": {"n_default": (20, 2)}},
    batch=True,
    notes=(
        "prefect: task-run states reach the server as events, recorded asynchronously by the "
        "server; the step figure is what the flow sees, the extra row waits until the server has "
        "recorded every task run as COMPLETED",
        "prefect: throughput is bound by task.delay(), which waits up to ~2 s for the server "
        "(SQLite-backed) while the worker is busy; CPU is not saturated",
        "prefect: the default flow heartbeat thread is joined at 1 s granularity when a sync flow "
        "ends, adding up to ~1 s per flow run; main figures use flows.heartbeat_frequency=None",
    ),
)

NOT_AN_ENGINE = "not a durable execution engine; measured only for namespace checkpoints"
_DATA_ONLY = ("step", "run", "latency", "throughput", "recovery", "checkpoint", "notebook",
              "memory", "concurrency", "million", "bigrun", "dask")

DILL = System(
    name="dill",
    script="dill_bench.py",
    packages=("dill", "pandas", "xxhash"),  # xxhash: only for the inline hashing floor
    dists=("dill", "pandas", "numpy"),
    settings=(
        "the statements run in a plain module namespace; after each one dill.dump_module (the "
        "current name of dump_session) writes the whole namespace to a new file, then fsync, an "
        "atomic rename over the previous one and an fsync of the folder"
    ),
    na=dict.fromkeys(_DATA_ONLY, NOT_AN_ENGINE),
)

KISHU = System(
    name="kishu",
    script="kishu_bench.py",
    packages=("kishu", "pandas"),
    dists=("kishu", "pandas", "numpy", "ipykernel"),
    settings=(
        "incremental kernel checkpoints (init_kishu in a real ipykernel driven by jupyter_client, "
        "one cell per statement, the time is execute request to reply, which Kishu sends after "
        "its post_run_cell checkpoint); its SQLite file beside the notebook (rollback journal, "
        "synchronous FULL); no Jupyter server, so its own headless switches are set "
        "(TEST_NOTEBOOK_PATH, ENV_KISHU_TEST_MODE: no browser save/reload)"
    ),
    na=dict.fromkeys(_DATA_ONLY, NOT_AN_ENGINE),
)

PEERS: tuple[System, ...] = (DBOS, LANGGRAPH, PREFECT, DILL, KISHU)
SYSTEMS: tuple[System, ...] = (DURABLE_NB, *PEERS)

FLOORS_SYSTEM = System(
    name="floors",
    script="floors.py",
    packages=(),
    dists=("duckdb",),
    settings="current interpreter, same disk as the systems",
    batch=True,
)
