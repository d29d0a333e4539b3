"""Durable sessions (docs/sessions.md): a session's interpreter saved into
the store after each call, and restored after its worker is gone, its
server killed with SIGKILL, or in another process.

The store is real SQLite in a temporary directory; the servers are real
processes killed with SIGKILL.  The host's sqlite3 module only edits the
store's file to damage it on purpose; guest code runs only inside capsule.
"""
import json
import os
import sqlite3
import stat
import subprocess
import time

import pytest

from test_mcp import Stdio


def store_url(tmp_path):
    return f"sqlite:{tmp_path / 'sessions.db'}"


def call(server, code, session, id=1, **arguments):
    response = server.request("tools/call", {
        "name": "run_python_code",
        "arguments": {"python_code": code, "session_id": session, **arguments}}, id)
    return response["result"]


def tool(server, name, id=1, **arguments):
    return server.request("tools/call", {"name": name, "arguments": arguments}, id)["result"]


def value(result):
    assert not result.get("isError"), result
    return result["structuredContent"]["return_value"]


def kill(server):
    server.process.kill()
    server.process.wait(timeout=30)


# --- capsule run --session ------------------------------------------------------------


def test_cli_session_carries_state_across_processes(capsule, tmp_path):
    store = ["--store", store_url(tmp_path), "--session", "notes"]
    first = capsule.json("import json, re\nx = 41\n"
                         "open('/work/data.txt', 'w').write('kept')\n"
                         "open('/tmp/t.txt', 'w').write('tmp too')", *store)
    assert first["status"] == "success", first
    second = capsule.json("(x + 1, json.dumps([1]), re.sub('a', 'b', 'aa'), "
                          "open('/work/data.txt').read(), open('/tmp/t.txt').read())", *store)
    assert second["return_value"] == "(42, '[1]', 'bb', 'kept', 'tmp too')", second
    # Another session in the same store starts fresh.
    other = capsule.json("'x' in globals()", "--store", store_url(tmp_path), "--session", "other")
    assert other["return_value"] == "False", other


def test_a_store_in_a_new_directory_is_made_there_private(capsule, tmp_path):
    """An SQLite store (given, or the default under XDG_STATE_HOME) whose
    directory does not exist yet: the directories are made, 0700, as the
    store holds every session's state; one that cannot be made is a clear
    error."""
    given = tmp_path / "new" / "deeper" / "s.db"
    store = ["--store", f"sqlite:{given}", "--session", "s"]
    assert capsule.json("x = 41", *store)["status"] == "success"
    assert capsule.json("x + 1", *store)["return_value"] == "42"
    for directory in (tmp_path / "new", tmp_path / "new" / "deeper"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    state = tmp_path / "fresh" / "state"
    default = capsule.json("y = 1", "--session", "d", env={"XDG_STATE_HOME": str(state)})
    assert default["status"] == "success", default
    assert (state / "capsule" / "sessions.db").exists()
    assert stat.S_IMODE((state / "capsule").stat().st_mode) == 0o700
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    failed = capsule.run("--store", f"sqlite:{blocked}/s.db", "--session", "s", code="x = 1")
    assert failed.returncode != 0
    assert b"cannot create" in failed.stderr and b"Not a directory" in failed.stderr, failed.stderr


def test_cli_an_idempotency_key_replays_the_stored_result(capsule, tmp_path):
    store = ["--store", store_url(tmp_path), "--session", "s"]
    code = "n = globals().get('n', 0) + 1\nprint('run', n)"
    first = capsule.json(code, *store, "--idempotency-key", "k1")
    again = capsule.json(code, *store, "--idempotency-key", "k1")
    assert first["stdout"] == again["stdout"] == "run 1\n", (first, again)
    assert any("replayed" in note for note in again["notes"]), again
    # The code did not run twice: the session's n is still 1.
    assert capsule.json("n", *store)["return_value"] == "1"
    # The same key with other code is refused, not run.
    other = capsule.json("n = 100", *store, "--idempotency-key", "k1")
    assert other["status"] == "session-error" and "different request" in other["error"], other
    assert capsule.json("n", *store)["return_value"] == "1"


def test_cli_idempotency_key_needs_a_session(capsule):
    completed = capsule.run("--idempotency-key", "k", code="1")
    assert completed.returncode == 2 and b"needs --session" in completed.stderr


def test_cli_an_unusable_store_is_a_clear_error(capsule, tmp_path):
    (tmp_path / "not-a-db").write_bytes(b"this is not an SQLite database" * 100)
    completed = capsule.run("--store", f"sqlite:{tmp_path / 'not-a-db'}", "--session", "s",
                            code="1")
    assert completed.returncode != 0
    assert b"capsule:" in completed.stderr and b"Traceback" not in completed.stderr


# --- capsule serve: idle sessions --------------------------------------------------------


def test_an_idle_session_is_parked_with_no_call_and_resumes(binary, tmp_path):
    """--session-idle: a session unused that long is parked by the server
    itself (its worker stopped, the store says parked), not only when a
    later call comes; its next call restores it."""
    server = Stdio(binary, "--store", store_url(tmp_path), "--session-idle", "2")
    assert value(call(server, "x = 41", "idle")) is None

    def status():
        with sqlite3.connect(f"file:{tmp_path / 'sessions.db'}?mode=ro", uri=True,
                             timeout=5) as db:
            return db.execute("SELECT status FROM sessions WHERE id = 'stdio/idle'").fetchone()[0]

    assert status() == "live"
    deadline = time.monotonic() + 10
    while status() != "parked" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status() == "parked"
    assert value(call(server, "x + 1", "idle", id=2)) == "42"
    assert status() == "live"
    server.close()


def _stored(tmp_path, statement):
    with sqlite3.connect(f"file:{tmp_path / 'sessions.db'}?mode=ro", uri=True, timeout=5) as db:
        return db.execute(statement).fetchall()


def test_a_parked_session_past_its_ttl_expires_and_says_so(binary, tmp_path):
    """--session-ttl: a session parked and unused that long is expired by
    the server itself (no call needed): its snapshots and the pages only
    they used leave the store, its page file leaves the disk, and its next
    call is a session-error that says it expired.  A live session is
    spared however long it was idle."""
    server = Stdio(binary, "--store", store_url(tmp_path), "--session-ttl", "2")
    assert value(call(server, "x = 41", "old")) is None
    assert value(call(server, "y = 1", "kept", id=2)) is None
    kill(server)  # both parked by the next server's start
    assert len(_page_files(tmp_path)) == 2
    old_pages = {row[0] for row in _stored(
        tmp_path, "SELECT hash FROM snapshot_pages JOIN snapshots ON snapshots.id ="
                  " snapshot_pages.snapshot WHERE snapshots.session = 'stdio/old'")}
    server = Stdio(binary, "--store", store_url(tmp_path), "--session-ttl", "2")
    assert value(call(server, "y += 1", "kept", id=3)) is None  # live here from now on
    deadline = time.monotonic() + 20
    states = {}
    while time.monotonic() < deadline:
        states = dict(_stored(tmp_path, "SELECT id, status FROM sessions"))
        if states.get("stdio/old") == "expired":
            break
        time.sleep(0.2)
    time.sleep(2.5)  # "kept" past its own time too, but live
    states = dict(_stored(tmp_path, "SELECT id, status FROM sessions"))
    assert states == {"stdio/old": "expired", "stdio/kept": "live"}, states
    assert _stored(tmp_path, "SELECT COUNT(*) FROM snapshots WHERE session = 'stdio/old'") == [(0,)]
    # The pages only it used went with it, in the same transaction.
    named = {row[0] for row in _stored(tmp_path, "SELECT hash FROM snapshot_pages")}
    stored = {row[0] for row in _stored(tmp_path, "SELECT hash FROM blobs")}
    assert old_pages - named and not (old_pages - named) & stored
    assert len(_page_files(tmp_path)) == 1  # only "kept"'s
    result = call(server, "x", "old", id=4)["structuredContent"]
    assert result["capsule_status"] == "session-error" and "expired" in result["error"], result
    assert value(call(server, "y", "kept", id=5)) == "2"
    server.close()


def test_a_session_past_its_ttl_is_expired_at_its_next_call(binary, tmp_path):
    """A server restarted with a session already past its time: the call
    does not restore it, even before the expiry sweep has run."""
    server = Stdio(binary, "--store", store_url(tmp_path), "--session-ttl", "1")
    assert value(call(server, "x = 41", "old")) is None
    kill(server)  # parked by the next server's start (the dead node's sessions)
    time.sleep(1.5)
    server = Stdio(binary, "--store", store_url(tmp_path), "--session-ttl", "1")
    result = call(server, "x", "old", id=2)["structuredContent"]
    assert result["capsule_status"] == "session-error" and "expired" in result["error"], result
    server.close()


@pytest.mark.parametrize("option, message", [("--session-idle", b"--session-idle wants seconds"),
                                             ("--session-ttl", b"--session-ttl wants")])
def test_session_times_want_seconds(capsule, option, message):
    for bad in ("0", "-1", "soon"):
        completed = subprocess.run([str(capsule.binary), "serve", "--stdio", option, bad],
                                   capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        assert completed.returncode == 2 and message in completed.stderr


# --- capsule serve: kill -9 and restart -------------------------------------------------


def test_server_killed_while_idle_keeps_every_session(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, "import json\nx = 41\n_ = open('/work/a.txt', 'w').write('A')", "a")) \
        is None
    assert value(call(server, "y = 'b'", "b", id=2)) is None
    kill(server)

    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, "(x + 1, json.dumps({'k': 1}), open('/work/a.txt').read())",
                      "a")) == "[\n  42,\n  \"{\\\"k\\\": 1}\",\n  \"A\"\n]"
    assert value(call(server, "y", "b", id=2)) == "b"
    # The session's files are there for the file tools too, before any run.
    listing = tool(server, "list_files", id=3, session_id="a")
    assert "a.txt" in json.dumps(listing), listing
    server.close()


def test_server_killed_during_a_call_reports_it_interrupted(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, "x = 1", "s")) is None
    server.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "run_python_code",
        "arguments": {"python_code": "x = 2\nimport time\ntime.sleep(60)", "session_id": "s"}}})
    time.sleep(2)  # the call is running (x is 2 in the worker, not saved)
    kill(server)

    server = Stdio(binary, "--store", store_url(tmp_path))
    result = call(server, "x", "s", id=3)
    assert value(result) == "1", result  # as before the interrupted call
    notes = result["structuredContent"].get("notes", [])
    assert any("interrupted" in note for note in notes), result
    history = tool(server, "session_history", id=4, session_id="s")["structuredContent"]
    assert [c["status"] for c in history["calls"]] == ["success", "interrupted", "success"], history
    server.close()


def test_fork_session_copies_the_state_and_leaves_the_source(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, "items = [1, 2]", "source")) is None
    forked = tool(server, "fork_session", id=2, session_id="source")
    fork = forked["structuredContent"]["session_id"]
    assert value(call(server, "items.append(3); items", fork, id=3)) == "[\n  1,\n  2,\n  3\n]"
    assert value(call(server, "items", "source", id=4)) == "[\n  1,\n  2\n]"
    missing = tool(server, "fork_session", id=5, session_id="never-ran")
    assert missing.get("isError") and "no saved state" in json.dumps(missing), missing
    server.close()


def test_a_hundred_sessions_are_parked_and_resumed(binary, tmp_path):
    """Only 8 workers hold sessions (the default): the others are parked
    in the store and restored on their next call."""
    server = Stdio(binary, "--store", store_url(tmp_path))
    for i in range(100):
        assert value(call(server, f"n = {i} * 3\n_ = open('f', 'w').write(str(n))", f"s{i}", id=i)) \
            is None
    for i in range(100):
        assert value(call(server, "(n, open('f').read())", f"s{i}", id=1000 + i)) == \
            f"[\n  {i * 3},\n  \"{i * 3}\"\n]"
    server.close()


def test_close_session_deletes_it_from_the_store(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, "x = 1", "gone")) is None
    assert not tool(server, "close_session", id=2, session_id="gone").get("isError")
    assert _page_files(tmp_path) == []  # its memory leaves this node's disk too
    kill(server)
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, "'x' in globals()", "gone", id=3)) == "false"
    server.close()


# --- a damaged store gives a clear error and stays usable --------------------------------


def _damage(tmp_path, statement):
    database = sqlite3.connect(tmp_path / "sessions.db")
    with database:
        database.execute(statement)
    database.close()


def _latest_snapshot(session):
    return (f"(SELECT id FROM snapshots WHERE session = '{session}' "
            f"ORDER BY id DESC LIMIT 1)")


# Every memory page of the snapshot gets another blob's compressed bytes
# (valid zstd, the right size: only the hash check finds it).
_SWAP_PAGES = ("UPDATE blobs SET data = (SELECT other.data FROM blobs AS other WHERE "
               "other.raw_size = blobs.raw_size AND other.hash <> blobs.hash ORDER BY other.hash "
               "LIMIT 1) WHERE hash IN (SELECT hash FROM snapshot_pages WHERE page_index < 262144 "
               "AND snapshot = {snapshot})")


@pytest.mark.parametrize("damage, message", [
    # Its pages' bytes changed on disk: their hashes no longer match.
    ("UPDATE blobs SET data = zeroblob(length(data)) WHERE hash IN (SELECT hash FROM "
     "snapshot_pages WHERE snapshot = {snapshot})", "damaged"),
    # Its pages hold other pages' bytes: each decompresses, to the wrong page.
    (_SWAP_PAGES, "damaged"),
    ("UPDATE snapshots SET manifest = substr(manifest, 1, 10) WHERE id = {snapshot}",
     "manifest"),
    ("UPDATE snapshots SET build_id = 'another-build', manifest = replace(manifest, "
     "'\"build\":\"', '\"build\":\"0') WHERE id = {snapshot}", "another build"),
    ("DELETE FROM snapshot_pages WHERE snapshot = {snapshot} AND page_index = 900",
     "manifest"),
])
def test_a_damaged_snapshot_is_a_clear_session_error(binary, tmp_path, damage, message):
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, "x = 'precious'", "victim")) is None
    assert value(call(server, "y = 1", "bystander", id=2)) is None
    server.close()
    _forget_page_files(tmp_path)  # the restore reads the store, damage and all
    _damage(tmp_path, damage.format(snapshot=_latest_snapshot(_scoped(tmp_path, "victim"))))
    server = Stdio(binary, "--store", store_url(tmp_path))
    result = call(server, "x", "victim", id=3)["structuredContent"]
    assert result["capsule_status"] == "session-error", result
    assert message in result["error"], result
    # The store is still usable: a new session works.
    assert value(call(server, "z = 5\nz", "newcomer", id=4)) == "5"
    server.close()
    database = sqlite3.connect(tmp_path / "sessions.db")
    assert database.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    database.close()


# --- the node's page files (page_file.h) ---------------------------------------------------


def _page_files(tmp_path):
    directory = tmp_path / "sessions.db-pages"
    return sorted(p for p in directory.iterdir() if p.name != "lock")


def _forget_page_files(tmp_path):
    for path in _page_files(tmp_path):
        path.unlink()


HEAP = ("import hashlib\nheap = bytearray(b''.join(b'%08d' % i for i in range(400_000)))\n"
        "digest = hashlib.sha256(heap).hexdigest()")


def test_a_restore_on_the_same_node_maps_its_page_file(binary, tmp_path):
    """A restarted server restores a session from its page file, without
    reading the pages from the store: shown by damaging every stored page
    of the session after the file was written, and restoring it intact;
    without the file, the same restore reads the store and finds the
    damage."""
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, HEAP, "heap")) is None
    expected = value(call(server, "digest", "heap", id=2))
    server.close()
    files = _page_files(tmp_path)
    assert len(files) == 1 and files[0].stat().st_size > 3_000_000, files
    assert files[0].stat().st_mode & 0o777 == 0o600
    # Its memory's pages (the scratch files' pages, from 262144 on, are
    # always read from the store: they are not in the page file).
    _damage(tmp_path, "UPDATE blobs SET data = zeroblob(length(data)) WHERE hash IN (SELECT hash "
                      "FROM snapshot_pages WHERE page_index < 262144 AND snapshot = " +
                      _latest_snapshot(_scoped(tmp_path, "heap")) + ") AND hash NOT IN (SELECT "
                      "hash FROM snapshot_pages WHERE page_index >= 262144)")
    for round in range(2):  # the second restore maps the file the first call updated
        server = Stdio(binary, "--store", store_url(tmp_path))
        assert value(call(server, "hashlib.sha256(heap).hexdigest() == digest", "heap", id=3)) \
            == "true"
        assert value(call(server, "digest", "heap", id=4)) == expected
        server.close()
    _forget_page_files(tmp_path)
    server = Stdio(binary, "--store", store_url(tmp_path))
    result = call(server, "digest", "heap", id=5)["structuredContent"]
    assert result["capsule_status"] == "session-error" and "damaged" in result["error"], result
    server.close()


def test_a_large_restore_checks_every_page_against_its_hash(binary, tmp_path):
    """A restore of many pages checks their hashes on a thread of its own
    while the next are read (store_snapshot_read_wanted_pages): a page
    holding another page's bytes is still found, and is a clear error;
    the same restore, undamaged, gives the heap back intact."""
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, HEAP, "heap")) is None
    expected = value(call(server, "digest", "heap", id=2))
    server.close()
    _forget_page_files(tmp_path)
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, "hashlib.sha256(heap).hexdigest()", "heap", id=3)) == expected
    server.close()
    _forget_page_files(tmp_path)
    database = sqlite3.connect(tmp_path / "sessions.db")
    snapshot = _latest_snapshot(_scoped(tmp_path, "heap"))
    (pages,) = database.execute("SELECT COUNT(*) FROM snapshot_pages WHERE page_index < 262144 "
                                "AND snapshot = " + snapshot).fetchone()
    database.close()
    assert pages > 4 * 16, pages  # more than the batches checked inline
    # One page near the end (the last batches) swapped for another's bytes.
    _damage(tmp_path, "UPDATE blobs SET data = (SELECT other.data FROM blobs AS other WHERE "
                      "other.raw_size = blobs.raw_size AND other.hash <> blobs.hash LIMIT 1) "
                      "WHERE hash = (SELECT hash FROM snapshot_pages WHERE page_index < 262144 "
                      "AND snapshot = " + snapshot + " ORDER BY page_index DESC LIMIT 1 OFFSET 3)")
    server = Stdio(binary, "--store", store_url(tmp_path))
    result = call(server, "digest", "heap", id=4)["structuredContent"]
    assert result["capsule_status"] == "session-error" and "damaged" in result["error"], result
    assert value(call(server, "z = 5\nz", "newcomer", id=5)) == "5"
    server.close()


def test_a_stale_page_file_is_never_mapped(binary, tmp_path):
    """A page file sealed for an older snapshot (as one left by a node
    that lost the session to another, or by a crash between the commit and
    the file's update) is not used: the restore reads the store, and
    rewrites the file."""
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, HEAP + "\nstate = 'old'", "s")) is None
    server.close()
    (old,) = _page_files(tmp_path)
    saved = old.read_bytes()
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, "heap[:8] = b'CHANGED!'\nstate = 'new'", "s", id=2)) is None
    server.close()
    old.write_bytes(saved)  # sealed, for the snapshot before
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, "(state, bytes(heap[:8]))", "s", id=3)) == "('new', b'CHANGED!')"
    server.close()
    assert old.read_bytes() != saved  # rewritten by that restore
    # A file whose header was unsealed (a write under way) is not used either.
    data = bytearray(old.read_bytes())
    data[16] = 0
    old.write_bytes(bytes(data))
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, "state", "s", id=4)) == "new"
    server.close()


def test_page_files_are_bounded_by_the_store_quota(binary, tmp_path):
    """The page files use no more disk than the store's quota: past it the
    least recently written go, and their sessions restore from the store."""
    quota = 12 << 20
    server = Stdio(binary, "--store", store_url(tmp_path), "--store-quota", "12M")
    for i in range(12):  # ≈ 1.5 MiB of pages each that differ from the base
        assert value(call(server, f"import os\nblob = bytes([{i}]) * 1_500_000\nn = {i}",
                          f"s{i}", id=i)) is None
    server.close()
    files = _page_files(tmp_path)
    assert 0 < len(files) < 12, files
    assert sum(f.stat().st_blocks * 512 for f in files) <= quota
    server = Stdio(binary, "--store", store_url(tmp_path), "--store-quota", "12M")
    for i in range(12):
        assert value(call(server, "(n, len(blob), blob[-1])", f"s{i}", id=100 + i)) == \
            f"[\n  {i},\n  1500000,\n  {i}\n]"
    server.close()


def test_pages_written_after_a_page_file_restore_all_reach_the_store(binary, tmp_path):
    """After a restore from its page file a worker compares only the pages
    the guest wrote since (the others are still the file's, as its pagemap
    says); every page written in the later calls must reach the store all
    the same: a restore from the store alone then holds them all."""
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, HEAP, "s")) is None
    server.close()
    server = Stdio(binary, "--store", store_url(tmp_path))  # mapped from the page file
    for i, at in enumerate((0, 1_000_003, 2_500_000, 3_199_992)):
        assert value(call(server, f"heap[{at}:{at} + 8] = b'w%07d' % {i}\n"
                                  "digest = hashlib.sha256(heap).hexdigest()", "s", id=i)) is None
    assert value(call(server, "n = 1", "s", id=10)) is None  # writes no heap page
    expected = value(call(server, "digest", "s", id=11))
    server.close()
    _forget_page_files(tmp_path)
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert json.loads(value(call(server, "(hashlib.sha256(heap).hexdigest() == digest, digest, n)",
                                 "s", id=12))) == [True, expected, 1]
    server.close()


def test_a_worker_writes_only_its_own_copy_of_a_page_file(binary, tmp_path):
    """The worker maps the page file private, from a read-only descriptor:
    a guest that overwrites its whole heap and then dies leaves the file
    as it was, and the session restores to its state before that call."""
    server = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(server, HEAP, "s")) is None
    server.close()
    (path,) = _page_files(tmp_path)
    before = path.read_bytes()
    server = Stdio(binary, "--store", store_url(tmp_path))
    result = call(server, "heap[:] = b'X' * len(heap)\nimport os\nos._exit(3)", "s", id=2)
    assert result["structuredContent"]["capsule_status"] != "success", result
    assert path.read_bytes() == before
    assert value(call(server, "hashlib.sha256(heap).hexdigest() == digest", "s", id=3)) == "true"
    server.close()


def test_a_second_server_on_the_same_page_files_keeps_none(binary, tmp_path):
    """One process at a time uses a page-file directory: files mapped by
    one process's workers are written in place only by that process."""
    first = Stdio(binary, "--store", store_url(tmp_path))
    assert value(call(first, "a = 1", "a")) is None
    other = tmp_path / "other.db"
    # A second server whose store's page files would be the same directory.
    (tmp_path / "other.db-pages").symlink_to(tmp_path / "sessions.db-pages")
    second = Stdio(binary, "--store", f"sqlite:{other}")
    assert value(call(second, "b = 2\nb", "b")) == "2"
    second.close()
    # Its restores read the store into a page file in memory.
    second = Stdio(binary, "--store", f"sqlite:{other}")
    assert value(call(second, "b + 1", "b", id=2)) == "3"
    second.close()
    first.close()
    assert len(_page_files(tmp_path)) == 1  # only the first server's session


def test_a_restored_sessions_monotonic_clock_never_goes_back(binary, tmp_path):
    """After a reboot the host's monotonic clock starts again near zero;
    a session restored there continues from the clock its snapshot saw.
    Played here by moving the saved clock 1,000 s ahead of this boot's."""
    server = Stdio(binary, "--store", store_url(tmp_path))
    before = float(value(call(server, "import time\nt = time.monotonic()\nt", "clock")))
    server.close()
    ahead_us = int((time.monotonic() + 1000) * 1e6)
    database = sqlite3.connect(tmp_path / "sessions.db")
    with database:
        scoped = _scoped(tmp_path, "clock")
        [manifest] = database.execute(
            f"SELECT manifest FROM snapshots WHERE id = {_latest_snapshot(scoped)}").fetchone()
        saved = json.loads(manifest)
        assert saved["monotonic_us"] >= int(before * 1e6)  # the clock the call left
        saved["monotonic_us"] = ahead_us
        database.execute(f"UPDATE snapshots SET manifest = ? WHERE id = "
                         f"{_latest_snapshot(scoped)}", (json.dumps(saved),))
    database.close()
    server = Stdio(binary, "--store", store_url(tmp_path))
    after = float(value(call(server, "time.monotonic()", "clock", id=2)))
    assert after * 1e6 >= ahead_us
    assert after - time.monotonic() < 1100  # moved forward by the offset, not further
    # A fresh session keeps the host's clock.
    fresh = float(value(call(server, "import time\ntime.monotonic()", "fresh", id=3)))
    assert abs(fresh - time.monotonic()) < 60
    server.close()


def _scoped(tmp_path, name):
    """The store's id of session `name` of the stdio client (its principal
    prefixes the name: a session belongs to whoever created it)."""
    database = sqlite3.connect(tmp_path / "sessions.db")
    rows = [row[0] for row in database.execute("SELECT id FROM sessions")]
    database.close()
    matches = [row for row in rows if row.endswith("/" + name)]
    assert len(matches) == 1, rows
    return matches[0]


def test_the_store_quota_is_enforced_and_loses_nothing(capsule, tmp_path):
    store = ["--store", store_url(tmp_path), "--store-quota", "12M"]
    assert capsule.json("x = 'small'", *store, "--session", "small")["status"] == "success"
    # 20 MB that do not compress cannot fit: the call's state is not saved,
    # the session stays as it was, and the other session is untouched.
    big = capsule.json("import os\nb = os.urandom(20_000_000)\nmarker = 1", *store,
                       "--session", "big")
    assert big["status"] == "session-error" and "quota" in big["error"], big
    assert capsule.json("'marker' in globals()", *store, "--session", "big")["return_value"] \
        == "False"
    assert capsule.json("x", *store, "--session", "small")["return_value"] == "'small'"


def test_open_files_are_reopened_and_their_descriptors_kept(capsule, tmp_path):
    """A file object kept across calls goes on writing where it was after a
    restore; no later open() takes its descriptor; one whose file is gone
    fails with EBADF instead of writing somewhere else."""
    session = ["--store", store_url(tmp_path), "--session", "files"]
    assert capsule.json("f = open('/work/log.txt', 'w')\nf.write('a'); f.flush()\n"
                        "g = open('/work/gone.txt', 'w')", *session)["status"] == "success"
    assert capsule.json("import os\nos.unlink('/work/gone.txt')", *session)["status"] == "success"
    result = capsule.json("f.write('b'); f.flush()\nh = open('/work/new.txt', 'w')\n"
                          "other = h.fileno(); h.write('n'); h.close()\n"
                          "(open('/work/log.txt').read(), open('/work/new.txt').read(), "
                          "f.fileno() != other)", *session)
    assert result["return_value"] == "('ab', 'n', True)", result
    gone = capsule.json("g.write('x'); g.flush()", *session)
    assert gone["status"] == "run-error" and "Bad file descriptor" in gone["error"], gone


# --- the same on PostgreSQL (make test starts a throwaway server) -------------------------

POSTGRES = os.environ.get("CAPSULE_TEST_POSTGRES")
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="no CAPSULE_TEST_POSTGRES server "
                                    "(make test runs this file under tests/store/with-postgres.sh)")


def _postgres_session(name):
    """A session name no earlier run used: the server outlives one test."""
    return f"{name}-{os.getpid()}-{time.monotonic_ns()}"


@needs_postgres
def test_postgres_session_carries_state_across_processes(capsule):
    session = ["--store", POSTGRES, "--session", _postgres_session("cli")]
    assert capsule.json("import json\nx = 41\n_ = open('/work/a', 'w').write('A')",
                        *session)["status"] == "success"
    again = capsule.json("(x + 1, json.dumps(1), open('/work/a').read())", *session)
    assert again["return_value"] == "(42, '1', 'A')", again


@needs_postgres
def test_postgres_server_restart_and_a_dead_nodes_lease(binary):
    name = _postgres_session("served")
    server = Stdio(binary, "--store", POSTGRES)
    assert value(call(server, "x = 1", name)) is None
    server.close()  # a clean stop gives the lease up: any node continues at once
    server = Stdio(binary, "--store", POSTGRES)
    assert value(call(server, "x + 1", name, id=2)) == "2"
    kill(server)  # a killed node keeps its lease until it expires (30 s)
    # Another node asks it to park and waits at most its own lease (1 s):
    # a dead node does not answer, and its lease holds longer.
    server = Stdio(binary, "--store", POSTGRES, "--store-lease", "1")
    held = call(server, "x", name, id=3)["structuredContent"]
    assert held["capsule_status"] == "session-error" and "busy on node" in held["error"], held
    server.close()


@needs_postgres
def test_postgres_a_live_servers_lease_is_renewed(binary):
    """A server renews its lease while it lives: another server sharing the
    store cannot take its session as a dead node's, even long after one
    lease; while the holder is busy in a call it cannot have it at all (it
    asks the holder to park, which it does after the call)."""
    name = _postgres_session("renewed")
    holder = Stdio(binary, "--store", POSTGRES, "--store-lease", "1")
    assert value(call(holder, "x = 'mine'", name)) is None
    time.sleep(3.5)  # three and a half leases
    holder.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "run_python_code",
        "arguments": {"python_code": "import time\ntime.sleep(4)", "session_id": name}}})
    time.sleep(0.5)
    other = Stdio(binary, "--store", POSTGRES, "--store-lease", "1")
    taken = call(other, "x", name, id=3)["structuredContent"]
    assert taken["capsule_status"] == "session-error" and "busy on node" in taken["error"], taken
    other.close()
    assert holder.receive()["result"]["structuredContent"]["capsule_status"] == "success"
    assert value(call(holder, "x", name, id=4)) == "mine"
    holder.close()


def test_a_restored_session_has_its_packages_mounted_again(capsule, tmp_path):
    """Packages installed for a session come back with it: a module of
    theirs not imported before the restore can be imported after it."""
    session = ["--store", store_url(tmp_path), "--session", "packages",
               "--site-packages", "/usr/lib/python3/dist-packages",
               "--package-cache", str(tmp_path / "cache")]
    first = capsule.json("import markdown", *session)
    assert first["status"] == "success" and first["dependencies"], first
    again = capsule.json("import markdown.extensions.tables\n"
                         "markdown.markdown('| a |\\n|---|\\n| b |', extensions=['tables'])",
                         *session)
    assert again["status"] == "success" and "<td>b</td>" in again["return_value"], again


def test_a_call_whose_state_cannot_be_saved_is_recorded_as_it_ended(binary, tmp_path):
    """The session-error a client got for an unsaved state is the call's
    stored outcome: not left `running` (which would block a retry of its
    idempotency key until a restart)."""
    server = Stdio(binary, "--store", store_url(tmp_path), "--store-quota", "12M")
    assert value(call(server, "x = 1", "s")) is None
    failed = call(server, "import os\nb = os.urandom(20_000_000)", "s", id=2,
                  idempotency_key="k")["structuredContent"]
    assert failed["capsule_status"] == "session-error" and "quota" in failed["error"], failed
    history = tool(server, "session_history", id=3, session_id="s")["structuredContent"]
    assert [c["status"] for c in history["calls"]] == ["success", "session-error"], history
    # The key's stored outcome is replayed, not "still running".
    again = call(server, "import os\nb = os.urandom(20_000_000)", "s", id=4,
                 idempotency_key="k")["structuredContent"]
    assert again["capsule_status"] == "session-error" and "quota" in again["error"], again
    server.close()
