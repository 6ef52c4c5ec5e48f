"""`durable-nb doctor`: what is wrong with a database's store, and what to do about it.

It inspects, for one DuckDB file ``<db>``: the database itself, its live journal
(``<db>.journal/seg-*.jnl``), the records DuckDB refused (the quarantine), the journal
segments set aside as damaged (``<db>.journal/damaged/``), the modes and owners of every
file (0600) and folder (0700) of the store, and the free disk space.

When an engine runs for the database, doctor asks its ``/health`` instead of opening the
DuckDB file (DuckDB allows one process); otherwise it opens the file read-only, briefly.
Every problem line says what is wrong and what to do; the exit status is 1 when there is
one, 0 otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import paths as _paths
from ..core import runtime as _runtime
from ..store import journal as _journal

if TYPE_CHECKING:
    import duckdb

MIN_FREE_BYTES = 1 << 30
MIN_FREE_FRACTION = 0.05
SHOW = 5  # entries listed per kind (quarantined records, files with wrong modes)
LABELS = {"ok": "ok", "note": "note", "problem": "PROBLEM"}
# the counts of the engine's /health `store` that the report shows, with their names
STORE_FACTS = (("journal_segments", "journal segments"),
               ("ingest_backlog", "records waiting for DuckDB"),
               ("quarantined", "quarantined records"), ("damaged_segments", "damaged segments"))


@dataclass
class Finding:
    """One line of the report: ``level`` is ok, note or problem."""

    level: str
    what: str
    todo: str = ""
    details: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        text = f"{self.what}. What to do: {self.todo}" if self.todo else self.what
        return [f"{LABELS[self.level]:<8} {text}", *(f"{'':<11}{d}" for d in self.details)]


@dataclass
class Layout:
    """Where the store of ``db`` keeps its files."""

    db: Path

    def beside(self, suffix: str) -> Path:
        return self.db.with_name(self.db.name + suffix)

    @property
    def wal(self) -> Path:
        return self.beside(".wal")

    @property
    def journal(self) -> Path:
        return self.beside(".journal")

    @property
    def blobs(self) -> Path:
        return self.beside(".blobs")

    @property
    def quarantine_files(self) -> list[Path]:
        single = self.journal / "quarantine.jnl"
        folder = self.journal / "quarantine"
        found = [single] if single.is_file() else []
        return found + (_journal.segments(folder) if folder.is_dir() else [])

    @property
    def damaged(self) -> Path:
        return self.journal / "damaged"


class Report:
    """The findings of one diagnosis, in the order they were made."""

    def __init__(self, db: Path):
        self.db = db
        self.findings: list[Finding] = []

    def ok(self, what: str) -> None:
        self.findings.append(Finding("ok", what))

    def note(self, what: str, todo: str = "") -> None:
        self.findings.append(Finding("note", what, todo))

    def problem(self, what: str, todo: str, details: list[str] | None = None) -> None:
        self.findings.append(Finding("problem", what, todo, details or []))

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "problem"]

    def text(self) -> str:
        out = [f"durable-nb doctor: {self.db}"]
        for f in self.findings:
            out += f.lines()
        n = len(self.problems)
        out.append("No problem found." if not n else f"{n} problem{'s' * (n > 1)} found.")
        return "\n".join(out)


def diagnose(db: Path, min_free_bytes: int = MIN_FREE_BYTES,
             min_free_fraction: float = MIN_FREE_FRACTION) -> Report:
    """Check the store of ``db`` (see the module docstring)."""
    lay, report = Layout(db), Report(db)
    live_segments = _journal.segments(lay.journal) if lay.journal.is_dir() else []
    if not db.exists() and not lay.journal.exists():
        report.note(f"no database at {db} yet: an engine creates it at its first start "
                    "(pass --db to check another one)")
        return report
    running = _engine(lay, report)
    journal_seq = None
    if not running:
        journal_seq = _database(lay, report, bool(live_segments))
    _live_journal(lay, report, live_segments, journal_seq, running)
    _quarantine(lay, report)
    _damaged(lay, report)
    _modes(lay, report)
    _disk(lay, report, min_free_bytes, min_free_fraction)
    return report


def run(db: Path) -> int:
    """Print the diagnosis of ``db``; 1 when a problem was found, else 0."""
    report = diagnose(db)
    print(report.text())
    return 1 if report.problems else 0


# -- the engine ---------------------------------------------------------------------


def _engine(lay: Layout, report: Report) -> bool:
    """Ask the engine that owns the database, if one runs; True when one answered."""
    from ..client.client import find_engine
    from ..core.errors import DurableError, EngineUnavailable
    from ..core.runtime import pid_alive

    info = _runtime.read(lay.db)
    if not info:
        rt = _runtime.path(lay.db)
        if rt.exists():
            report.note(f"engine: none runs; its runtime file {rt} is unreadable or malformed "
                        "(the next start replaces it)")
        else:
            report.ok("engine: none runs for this database")
        return False
    pid = info["pid"]
    if not pid_alive(pid):
        report.note(f"engine: none runs, but the runtime file of engine pid {pid} remains (it "
                    "did not stop cleanly); the next start replaces it and replays what that "
                    "engine had not stored yet")
        return False
    try:
        health = find_engine(lay.db, start=False).health()
    except (DurableError, OSError) as exc:
        why = "" if isinstance(exc, EngineUnavailable) else f" ({exc})"
        report.problem(
            f"engine: process {pid} owns the runtime file but no engine answers at "
            f"{info.get('url')}{why}", "it may be starting or stuck: run doctor again in a "
            f"moment; if it stays so, stop it (`durable-nb stop --db {lay.db}`, or kill "
            f"{pid}) and start the engine again")
        return True  # that process may hold the database: do not open it
    store = health.get("store") or {}
    where = info.get("host") or "durable-nb serve"
    facts = [f"{store[k]} {what}" for k, what in STORE_FACTS if k in store]
    report.ok(f"engine: pid {pid} ({where}) answers at {info.get('url')}"
              + (f": {', '.join(facts)}" if facts else ""))
    if not store:
        report.note("the engine reports no store details (an older durable_nb)")
    if store.get("writable") is False:
        report.problem(
            f"the engine refuses writes: {store.get('problem') or 'its journal cannot write'}",
            "when the disk is full, free space there: the engine resumes writing by itself; "
            f"otherwise see its log ({_paths.engine_log_file(lay.db)} for a detached engine, "
            "else the Jupyter server's log)")
    elif store.get("problem"):
        report.problem(
            f"the engine cannot store records in DuckDB: {store['problem']}",
            "the records wait in the journal and nothing is lost; when the disk is full, free "
            "space there and ingestion resumes by itself; otherwise see the engine's log")
    if store.get("lost_records"):
        report.problem(
            f"{_n(store['lost_records'], 'journal record')} "
            f"{'was' if store['lost_records'] == 1 else 'were'} lost to damaged journal "
            "segments at the engine's start", "the runs they belonged to may miss a step, wait or log "
            "line; see the damaged segments below and check the disk for errors")
    return True


# -- the database -------------------------------------------------------------------


def _database(lay: Layout, report: Report, has_journal: bool) -> int | None:
    """Open the database read-only: it opens, its schema version; returns meta.journal_seq.

    The open holds the lock under which clients start engines, so none starts meanwhile
    (an engine started another way could still meet it: it is brief)."""
    from ..client.client import _live_engine, _start_lock
    from ..core.errors import EngineUnavailable
    from ..store.schema import SCHEMA_VERSION

    if not lay.db.exists():
        if has_journal:
            report.note(f"database: no file at {lay.db}, but its journal has segments: the "
                        "next start creates the database and replays them")
        return 0
    try:
        with _start_lock(lay.db, time.monotonic() + 5):
            if _live_engine(lay.db) is not None:
                report.note("database: an engine started meanwhile, so doctor did not open "
                            "the database (run it again to ask that engine)")
                return None
            found = _read_database(lay, report)
    except EngineUnavailable:
        report.problem("database: an engine is being started for it, so doctor did not open "
                       "it", "run doctor again in a moment")
        return None
    if found is None:
        return None
    version, journal_seq, runs = found
    if version is not None and version > SCHEMA_VERSION:
        report.problem(f"database: schema version {version} is newer than this durable_nb "
                       f"knows ({SCHEMA_VERSION})", "upgrade durable_nb (pip install -U "
                       "durable_nb) before starting an engine on it")
    elif version is None or version < SCHEMA_VERSION:
        report.ok(f"database: opens read-only; {runs} runs; schema version {version or 0}, "
                  f"migrated to {SCHEMA_VERSION} at the next start")
    else:
        report.ok(f"database: opens read-only; {runs} runs; schema version {version} (current)")
    return journal_seq


def _read_database(lay: Layout, report: Report) -> tuple[int | None, int, int] | None:
    """(schema version, meta.journal_seq, number of runs) read from a brief read-only open."""
    import duckdb

    try:
        conn = duckdb.connect(str(lay.db), read_only=True,
                              config={"enable_external_access": False})
    except duckdb.Error as exc:
        if "lock" in str(exc).lower():
            report.problem(
                f"database: another process holds {lay.db} ({exc})",
                "an engine may be starting or stopping: run doctor again in a moment; if the "
                "process is not a durable_nb engine, stop it (DuckDB allows one process)")
        else:
            report.problem(
                f"database: {lay.db} does not open ({exc})",
                f"keep {lay.journal} (it holds what is not in DuckDB yet); restore the "
                "database from a backup, or move it aside so that the next start creates a "
                "new one and replays the journal into it")
        return None
    try:
        version = _aggregate(conn, "SELECT max(version) FROM schema_version")
        row = conn.execute("SELECT value FROM meta WHERE key = 'journal_seq'").fetchone()
        runs = _aggregate(conn, "SELECT count(*) FROM runs")
    except duckdb.Error as exc:
        report.problem(f"database: {lay.db} is not a durable_nb store ({exc})",
                       "check the path (--db, or DURABLE_NB_DB)")
        return None
    finally:
        conn.close()
    return version, int(row[0]) if row else 0, runs


def _aggregate(conn: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The value of an aggregate query, which always yields exactly one row."""
    row = conn.execute(sql).fetchone()
    if row is None:
        raise RuntimeError(f"the aggregate query {sql!r} returned no row")
    return row[0]


# -- the journal --------------------------------------------------------------------


def _live_journal(lay: Layout, report: Report, segs: list[Path], journal_seq: int | None,
                  running: bool) -> None:
    """Scan every live segment: damage, torn tails, records not in DuckDB yet."""
    seqs: set[int] = set()
    damaged = False
    for i, seg in enumerate(segs):
        try:
            scan = _journal.scan_segment(seg)
        except FileNotFoundError:
            continue  # ingested and removed by the engine meanwhile
        except OSError as exc:
            report.problem(f"journal: segment {seg} cannot be read ({exc})",
                           f"make it readable by the engine's user: `chmod 600 {seg}`, "
                           "owned by that user")
            continue
        seqs.update(seq for seq, _ in scan.records)
        if scan.damage:
            damaged = True
            ranges = "; ".join(str(d) for d in scan.damage[:SHOW])
            more = len(scan.damage) - SHOW
            report.problem(
                f"journal: segment {seg} is damaged: {ranges}"
                + (f" (and {more} more ranges)" if more > 0 else "")
                + f"; its {len(scan.records)} intact records are kept",
                ("at its next start the engine" if running else "start the engine: it")
                + " replays the intact records, reports any it lost and moves the segment "
                f"to {lay.damaged} with a report; check the disk for errors (dmesg, smartctl)")
        last_live = running and i == len(segs) - 1
        if scan.torn_tail is not None and not last_live:
            report.note(f"journal: segment {seg.name} ends with an incomplete record at offset "
                        f"{scan.torn_tail}: a write cut short by a crash, never acknowledged "
                        "(nothing lost)")
    if not segs:
        report.ok("journal: no live segment (everything is in DuckDB)" if journal_seq is not None
                  else "journal: no live segment")
        return
    count = f"{len(segs)} live segment{'s' * (len(segs) != 1)}, {len(seqs)} records"
    if journal_seq is None:
        report.ok(f"journal: {count}")
        return
    beyond = sorted(s for s in seqs if s > journal_seq)
    if beyond:
        report.note(f"journal: {count}; {len(beyond)} of them are beyond meta.journal_seq "
                    f"({journal_seq}): the next start replays them into DuckDB")
    else:
        report.ok(f"journal: {count}, all in DuckDB")
    if damaged and beyond:
        missing = set(range(journal_seq + 1, beyond[-1] + 1)) - seqs
        if missing:
            one = len(missing) == 1
            report.problem(
                f"journal: {_n(len(missing), 'record')} not in DuckDB "
                f"{'is' if one else 'are'} lost to that damage (sequence "
                + (f"number {min(missing)})" if one else
                   f"numbers {min(missing)} to {max(missing)})"),
                "the runs they belonged to may miss a step, wait or log line; the next start "
                "replays every other record")


def _records(path: Path, report: Report) -> list[tuple[int, object]]:
    """The intact records of a journal-format file, with its damage reported."""
    try:
        scan = _journal.scan_segment(path)
    except OSError as exc:
        report.problem(f"{path} cannot be read ({exc})",
                       f"make it readable by the engine's user: `chmod 600 {path}`")
        return []
    if scan.damage:
        report.problem(f"{path} is damaged: " + "; ".join(str(d) for d in scan.damage[:SHOW]),
                       "check the disk for errors (dmesg, smartctl); its intact entries are "
                       "listed here")
    return scan.records


def _quarantine(lay: Layout, report: Report) -> None:
    files = lay.quarantine_files
    entries = [rec[1] for f in files for _, rec in _records(f, report)
               if isinstance(rec, tuple) and len(rec) == 2 and rec[0] == "quarantined"
               and isinstance(rec[1], dict)]
    if not entries:
        report.ok("quarantine: no record was refused by DuckDB")
        return
    where = ", ".join(str(f) for f in files)
    details = [_describe_entry(e) for e in entries[:SHOW]]
    if len(entries) > SHOW:
        details.append(f"... and {len(entries) - SHOW} more")
    report.problem(
        f"quarantine: {len(entries)} journal record{'s' * (len(entries) > 1)} could not be "
        f"stored in DuckDB and {'are' if len(entries) > 1 else 'is'} kept in {where}",
        "they block nothing; each points to a value DuckDB cannot hold or to a bug: report "
        "them with the lines below, and once dealt with, delete those files to clear this",
        details)


def _describe_entry(entry: dict) -> str:
    rec = entry.get("record")
    kind = " ".join(str(x) for x in rec[:2]) if isinstance(rec, tuple) else type(rec).__name__
    at = entry.get("at")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if isinstance(
        at, (int, float)) else "?"
    return f"seq {entry.get('seq')} ({kind}) at {when}: {entry.get('error')}"


def _damaged(lay: Layout, report: Report) -> None:
    folder = lay.damaged
    reports = sorted(folder.glob("*.report.json")) if folder.is_dir() else []
    if not reports:
        report.ok("damaged segments: none set aside")
    for rpath in reports:
        try:
            rep = json.loads(rpath.read_text())
            ranges = "; ".join(f"{d['length']} bytes at offset {d['offset']}: {d['reason']}"
                               for d in rep["damage"][:SHOW])
            found = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rep["found_at"]))
            kept = rep["records_kept"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            report.problem(f"damaged segments: the report {rpath} cannot be read ({exc})",
                           f"inspect {folder} by hand, then delete the report to clear this")
            continue
        seg = folder / rep.get("segment", rpath.name.removesuffix(".report.json"))
        report.problem(
            f"damaged segments: journal segment {seg.name} was found damaged on {found} "
            f"({ranges}); its {kept} intact records were kept, and records in the damaged "
            "bytes that DuckDB did not hold yet were lost (the engine's log says how many)",
            "check the disk for errors (dmesg, smartctl); the segment is kept for inspection: "
            f"delete {seg} and {rpath} to clear this")


# -- files and disk -----------------------------------------------------------------


def _store_paths(lay: Layout) -> Iterator[Path]:
    """Every file and folder of the store that exists (the database's folder excluded)."""
    rt = _runtime.path(lay.db)
    for p in (lay.db, lay.wal, rt, _runtime.lock_path(lay.db), _paths.engine_log_file(lay.db)):
        if p.exists():
            yield p
    for top in (lay.journal, lay.blobs):
        if not top.is_dir():
            continue
        yield top
        for root, dirs, files in os.walk(top):
            for name in sorted(dirs) + sorted(files):
                yield Path(root, name)


def _modes(lay: Layout, report: Report) -> None:
    """Every file 0600 and folder 0700 (no access for others), owned by this user."""
    wrong: list[tuple[Path, int, bool]] = []
    checked = 0
    for p in _store_paths(lay):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        checked += 1
        is_dir = stat.S_ISDIR(st.st_mode)
        if st.st_mode & 0o077:
            wrong.append((p, stat.S_IMODE(st.st_mode), is_dir))
        if st.st_uid != os.geteuid():
            report.problem(f"files: {p} belongs to uid {st.st_uid}, not to this user "
                           f"(uid {os.geteuid()})", f"an engine running as this user may not "
                           f"be able to write it: `chown {os.geteuid()} {p}`, or run doctor "
                           "and the engine as its owner")
    if not wrong:
        report.ok(f"files: {checked} files and folders of the store are private "
                  "(0600 files, 0700 folders)")
        return
    rt = _runtime.path(lay.db)
    for p, mode, is_dir in wrong[:SHOW]:
        want = "0700" if is_dir else "0600"
        extra = (" and restart the engine: its token may have been read" if p == rt else "")
        report.problem(f"files: {p} is {mode:04o}, open to other users (should be {want})",
                       f"`chmod {want[1:]} {p}`{extra}")
    if len(wrong) > SHOW:
        tops = sorted({str(t) for t in (lay.journal, lay.blobs) if t.exists()})
        report.problem(f"files: {len(wrong) - SHOW} more files or folders of the store are "
                       "open to other users", f"`chmod -R go-rwx {' '.join(tops)}`")


def _disk(lay: Layout, report: Report, min_free: int, min_fraction: float) -> None:
    where = lay.db.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    frac = usage.free / usage.total if usage.total else 0.0
    text = f"{_size(usage.free)} free ({frac:.0%}) on the filesystem of {where}"
    if usage.free < min_free or frac < min_fraction:
        report.problem(f"disk: only {text}",
                       "free space there: on a full disk the engine refuses writes (reads go "
                       "on) until space returns")
    else:
        report.ok(f"disk: {text}")


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
