"""The journal's segment format: per-record checks, resynchronisation after damage, torn
tails, segments of the previous release, and writes that fail (ENOSPC, EFBIG, EIO)."""

from __future__ import annotations

import errno
import os
import pickle
import random
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
import zlib
from pathlib import Path

import pytest

from durable_nb.store import journal as _journal
from durable_nb.store.journal import (
    FILE_HEADER_BYTES,
    SYNC,
    Damage,
    Journal,
    encode,
    scan_bytes,
    scan_segment,
    segments,
)

# -- helpers ------------------------------------------------------------------------


def _record(i: int) -> tuple:
    """A store record of about 200 bytes once pickled, like a log line."""
    return ("ins", "logs", {"run_id": f"run-{i:06d}", "seq": i, "created_at": 1.5 * i,
                            "stream": "stdout", "line": f"line {i} " + "x" * (90 + i % 7)})


def _segment(folder: Path, n: int = 120, batch: int = 10) -> Path:
    """A segment of ``n`` records written through a journal in batches of ``batch``."""
    j = Journal(folder, 0)
    for k in range(0, n, batch):
        j.append([_record(i) for i in range(k, min(n, k + batch))])
        j.commit()
    j.close()
    return segments(folder)[-1]


def _offsets(data: bytes) -> list[int]:
    """Frame offsets of an intact segment of format 2, and its length last."""
    pos, out = FILE_HEADER_BYTES, []
    while pos < len(data):
        out.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 4)[0]
    assert pos == len(data)
    return out + [pos]


def _salt(data: bytes) -> int:
    return struct.unpack_from("<I", data, 12)[0]


def _seqs(scan) -> list[int]:
    return [seq for seq, _ in scan.records]


def _old_encode(batch: list[tuple[int, object]]) -> bytes:
    """``encode`` of the previous release (segment format 1), copied verbatim."""
    header = struct.Struct("<II")  # length, crc32
    chunks = []
    for item in batch:
        body = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        chunks.append(header.pack(len(body), zlib.crc32(body)))
        chunks.append(body)
    return b"".join(chunks)


@pytest.fixture
def seg120(tmp_path):
    """(path, bytes, frame offsets + end) of an intact 120-record segment."""
    path = _segment(tmp_path / "j")
    data = path.read_bytes()
    return path, data, _offsets(data)


# -- round trip and writing ---------------------------------------------------------


def test_round_trip(tmp_path):
    j = Journal(tmp_path / "j", 7)
    j.append([_record(i) for i in range(3)])
    assert j.pending and j.durable_seq == 7
    assert [s for s, _ in j.commit()] == [8, 9, 10]
    assert not j.pending and j.durable_seq == 10
    batch = [(11, {"x": 1.5}), (12, ("upd", "runs", {"id": "a"}, {"status": "DONE"}))]
    j.seq = 12
    j.write_encoded(batch, encode(batch))  # the module's encode, as the store calls it
    j.write(batch[:0])  # an empty batch writes nothing
    j.close()
    [seg] = segments(tmp_path / "j")
    assert stat.S_IMODE(seg.stat().st_mode) == 0o600
    scan = scan_segment(seg)
    assert scan.version == 2 and scan.damage == [] and scan.torn_tail is None
    assert scan.records == [(8 + i, _record(i)) for i in range(3)] + batch
    assert list(_journal.read_segment(seg)) == scan.records
    assert seg.read_bytes().startswith(_journal.MAGIC)


def test_data_encoded_for_another_salt_is_reframed(tmp_path):
    """``write_encoded`` checks that the data was framed for its segment's salt."""
    j = Journal(tmp_path / "j", 0)
    j.append([_record(0)])
    j.commit()
    for data in (encode([(2, "b")], salt=12345), b"not the encoding at all"):
        j.write_encoded([(2, "b")], data)
    j.close()
    scan = scan_segment(segments(tmp_path / "j")[0])
    assert _seqs(scan) == [1, 2, 2] and scan.damage == []


def test_segments_roll_over_with_their_own_salt(tmp_path, monkeypatch):
    monkeypatch.setattr(_journal, "SEGMENT_BYTES", 2000)
    j = Journal(tmp_path / "j", 0)
    for k in range(10):
        j.append([_record(10 * k + i) for i in range(10)])
        batch = j.take()
        data = encode(batch)  # the journal's next salt, as the engine's loop encodes
        assert data.salt == j._target_salt()
        j.write_encoded(batch, data)
    segs = segments(tmp_path / "j")
    assert len(segs) == 10
    assert len({_salt(p.read_bytes()) for p in segs}) == 10
    assert [s for p in segs for s in _seqs(scan_segment(p))] == list(range(1, 101))
    assert j.finished_segments(55) == segs[:5]  # the current segment is never finished
    assert j.finished_segments(100) == segs[5:9]
    j.close()


# -- torn tails and truncation ------------------------------------------------------


def test_torn_tail_at_every_offset_of_the_last_record(seg120):
    _, data, offs = seg120
    last, end = offs[-2], offs[-1]
    for cut in range(last + 1, end):
        for torn in (data[:cut], data[:cut] + bytes(end - cut)):  # cut, or zero-filled
            scan = scan_bytes(torn)
            assert _seqs(scan) == list(range(1, 120)), cut
            assert scan.torn_tail == last and scan.damage == [], cut


def test_truncated_segment(seg120):
    _, data, offs = seg120
    rng = random.Random(1)
    cuts = list(range(0, FILE_HEADER_BYTES + 1)) + offs + rng.sample(range(len(data)), 300)
    for cut in cuts:
        scan = scan_bytes(data[:cut])
        whole = [i for i in range(120) if offs[i + 1] <= cut]
        assert _seqs(scan) == [i + 1 for i in whole], cut
        assert scan.damage == [], cut
        if cut == 0 or cut in offs:
            assert scan.torn_tail is None, cut
        elif cut < FILE_HEADER_BYTES:
            assert scan.torn_tail in (0, FILE_HEADER_BYTES // 2), cut
        else:
            assert scan.torn_tail == offs[len(whole)], cut


def test_zero_filled_regions(seg120):
    """Zeros where records were (a crash on some filesystems): in the middle they are
    damage and every record around them is kept; at the end they are a torn tail."""
    _, data, offs = seg120
    a, b = 4096, 8192
    scan = scan_bytes(data[:a] + bytes(b - a) + data[b:])
    hit = [i for i in range(120) if offs[i] < b and offs[i + 1] > a]
    assert _seqs(scan) == [i + 1 for i in range(120) if i not in hit]
    assert scan.damage == [Damage(offs[hit[0]], offs[hit[-1] + 1] - offs[hit[0]], scan.damage[0].reason)]
    assert scan.torn_tail is None

    scan = scan_bytes(data + bytes(8192))  # the file grew, its data never came
    assert _seqs(scan) == list(range(1, 121)) and scan.damage == []
    assert scan.torn_tail == len(data)

    scan = scan_bytes(data[:a] + bytes(len(data) - a))  # everything after a zeroed
    assert _seqs(scan) == [i + 1 for i in range(120) if offs[i + 1] <= a]
    assert scan.damage == [] and scan.torn_tail == max(o for o in offs if o <= a)


# -- damage -------------------------------------------------------------------------


def test_flipped_byte_loses_only_its_record(seg120):
    _, data, offs = seg120
    positions = sorted(set(range(0, len(data), 11)) | set(range(FILE_HEADER_BYTES))
                       | set(range(offs[0], offs[1] + 1)) | set(range(offs[-2], len(data))))
    for n, pos in enumerate(positions):
        for mask in (0xFF, 0x04) if n % 3 == 0 else (0xFF,):
            bad = bytearray(data)
            bad[pos] ^= mask
            scan = scan_bytes(bytes(bad))
            assert scan.torn_tail is None, pos
            if pos < FILE_HEADER_BYTES:  # one copy of the header
                assert _seqs(scan) == list(range(1, 121)), pos
                copy = pos // 20 * 20
                assert [(d.offset, d.length) for d in scan.damage] == [(copy, 20)], pos
                continue
            i = max(k for k in range(120) if offs[k] <= pos)
            assert _seqs(scan) == [k + 1 for k in range(120) if k != i], pos
            assert [(d.offset, d.length) for d in scan.damage] == [(offs[i], offs[i + 1] - offs[i])], pos


def test_flipped_bytes_in_both_header_copies(seg120):
    _, data, offs = seg120
    bad = bytearray(data)
    bad[1] ^= 0xFF  # magic of the first copy
    bad[20 + 18] ^= 0xFF  # checksum of the second copy
    scan = scan_bytes(bytes(bad))
    assert _seqs(scan) == list(range(1, 121))  # the salt is confirmed by the records
    assert [(d.offset, d.length) for d in scan.damage] == [(0, FILE_HEADER_BYTES)]
    bad[12] ^= 0xFF  # and both salts: nothing can be verified, and it says so
    bad[32] ^= 0xFF
    scan = scan_bytes(bytes(bad))
    assert scan.records == [] and [(d.offset, d.length) for d in scan.damage] == [(0, len(data))]
    assert "header" in scan.damage[0].reason


def test_random_damage_never_yields_a_wrong_record(seg120):
    """Several damaged bytes at random: every record returned is an original one, in
    order; every record whose bytes are untouched is kept; intact records, damage and
    torn tail together cover the whole file."""
    _, data, offs = seg120
    originals = {i + 1: _record(i) for i in range(120)}
    rng = random.Random(7)
    for _ in range(150):
        bad = bytearray(data)
        hits = rng.sample(range(FILE_HEADER_BYTES, len(data)), rng.randint(1, 6))
        for pos in hits:
            bad[pos] = rng.randrange(256) if rng.random() < 0.5 else 0
        scan = scan_bytes(bytes(bad))
        assert all(originals[s] == r for s, r in scan.records)
        assert _seqs(scan) == sorted(_seqs(scan))
        untouched = [i + 1 for i in range(120)
                     if not any(offs[i] <= h < offs[i + 1] for h in hits)]
        assert set(untouched) <= set(_seqs(scan))
        covered = [(offs[s - 1], offs[s]) for s in _seqs(scan)]
        covered += [(d.offset, d.offset + d.length) for d in scan.damage]
        if scan.torn_tail is not None:
            covered.append((scan.torn_tail, len(data)))
        covered.sort()
        assert covered[0][0] == FILE_HEADER_BYTES and covered[-1][1] == len(data)
        assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))


def test_garbage_between_records(seg120):
    _, data, offs = seg120
    rng = random.Random(3)
    for garbage in (rng.randbytes(333), SYNC * 50, (SYNC + rng.randbytes(12)) * 20, b"\0" * 4096):
        at = offs[60]
        scan = scan_bytes(data[:at] + garbage + data[at:])
        assert _seqs(scan) == list(range(1, 121))
        assert [(d.offset, d.length) for d in scan.damage] == [(at, len(garbage))]
        assert scan.torn_tail is None
    scan = scan_bytes(data + rng.randbytes(100))  # garbage after the last record
    assert _seqs(scan) == list(range(1, 121)) and scan.torn_tail is None
    assert [(d.offset, d.length) for d in scan.damage] == [(len(data), 100)]


def test_forged_frame_in_a_payload_is_not_a_record(tmp_path):
    """A payload that holds a complete frame (the bytes of another segment's record) is
    scanned when the scanner resynchronises inside it; the salt makes it fail."""
    folder = tmp_path / "j"
    _segment(folder, n=3)
    salt = _salt(segments(folder)[0].read_bytes())
    for forged_salt, accepted in ((salt ^ 1, False), (0, False), (salt, True)):
        folder2 = tmp_path / f"j{forged_salt}"
        forged = encode([(999, ("ins", "runs", {"id": "forged"}))], salt=forged_salt)
        j = Journal(folder2, 0)
        j._next_salt = salt  # the same salt, to show the forgery would pass without it
        j.append([_record(0), ("ins", "blobs", {"data": bytes(forged)}), _record(2)])
        j.commit()
        j.close()
        data = segments(folder2)[0].read_bytes()
        offs = _offsets(data)
        assert data.find(SYNC, offs[1] + 1) < offs[2]  # the payload holds a frame
        for pos in range(offs[1], offs[1] + 16):  # damage the carrying record's header
            bad = bytearray(data)
            bad[pos] ^= 0xFF
            scan = scan_bytes(bytes(bad))
            assert (999 in _seqs(scan)) is accepted, (forged_salt, pos)
            assert {1, 3} <= set(_seqs(scan)) and 2 not in _seqs(scan)


def test_a_huge_length_reads_nothing_past_the_file(seg120):
    """A frame whose header checks out but claims 4 GB: no read past the file, no huge
    buffer, the records after it are kept."""
    _, data, offs = seg120
    salt = _salt(data)
    head = struct.pack("<4sII", SYNC, 0xFFFFFFFF, 0)
    frame = head + struct.pack("<I", zlib.crc32(head, salt))
    at = offs[30]
    tracemalloc.start()
    try:
        scan = scan_bytes(data[:at] + frame + data[at:])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * len(data)
    assert _seqs(scan) == list(range(1, 121))
    assert [(d.offset, d.length) for d in scan.damage] == [(at, len(frame))]
    scan = scan_bytes(data + frame)  # at the end, it is a torn write
    assert scan.torn_tail == len(data) and scan.damage == []


def test_random_files_do_not_crash_the_scanner():
    rng = random.Random(5)
    for size in (1, 7, 39, 40, 41, 500, 5000):
        for _ in range(20):
            scan = scan_bytes(rng.randbytes(size))
            assert scan.records == []
            assert scan.damage or scan.torn_tail is not None


# -- the previous release's format --------------------------------------------------


def test_segment_of_the_previous_release(tmp_path):
    folder = tmp_path / "j"
    folder.mkdir()
    old = folder / "seg-000000001.jnl"
    records = [(i + 1, _record(i)) for i in range(50)]
    data = b"".join(_old_encode(records[k:k + 10]) for k in range(0, 50, 10))
    old.write_bytes(data)
    scan = scan_segment(old)
    assert scan.version == 1 and scan.records == records
    assert scan.damage == [] and scan.torn_tail is None

    offs = [0]
    for seq, rec in records:
        offs.append(offs[-1] + 8 + len(pickle.dumps((seq, rec), protocol=pickle.HIGHEST_PROTOCOL)))
    bad = bytearray(data)
    bad[offs[20] + 30] ^= 0xFF  # records up to the bad one, the rest reported as damage
    scan = scan_bytes(bytes(bad))
    assert scan.version == 1 and scan.records == records[:20] and scan.torn_tail is None
    assert [(d.offset, d.length) for d in scan.damage] == [(offs[20], len(data) - offs[20])]
    for cut in (offs[49] + 3, offs[49] + 20, len(data) - 1):  # a torn tail
        scan = scan_bytes(data[:cut])
        assert scan.records == records[:49] and scan.torn_tail == offs[49] and not scan.damage
    scan = scan_bytes(data + bytes(4096))
    assert scan.records == records and scan.torn_tail == len(data) and not scan.damage

    j = Journal(folder, 50)  # a new journal starts a segment of its own after the old one
    j.append([_record(50)])
    j.commit()
    j.close()
    assert [p.name for p in segments(folder)] == ["seg-000000001.jnl", "seg-000000002.jnl"]
    assert scan_segment(segments(folder)[1]).records == [(51, _record(50))]
    assert scan_segment(old).records == records


def test_store_resumes_from_a_segment_of_the_previous_release(tmp_path):
    """A database left by the previous release with records not yet ingested."""
    from durable_nb.store.store import Store

    db = tmp_path / "old.duckdb"
    s = Store(db)
    s.open()
    s.close()
    folder = db.with_name(db.name + ".journal")
    folder.mkdir(exist_ok=True)
    rows = [(i + 1, ("ins", "logs", {"run_id": "r", "seq": i, "created_at": 0.0,
                                     "stream": "stdout", "line": f"line {i}"}))
            for i in range(30)]
    (folder / "seg-000000001.jnl").write_bytes(_old_encode(rows)[:-5])  # and a torn tail
    s = Store(db)
    s.open()
    try:
        got = s.query("select count(*) as n, max(seq) as m from logs where run_id = 'r'")
    finally:
        s.close()
    assert got[0]["n"] == 29 and got[0]["m"] == 28


# -- failed writes ------------------------------------------------------------------


def _fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; returns its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = b"\1" * 65536
        while True:
            try:
                os.write(fd, chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                chunk = chunk[: len(chunk) // 2]
                if not chunk:
                    break
    finally:
        os.close(fd)
    return path.stat().st_size


@pytest.fixture
def small_tmpfs():
    """A 1 MB tmpfs of our own, to fill for real."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 1 MB tmpfs to fill needs root")
    mnt = Path(tempfile.mkdtemp(prefix="journal-tmpfs-"))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"could not mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        mnt.rmdir()


def test_full_disk_leaves_a_readable_segment(small_tmpfs):
    folder = small_tmpfs / "j"
    filler = small_tmpfs / "filler"
    j = Journal(folder, 0)
    size = _fill(filler)

    j.append([_record(0)])
    batch = j.take()
    with pytest.raises(OSError) as e:  # no room for a new segment: none is left behind
        j.write(batch)
    assert e.value.errno == errno.ENOSPC
    assert segments(folder) == [] and j.durable_seq == 0

    os.truncate(filler, size - 16384)
    j.write(batch)  # the same batch again
    acked = 1
    failed = None
    for k in range(200):
        j.append([_record(i) for i in range(1 + 10 * k, 11 + 10 * k)])
        batch = j.take()
        try:
            j.write(batch)
        except OSError as e:
            assert e.errno == errno.ENOSPC
            failed = batch
            break
        acked = batch[-1][0]
    assert failed is not None, "the tmpfs never filled"
    assert j.durable_seq == acked
    [seg] = segments(folder)
    scan = scan_segment(seg)
    assert _seqs(scan) == list(range(1, acked + 1))
    assert scan.damage == [] and scan.torn_tail is None

    j.append([_record(10_000)])
    j.requeue(failed)  # written again first, in seq order
    filler.unlink()  # space returns: the failed batch and later ones are written
    j.commit()
    j.close()
    scan = scan_segment(seg)
    assert _seqs(scan) == list(range(1, j.seq + 1)) and scan.damage == []
    assert j.durable_seq == j.seq


def test_write_past_the_file_size_limit_is_rolled_back(tmp_path):
    """The same roll-back without root: RLIMIT_FSIZE makes writes fail with EFBIG."""
    script = textwrap.dedent(f"""
        import errno, resource, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_journal import _record
        from durable_nb.store.journal import Journal, scan_segment, segments
        folder = Path({str(tmp_path / "j")!r})
        j = Journal(folder, 0)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, hard))
        for k in range(1000):
            j.append([_record(i) for i in range(7)])
            batch = j.take()
            try:
                j.write(batch)
            except OSError as e:
                assert e.errno == errno.EFBIG, e
                break
        [seg] = segments(folder)
        assert seg.stat().st_size <= 20000
        scan = scan_segment(seg)
        assert [s for s, _ in scan.records] == list(range(1, j.durable_seq + 1))
        assert not scan.damage and scan.torn_tail is None
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        j.write(batch)
        j.close()
        assert [s for s, _ in scan_segment(seg).records] == list(range(1, j.seq + 1))
        print("ok", j.seq)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")


def test_failed_roll_back_moves_to_a_new_segment(tmp_path, monkeypatch):
    """EIO from fdatasync, then from ftruncate (injected: a real EIO needs a failing
    device): the segment is abandoned, the batch goes to a new one, and each seq is read
    once by keeping the first copy."""
    folder = tmp_path / "j"
    j = Journal(folder, 0)
    j.append([_record(i) for i in range(5)])
    j.commit()

    def eio(*args):
        raise OSError(errno.EIO, "injected I/O error")

    j.append([_record(i) for i in range(5, 10)])
    batch = j.take()
    with monkeypatch.context() as m:
        m.setattr(os, "fdatasync", eio)
        m.setattr(os, "ftruncate", eio)
        with pytest.raises(OSError):
            j.write(batch)
    assert j.durable_seq == 5
    first = segments(folder)[0]
    assert j.finished_segments(5) == [first]  # abandoned, so finished once ingested
    j.write(batch)
    j.append([_record(10)])
    j.commit()
    j.close()
    old, new = segments(folder)
    assert _seqs(scan_segment(old)) == list(range(1, 11))  # the failed batch, unsynced
    assert _seqs(scan_segment(new)) == list(range(6, 12))
    seen: dict[int, object] = {}
    for seg in segments(folder):
        for seq, rec in scan_segment(seg).records:
            seen.setdefault(seq, rec)
    assert sorted(seen) == list(range(1, 12))


def test_fdatasync_failure_is_cut_back(tmp_path, monkeypatch):
    """EIO from fdatasync alone (injected): the segment is cut back and kept."""
    folder = tmp_path / "j"
    j = Journal(folder, 0)
    j.append([_record(i) for i in range(5)])
    j.commit()
    size = segments(folder)[0].stat().st_size
    j.append([_record(i) for i in range(5, 10)])
    batch = j.take()

    real_fdatasync, calls = os.fdatasync, []

    def eio_once(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "injected I/O error")
        real_fdatasync(fd)

    with monkeypatch.context() as m:
        m.setattr(os, "fdatasync", eio_once)
        with pytest.raises(OSError):
            j.write(batch)
    assert len(calls) == 2  # the failed sync, then the one after cutting back
    [seg] = segments(folder)
    assert seg.stat().st_size == size
    j.write(batch)
    j.close()
    assert segments(folder) == [seg]
    assert _seqs(scan_segment(seg)) == list(range(1, 11))

