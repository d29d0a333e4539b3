"""Many nodes on one PostgreSQL (docs/scale-out.md): sessions that move
between live nodes (the owner is asked to park), three nodes where one dies
after another, a dead node's job finished elsewhere, two nodes racing for
one expired lease, and the faults: PostgreSQL restarted under a serving
node, unreachable at start, and a full disk under an SQLite store.

Everything is real: `capsule serve` processes, a throwaway PostgreSQL
server (run this file under tests/store/with-postgres.sh), a tmpfs for the
full disk.  Guest code runs only inside capsule; the host only reads the
store (psql, sqlite3) and a mounted directory.
"""
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from test_mcp import Stdio
from test_jobs import APPEND_THEN_WAIT, submit, wait_for, wait_for_file

POSTGRES = os.environ.get("CAPSULE_TEST_POSTGRES")
POSTGRES_DIR = os.environ.get("CAPSULE_TEST_POSTGRES_DIR")
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="no CAPSULE_TEST_POSTGRES server "
                                    "(run this file under tests/store/with-postgres.sh)")
ROOT = Path(__file__).resolve().parents[2]
LEASE = 2.0  # seconds: short, so that a dead node's sessions move quickly


def call(server, code, session, id=1, **arguments):
    response = server.request("tools/call", {
        "name": "run_python_code",
        "arguments": {"python_code": code, "session_id": session, **arguments}}, id)
    return response["result"]


def value(result):
    """The call's return value: a str as it is, anything else decoded (the
    MCP server sends it as JSON)."""
    assert not result.get("isError"), result
    returned = result["structuredContent"]["return_value"]
    try:
        return None if returned is None else json.loads(returned)
    except json.JSONDecodeError:
        return returned


def history(server, session, id=90):
    result = server.request("tools/call", {"name": "session_history",
                                           "arguments": {"session_id": session}}, id)["result"]
    assert not result.get("isError"), result
    return result["structuredContent"]


def name(prefix):
    """A session name no earlier run used: the database outlives one test."""
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"


def node(binary, *args):
    return Stdio(binary, "--store", POSTGRES, "--store-lease", str(LEASE), *args)


def patient_node(binary):
    """A node whose lease outlasts a database restart: the fault tests are
    about reconnecting; a node cut off past its lease loses its sessions
    and running calls (docs/store.md), tested in tests/unit/test_store.c."""
    return Stdio(binary, "--store", POSTGRES, "--store-lease", "15")


def kill(server):
    server.process.kill()
    server.process.wait(timeout=30)


DATABASE = "capsule"  # the test's own (own_database), in the server with-postgres.sh started


def sql(query, database=None):
    """One value from the test's database, read with psql as its owner."""
    psql = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1]
    prefix = [] if os.getuid() else ["runuser", "-u", "capsule-test", "--"]
    out = subprocess.run([*prefix, str(psql), "-X", "-A", "-t", "-h", POSTGRES_DIR, "-U", "capsule",
                          "-d", database or DATABASE, "-c", query], capture_output=True, text=True,
                         timeout=30, check=True)
    return out.stdout.strip()


@pytest.fixture(autouse=True)
def own_database():
    """Each test gets a database of its own in the shared server: the nodes'
    job runners claim every due job of their database, and the jobs earlier
    tests left there (test_jobs.py's and this file's: sleeping, retrying,
    waiting for events) would run before, or instead of, this test's."""
    global POSTGRES, DATABASE
    if not POSTGRES:
        yield
        return
    shared_url, shared_database = POSTGRES, DATABASE
    DATABASE = f"scale_out_{os.getpid()}_{time.monotonic_ns()}"
    sql(f"CREATE DATABASE {DATABASE}", database=shared_database)
    POSTGRES = shared_url.replace(f"/{shared_database}?", f"/{DATABASE}?", 1)
    assert POSTGRES != shared_url, shared_url
    try:
        yield
    finally:
        POSTGRES, DATABASE = shared_url, shared_database


def owner(session):
    """The node holding `session` live ("" when parked).  The MCP server
    keeps a stdio client's sessions under "stdio/"."""
    return sql(f"SELECT COALESCE(owner, '') FROM sessions WHERE id = 'stdio/{session}'")


def epoch(session):
    return int(sql(f"SELECT epoch FROM sessions WHERE id = 'stdio/{session}'"))


# --- 1. a live owner is asked to park ---------------------------------------------------


@needs_postgres
def test_a_session_moves_to_another_live_node_and_back(binary):
    one, two = node(binary), node(binary)
    session = name("moves")
    assert value(call(one, "x = 41\n_ = open('/work/f', 'w').write('kept')", session)) is None
    first = owner(session)
    assert first
    started = time.monotonic()
    assert value(call(two, "(x + 1, open('/work/f').read())", session, id=2)) == [42, "kept"]
    assert time.monotonic() - started < LEASE + 1  # asked and parked, not waited out
    second = owner(session)
    assert second and second != first  # node 1 no longer holds it
    assert value(call(one, "x += 10\nx", session, id=3)) == 51  # and back
    assert owner(session) == first
    assert value(call(two, "x", session, id=4)) == 51
    one.close()
    two.close()


def descendants(pid):
    """The processes below `pid` (its zygotes and workers), read from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@needs_postgres
def test_a_session_parked_for_another_node_frees_its_worker_on_an_idle_node(binary):
    """The node asked to park an idle session stops the session's worker by
    itself (the server tidies idle sandboxes), not at its next call, which
    may never come."""
    one, two = node(binary), node(binary)
    session = name("frees")
    assert value(call(one, "x = 1", session)) is None
    time.sleep(1.5)  # the pool has refilled
    before = descendants(one.process.pid)
    time.sleep(1.5)
    assert descendants(one.process.pid) >= before  # nothing ends by itself meanwhile
    assert value(call(two, "x + 1", session, id=2)) == 2
    deadline = time.monotonic() + 5
    while not before - descendants(one.process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert before - descendants(one.process.pid), "the parked session's worker still runs"
    assert value(call(one, "x", session, id=3)) == 1  # and it comes back from the store
    one.close()
    two.close()


@needs_postgres
def test_two_nodes_alternating_keep_one_history(binary):
    one, two = node(binary), node(binary)
    session = name("alternate")
    assert value(call(one, "seen = []", session)) is None
    for i in range(10):
        server = (two, one)[i % 2]
        assert value(call(server, f"seen.append({i})\nlen(seen)", session, id=10 + i)) == i + 1
    assert value(call(one, "seen", session, id=30)) == list(range(10))
    calls = history(two, session)["calls"]
    assert [c["seq"] for c in calls] == list(range(1, 13)), calls
    assert all(c["status"] == "success" for c in calls), calls
    one.close()
    two.close()


@needs_postgres
def test_a_session_busy_in_a_call_moves_after_the_call(binary):
    one, two = node(binary), Stdio(binary, "--store", POSTGRES)  # two waits its 30 s lease
    session = name("busy")
    assert value(call(one, "x = 1", session)) is None
    first = owner(session)
    one.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "run_python_code",
        "arguments": {"python_code": "import time\ntime.sleep(3)\nx = 2", "session_id": session}}})
    time.sleep(1)  # the long call is running on node 1
    started = time.monotonic()
    assert value(call(two, "x", session, id=3)) == 2  # the state the long call left
    assert 1 <= time.monotonic() - started < 10
    assert one.receive()["result"]["structuredContent"]["capsule_status"] == "success"
    assert owner(session) not in ("", first)
    one.close()
    two.close()


@needs_postgres
def test_an_owner_that_does_not_park_in_time_is_a_clear_error(binary):
    one, two = node(binary), node(binary)  # two waits at most LEASE seconds
    session = name("too-busy")
    assert value(call(one, "x = 1", session)) is None
    first = owner(session)
    one.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "run_python_code",
        "arguments": {"python_code": "import time\ntime.sleep(6)\nx = 2", "session_id": session}}})
    time.sleep(1)
    started = time.monotonic()
    refused = call(two, "x", session, id=3)["structuredContent"]
    assert refused["capsule_status"] == "session-error", refused
    assert "session is busy on node" in refused["error"] or "is busy on node" in refused["error"]
    assert first in refused["error"], refused
    assert time.monotonic() - started < LEASE + 2
    assert one.receive()["result"]["structuredContent"]["capsule_status"] == "success"
    # Asked, it parks after the call: the next try moves it.
    assert value(call(two, "x", session, id=4)) == 2
    one.close()
    two.close()


# --- 2. three nodes ----------------------------------------------------------------------


@needs_postgres
def test_three_nodes_a_session_outlives_two_dead_nodes(binary):
    nodes = [node(binary) for _ in range(3)]
    session = name("three")
    assert value(call(nodes[0], "trail = ['one']", session)) is None
    owners = [owner(session)]
    for dead, alive in ((0, 1), (1, 2)):
        if dead:
            assert value(call(nodes[dead], f"trail.append('{dead + 1}')", session, id=5)) is None
        kill(nodes[dead])
        started = time.monotonic()
        got = value(call(nodes[alive], "len(trail)", session, id=10 + alive))
        took = time.monotonic() - started
        assert got == 1 + dead, got
        assert took <= LEASE + 1, f"resumed after {took:.2f} s (lease {LEASE} s)"
        owners.append(owner(session))
    assert len(set(owners)) == 3 and "" not in owners, owners
    nodes[2].close()


@needs_postgres
def test_three_nodes_a_dead_nodes_job_runs_its_steps_once(binary, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    args = ["--mount", f"{data}:/data:rw"]
    first = node(binary, *args)
    job = submit(first, APPEND_THEN_WAIT)
    wait_for_file(data / "log.txt", 1)
    others = [node(binary, *args) for _ in range(2)]  # started after the first claimed it
    kill(first)
    done = wait_for(others[0], job["job_id"], {"succeeded", "dead"})
    assert done["status"] == "succeeded", done
    assert done["result"]["return_value"] == "appended once"
    assert (data / "log.txt").read_text() == "step one\n"  # the step ran once
    for server in others:
        server.close()


@needs_postgres
def test_two_nodes_racing_for_one_expired_lease_exactly_one_wins(binary):
    first, two, three = node(binary), node(binary), node(binary)
    session = name("race")
    assert value(call(first, "n = 0", session)) is None
    before = epoch(session)
    kill(first)
    # Both ask at once; the winner holds the session longer than the
    # loser waits (its lease), so the loser is refused, not served after.
    results = {}
    code = "n += 1\nimport time\ntime.sleep(4)\nn"

    def race(server, key):
        results[key] = call(server, code, session, id=7)["structuredContent"]

    threads = [threading.Thread(target=race, args=(s, k)) for s, k in ((two, 2), (three, 3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    statuses = sorted(r["capsule_status"] for r in results.values())
    assert statuses == ["session-error", "success"], results
    winner = two if results[2]["capsule_status"] == "success" else three
    loser = [r for r in results.values() if r["capsule_status"] != "success"][0]
    assert "busy on node" in loser["error"] and owner(session) in loser["error"], loser
    assert [r["return_value"] for r in results.values() if r["capsule_status"] == "success"] == \
        ["1"]
    assert epoch(session) == before + 1  # claimed once
    assert value(call(winner, "n", session, id=8)) == 1  # incremented once
    two.close()
    three.close()


# --- 3. faults ---------------------------------------------------------------------------


def restart_postgres(mode="fast"):
    subprocess.run(["sh", str(ROOT / "tests/store/postgres-server.sh"), "restart", POSTGRES_DIR,
                    mode], check=True, timeout=120)


def postgres_ctl(action):
    """Stops (immediately, as a crash would) or starts the test server
    without removing its directory, for an outage longer than a restart."""
    pg_ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
    prefix = [] if os.getuid() else ["runuser", "-u", "capsule-test", "--"]
    data = os.path.join(POSTGRES_DIR, "data")
    extra = ["-m", "immediate"] if action == "stop" else ["-l", os.path.join(POSTGRES_DIR,
                                                                              "server.log")]
    subprocess.run([*prefix, str(pg_ctl), "-D", data, *extra, "-w", "-t", "45", action],
                   check=True, timeout=60, stdout=subprocess.DEVNULL, cwd=POSTGRES_DIR)


@needs_postgres
def test_postgres_down_when_a_call_commits(binary):
    """The call's state cannot be saved: a clear session-error; once the
    database is back the session continues from its last committed state
    on the same node (which could not record the session parked, and must
    not take it for live in another of its sandboxes).  The lease outlasts
    the outage: a longer one is a lost lease (docs/store.md)."""
    server = patient_node(binary)
    session = name("down")
    assert value(call(server, "x = 1", session)) is None
    server.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "run_python_code",
        "arguments": {"python_code": "import time\ntime.sleep(1.5)\nx = 2", "session_id": session}}})
    time.sleep(0.5)
    postgres_ctl("stop")
    try:
        outcome = server.receive()["result"]["structuredContent"]
    finally:
        postgres_ctl("start")
    assert outcome["capsule_status"] == "session-error", outcome
    assert "could not be saved" in outcome["error"], outcome
    assert value(call(server, "x", session, id=3)) == 1
    assert value(call(server, "x = 3\nx", session, id=4)) == 3
    server.close()


@needs_postgres
def test_a_job_whose_end_meets_postgres_down_is_recorded_when_it_is_back(binary):
    server = patient_node(binary)
    job = submit(server, "import time\ntime.sleep(1.5)\n'done'")
    time.sleep(0.5)
    postgres_ctl("stop")
    time.sleep(3)  # the attempt ends meanwhile
    postgres_ctl("start")
    done = wait_for(server, job["job_id"], {"succeeded", "dead"}, timeout=60)
    assert done["status"] == "succeeded" and done["attempts"] == 1, done
    server.close()


@needs_postgres
def test_postgres_restarted_while_a_node_is_idle(binary):
    server = patient_node(binary)
    session = name("restart-idle")
    assert value(call(server, "x = 'before'", session)) is None
    restart_postgres()
    # The first call after the restart reconnects (PQreset): nothing lost.
    assert value(call(server, "x", session, id=2)) == "before"
    assert value(call(server, "x = 'after'\nx", session, id=3)) == "after"
    calls = history(server, session)["calls"]
    assert [c["status"] for c in calls] == ["success"] * 3, calls
    server.close()


@needs_postgres
def test_postgres_restarted_during_a_call(binary):
    server = patient_node(binary)
    session = name("restart-call")
    assert value(call(server, "x = 1", session)) is None
    server.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "run_python_code",
        "arguments": {"python_code": "import time\ntime.sleep(2)\nx = 2\nx",
                      "session_id": session}}})
    time.sleep(0.5)
    restart_postgres("immediate")  # the call's connection dies under it
    outcome = server.receive()["result"]["structuredContent"]
    # Either committed after a reconnect, or a clear session-error.
    assert outcome["capsule_status"] in ("success", "session-error"), outcome
    if outcome["capsule_status"] == "session-error":
        assert "store" in outcome["error"] or "saved" in outcome["error"], outcome
    expected = 2 if outcome["capsule_status"] == "success" else 1
    assert value(call(server, "x", session, id=3)) == expected  # no committed result lost
    server.close()


@needs_postgres
def test_a_job_running_when_postgres_restarts_is_finished(binary, tmp_path):
    server = patient_node(binary)
    job = submit(server, "import time\ntime.sleep(2)\n'done'", max_attempts=5, backoff=0.2)
    time.sleep(0.7)
    restart_postgres("immediate")
    done = wait_for(server, job["job_id"], {"succeeded", "dead"}, timeout=90)
    assert done["status"] == "succeeded", done
    assert done["result"]["return_value"] == "done"
    server.close()


@needs_postgres
def test_postgres_unreachable_at_start_is_a_clear_error(binary, tmp_path):
    dead = f"postgresql://capsule@/capsule?host={tmp_path}"  # no server on that socket
    started = time.monotonic()
    process = subprocess.run([str(binary), "serve", "--stdio", "--store", dead],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert process.returncode != 0
    assert "store" in process.stderr and ("connect" in process.stderr or "server" in
                                          process.stderr), process.stderr
    assert time.monotonic() - started < 30


@needs_postgres
def test_a_full_disk_under_postgresql_is_a_session_error_and_no_corruption(binary):
    """The test's database in a tablespace on a 16 MiB tmpfs (the WAL stays
    on the server's own disk, as a real deployment's might not; a full WAL
    disk stops PostgreSQL itself, which the restart tests cover)."""
    if os.getuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    # Inside the server's directory: its user must reach the tablespace.
    disk = Path(POSTGRES_DIR) / f"full-{os.getpid()}-{time.monotonic_ns()}"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs",
                              str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    space = disk.name.replace("-", "_")
    server = None
    try:
        shutil.chown(disk, "capsule-test")
        sql(f"CREATE TABLESPACE {space} LOCATION '{disk}'")
        sql(f"CREATE DATABASE {space} TABLESPACE {space}")
        url = POSTGRES.replace(f"/{DATABASE}?", f"/{space}?", 1)
        server = Stdio(binary, "--store", url, "--store-lease", str(LEASE))
        assert value(call(server, "kept = 'small'", "early")) is None
        # Random bytes do not compress: this state cannot fit.
        full = call(server, "import os\nbig = os.urandom(12_000_000)", "big", id=2)
        full = full["structuredContent"]
        assert full["capsule_status"] == "session-error", full
        assert "space" in full["error"] or "disk" in full["error"], full
        # The node still answers (a call whose state cannot be saved either
        # says so, and the session goes on from its last saved state).
        after = call(server, "kept", "early", id=3)["structuredContent"]
        assert after["capsule_status"] in ("success", "session-error"), after
        server.close()
        server = None
        subprocess.run(["mount", "-o", "remount,size=128m", str(disk)], check=True)  # room again
        server = Stdio(binary, "--store", url, "--store-lease", str(LEASE))
        assert value(call(server, "kept", "early", id=4)) == "small"
        assert value(call(server, "'big' in globals()", "big", id=5)) is False  # state before
        assert value(call(server, "big = b'now it fits'\nlen(big)", "big", id=6)) == 11
        server.close()
        server = None
    finally:
        if server:
            kill(server)
        sql(f"DROP DATABASE IF EXISTS {space} WITH (FORCE)")
        sql(f"DROP TABLESPACE IF EXISTS {space}")
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_under_sqlite_is_a_session_error_and_no_corruption(binary, tmp_path):
    if os.getuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        url = f"sqlite:{disk / 'store.db'}"
        server = Stdio(binary, "--store", url)
        assert value(call(server, "kept = 'small'", "early")) is None
        # Random bytes do not compress: this state cannot fit in 4 MiB.
        full = call(server, "import os\nbig = os.urandom(6_000_000)", "big", id=2)
        full = full["structuredContent"]
        assert full["capsule_status"] == "session-error", full
        assert "disk" in full["error"] or "full" in full["error"], full
        server.close()
        with sqlite3.connect(disk / "store.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # room again
        server = Stdio(binary, "--store", url)
        assert value(call(server, "kept", "early", id=4)) == "small"
        assert value(call(server, "'big' in globals()", "big", id=5)) is False  # state before
        server.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
