"""Durable jobs (docs/scale-out.md, "Jobs"): code run to completion in the
background by `capsule serve`'s job runner, retried, parked by sleeps and
event waits, surviving a server killed with SIGKILL.

The store is real SQLite in a temporary directory (and, under
tests/store/with-postgres.sh, a real PostgreSQL server shared by two
servers); the servers are real processes.  Guest code runs only inside
capsule; the host only reads the mounted directory a step appends to.
"""
import collections
import http.server
import json
import os
import subprocess
import threading
import time

import pytest

from test_mcp import HttpServer, Stdio, _environment
from test_mcp_2026 import stateless_post

POSTGRES = os.environ.get("CAPSULE_TEST_POSTGRES")
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="no CAPSULE_TEST_POSTGRES server "
                                    "(run this file under tests/store/with-postgres.sh)")


def store_url(tmp_path):
    return f"sqlite:{tmp_path / 'jobs.db'}"


def tool(server, tool_name, id=1, /, **arguments):
    return server.request("tools/call", {"name": tool_name, "arguments": arguments}, id)["result"]


def submit(server, code, id=1, **arguments):
    result = tool(server, "submit_job", id, code=code, **arguments)
    assert not result.get("isError"), result
    return result["structuredContent"]


def get(server, job_id, id=2):
    result = tool(server, "get_job", id, job_id=job_id)
    assert not result.get("isError"), result
    return result["structuredContent"]


def wait_for(server, job_id, statuses, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        job = get(server, job_id)
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def wait_for_file(path, lines, timeout=60):
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().count("\n") >= lines):
        assert time.monotonic() < deadline, path
        time.sleep(0.05)


# The job appends a line to a mounted host file in its first step, then
# takes a while: a crash after the step must not append again.
APPEND_THEN_WAIT = """
import capsule, time
def append():
    with open('/data/log.txt', 'a') as f:
        f.write('step one\\n')
    return 'appended'
first = capsule.step('append', append)
time.sleep(3)
first + ' once'
"""


def test_a_job_runs_to_completion_and_its_result_is_read_back(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path))
    job = submit(server, "import capsule\ncapsule.step('half', lambda: 21) * 2")
    assert job["status"] in ("queued", "running", "succeeded") and len(job["job_id"]) == 32
    done = wait_for(server, job["job_id"], {"succeeded", "dead"})
    assert done["status"] == "succeeded", done
    assert done["result"]["return_value"] == "42"
    assert done["attempts"] == 1 and done["node"] is None
    listed = tool(server, "list_jobs", 3)["structuredContent"]["jobs"]
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    server.close()


def test_a_step_runs_exactly_once_across_a_crash(binary, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    args = ["--store", store_url(tmp_path), "--mount", f"{data}:/data:rw"]
    server = Stdio(binary, *args)
    job = submit(server, APPEND_THEN_WAIT)
    wait_for_file(data / "log.txt", 1)
    running = get(server, job["job_id"])
    assert running["status"] == "running" and running["node"], running
    server.process.kill()  # mid-job, after step one committed
    server.process.wait(timeout=30)

    server = Stdio(binary, *args)
    done = wait_for(server, job["job_id"], {"succeeded", "dead"})
    assert done["status"] == "succeeded", done
    assert done["result"]["return_value"] == "appended once"
    assert done["attempts"] == 2 and "cut off" in (done["last_error"] or ""), done
    assert (data / "log.txt").read_text() == "step one\n"  # the step did not run again
    server.close()


def test_sleep_parks_the_job_and_it_wakes(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path))
    started = time.time()
    job = submit(server, "import capsule, time\n"
                         "before = capsule.step('t', time.time)\n"
                         "capsule.sleep(2)\n"
                         "round(time.time() - before, 1)")
    assert wait_for(server, job["job_id"], {"sleeping"})["status"] == "sleeping"
    done = wait_for(server, job["job_id"], {"succeeded", "dead"})
    assert done["status"] == "succeeded", done
    assert float(done["result"]["return_value"]) >= 2.0
    assert time.time() - started >= 2.0
    assert done["attempts"] == 1  # a sleep is not a failed attempt
    server.close()


def test_an_event_wakes_a_waiting_job_and_a_wait_can_time_out(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path))
    job = submit(server, "import capsule\n"
                         "try:\n"
                         "    capsule.await_event('never', timeout=0.5)\n"
                         "    late = 'no timeout'\n"
                         "except TimeoutError:\n"
                         "    late = 'timed out'\n"
                         "[late, capsule.await_event('go')]")
    deadline = time.monotonic() + 30
    while get(server, job["job_id"]).get("waiting_for") != "go":
        assert time.monotonic() < deadline, get(server, job["job_id"])
        time.sleep(0.1)
    emitted = tool(server, "emit_event", 5, name="go", payload={"n": 5})
    assert emitted["structuredContent"]["woken"] == 1, emitted
    done = wait_for(server, job["job_id"], {"succeeded", "dead"})
    assert done["status"] == "succeeded", done
    assert json.loads(done["result"]["return_value"]) == ["timed out", {"n": 5}]
    server.close()


def test_cancel_a_parked_job_at_once_and_a_running_one_at_its_next_step(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path))
    parked = submit(server, "import capsule\ncapsule.sleep(600)\n'never'")
    wait_for(server, parked["job_id"], {"sleeping"})
    cancelled = tool(server, "cancel_job", 3, job_id=parked["job_id"])["structuredContent"]
    assert cancelled["status"] == "cancelled", cancelled

    running = submit(server, "import capsule, time\n"
                             "for i in range(300):\n"
                             "    capsule.step(f's{i}', time.sleep, 0.1)\n"
                             "'finished'", id=4)
    wait_for(server, running["job_id"], {"running"})
    time.sleep(0.5)
    marked = tool(server, "cancel_job", 5, job_id=running["job_id"])["structuredContent"]
    assert marked["cancel_requested"] is True, marked
    done = wait_for(server, running["job_id"], {"cancelled", "succeeded", "dead"}, timeout=20)
    assert done["status"] == "cancelled" and done["result"] is None, done
    # An ended job cannot be cancelled again.
    again = tool(server, "cancel_job", 6, job_id=running["job_id"])
    assert again["isError"] and "ended" in again["content"][0]["text"], again
    server.close()


def test_failures_are_retried_with_backoff_then_dead(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path))
    started = time.monotonic()
    job = submit(server, "raise ValueError('boom')", max_attempts=3, backoff=0.5)
    failed = wait_for(server, job["job_id"], {"failed", "dead"})
    assert failed["status"] == "failed" and failed["run_after_ms"] > failed["updated_at_ms"]
    done = wait_for(server, job["job_id"], {"dead", "succeeded"})
    assert done["status"] == "dead", done
    assert done["attempts"] == 3 and "boom" in done["last_error"], done
    assert time.monotonic() - started >= 1.5  # 0.5 s, then 1 s
    server.close()


def test_an_idempotency_key_returns_the_same_job(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path))
    first = submit(server, "1 + 1", idempotency_key="nightly-report")
    again = submit(server, "1 + 1", id=2, idempotency_key="nightly-report")
    assert again["job_id"] == first["job_id"]
    other = tool(server, "submit_job", 3, code="2 + 2", idempotency_key="nightly-report")
    assert other["isError"] and "other code" in other["content"][0]["text"], other
    assert len(tool(server, "list_jobs", 4)["structuredContent"]["jobs"]) == 1
    server.close()


def test_job_api_outside_a_job_is_a_clear_error(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path))
    result = server.request("tools/call", {"name": "run_python_code", "arguments": {
        "python_code": "import capsule\nout = []\n"
                       "for call in (lambda: capsule.step('a', int), lambda: capsule.sleep(1),\n"
                       "             lambda: capsule.await_event('e')):\n"
                       "    try:\n        call()\n"
                       "    except RuntimeError as e:\n        out.append('inside a job' in str(e))\n"
                       "out"}})["result"]
    assert result["structuredContent"]["return_value"] == "[\n  true,\n  true,\n  true\n]", result
    server.close()


def test_another_principal_cannot_get_or_cancel_your_job(binary, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("token-alice\ntoken-bob\n")
    server = HttpServer(binary, "--workers", "1", "--store", store_url(tmp_path),
                        "--token-file", str(tokens), token="token-alice")
    try:
        _, body = stateless_post(server, "tools/call", {"name": "submit_job", "arguments": {
            "code": "import capsule\ncapsule.sleep(600)"}})
        job_id = body["result"]["structuredContent"]["job_id"]
        server.token = "token-bob"
        for name in ("get_job", "cancel_job"):
            _, body = stateless_post(server, "tools/call", {"name": name, "arguments": {
                "job_id": job_id}})
            assert body["result"]["isError"] is True, body
            assert "no job" in body["result"]["content"][0]["text"]
        _, body = stateless_post(server, "tools/call", {"name": "list_jobs", "arguments": {}})
        assert body["result"]["structuredContent"]["jobs"] == []
        server.token = "token-alice"
        _, body = stateless_post(server, "tools/call", {"name": "get_job", "arguments": {
            "job_id": job_id}})
        assert body["result"]["isError"] is False, body
        _, body = stateless_post(server, "tools/call", {"name": "cancel_job", "arguments": {
            "job_id": job_id}})
        assert body["result"]["structuredContent"]["status"] in ("cancelled", "running"), body
    finally:
        server.stop()


def test_a_queue_limit_keeps_its_jobs_apart_while_others_run_together(binary, tmp_path):
    server = Stdio(binary, "--store", store_url(tmp_path), "--job-runners", "2",
                   "--job-queue-limit", "one=1")
    code = ("import capsule, time\n"
            "start = capsule.step('start', time.time)\n"
            "time.sleep(1.5)\n"
            "[start, capsule.step('end', time.time)]")
    spans = {}
    for queue in ("free", "one"):  # one queue after the other: both runners idle for each
        jobs = [submit(server, code, id=10 + i, queue=queue)["job_id"] for i in range(2)]
        spans[queue] = []
        for job_id in jobs:
            done = wait_for(server, job_id, {"succeeded", "dead"})
            assert done["status"] == "succeeded", done
            spans[queue].append(json.loads(done["result"]["return_value"]))
    (a, b), (c, d) = sorted(spans["free"])
    assert c < b, spans  # without a limit the two runners overlap
    (e, f), (g, h) = sorted(spans["one"])
    assert f <= g, spans  # limited to one at a time
    server.close()
    bad = subprocess.run([str(binary), "serve", "--stdio", "--store", store_url(tmp_path),
                          "--job-queue-limit", "nolimit"], capture_output=True,
                         env=_environment(), timeout=60, stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and b"QUEUE=N" in bad.stderr


def test_cli_job_commands_against_a_store(binary, tmp_path):
    store = store_url(tmp_path)

    def job(*args, code=None):
        completed = subprocess.run([str(binary), "job", *args, "--store", store],
                                   capture_output=True, env=_environment(), timeout=60)
        return completed.returncode, completed.stdout, completed.stderr

    rc, out, _ = job("submit", "--principal", "stdio", "--key", "k", "-c",
                     "import capsule\ncapsule.await_event('go')")
    assert rc == 0, out
    submitted = json.loads(out)
    assert submitted["status"] == "queued"
    rc, out, _ = job("submit", "--principal", "stdio", "--key", "k", "-c",
                     "import capsule\ncapsule.await_event('go')")
    assert json.loads(out)["job_id"] == submitted["job_id"]
    rc, _, err = job("get", "--principal", "someone-else", submitted["job_id"])
    assert rc == 1 and b"no job" in err
    rc, _, err = job("submit")
    assert rc == 2 and b"usage" in err
    # The server (its MCP principal on stdio is "stdio") runs it; the CLI
    # cannot open an SQLite store a server holds, so the event goes over MCP.
    server = Stdio(binary, "--store", store)
    deadline = time.monotonic() + 30
    while get(server, submitted["job_id"]).get("waiting_for") != "go":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    tool(server, "emit_event", 3, name="go", payload=[1, 2])
    assert wait_for(server, submitted["job_id"], {"succeeded", "dead"})["status"] == "succeeded"
    server.close()
    rc, out, _ = job("list", "--status", "succeeded")
    assert rc == 0 and [j["job_id"] for j in json.loads(out)] == [submitted["job_id"]]
    rc, out, err = job("cancel", submitted["job_id"])
    assert rc == 1 and b"ended" in err


# --- PostgreSQL: two servers on one database -------------------------------------------


@needs_postgres
def test_postgres_a_dead_nodes_job_is_finished_by_the_other(binary, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    args = ["--store", POSTGRES, "--mount", f"{data}:/data:rw"]
    first = Stdio(binary, *args, "--store-lease", "1")
    job = submit(first, APPEND_THEN_WAIT)
    wait_for_file(data / "log.txt", 1)
    assert get(first, job["job_id"])["status"] == "running"
    second = Stdio(binary, *args)  # started now, so that the first one claimed the job
    first.process.kill()
    first.process.wait(timeout=30)
    done = wait_for(second, job["job_id"], {"succeeded", "dead"})
    assert done["status"] == "succeeded", done
    assert done["result"]["return_value"] == "appended once"
    assert (data / "log.txt").read_text() == "step one\n"
    second.close()


@needs_postgres
def test_postgres_jobs_sleep_wake_and_retry_on_a_shared_store(binary):
    one = Stdio(binary, "--store", POSTGRES)
    two = Stdio(binary, "--store", POSTGRES)
    key = f"pg-{os.getpid()}-{time.monotonic_ns()}"
    job = submit(one, "import capsule\ncapsule.sleep(1)\ncapsule.await_event('go')",
                 idempotency_key=key)
    assert submit(one, "import capsule\ncapsule.sleep(1)\ncapsule.await_event('go')", id=3,
                  idempotency_key=key)["job_id"] == job["job_id"]
    deadline = time.monotonic() + 30
    while get(two, job["job_id"]).get("waiting_for") != "go":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    tool(two, "emit_event", 4, name="go", payload="x")
    done = wait_for(one, job["job_id"], {"succeeded", "dead"})
    assert done["status"] == "succeeded" and done["result"]["return_value"] == "x", done
    one.close()
    two.close()


@needs_postgres
def test_postgres_notify_wakes_another_nodes_idle_runner(binary):
    """A node that polls only once a minute still runs a job submitted on
    another node at once: the submit's NOTIFY wakes its runner."""
    submitter = Stdio(binary, "--store", POSTGRES, "--job-runners", "0")
    runner = Stdio(binary, "--store", POSTGRES, "--job-poll", "60")
    tool(runner, "list_jobs", 9)  # up, its runner idle after its first look
    time.sleep(1)
    started = time.monotonic()
    job = submit(submitter, "'ran'")
    done = wait_for(submitter, job["job_id"], {"succeeded", "dead"}, timeout=30)
    assert done["status"] == "succeeded", done
    assert time.monotonic() - started < 20  # well before the next poll
    submitter.close()
    runner.close()


# --- /network fetches as steps ------------------------------------------------------------

class CountingHandler(http.server.BaseHTTPRequestHandler):
    """Serves /data.txt and a /big.txt over the size limit; counts requests
    per path (the server's own count: what the job cannot fake)."""
    counts = collections.Counter()

    def log_message(self, *args):
        pass

    def do_GET(self):
        CountingHandler.counts[self.path] += 1
        body = {"/data.txt": b"fetched bytes \x00\xff", "/big.txt": b"x" * 4096}.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")


@pytest.fixture
def counting_server():
    CountingHandler.counts.clear()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", CountingHandler.counts
    httpd.shutdown()


# Reads a /network file (and one over the size limit), then fails on its
# first attempt (a marker file in a rw mount says which attempt this is).
FETCH_THEN_FAIL_ONCE = """
import os
data = open('/network/data.txt', 'rb').read()
try:
    open('/network/big.txt', 'rb').read()
    big = 'read'
except OSError as e:
    big = type(e).__name__
if not os.path.exists('/data/tried'):
    open('/data/tried', 'w').close()
    raise RuntimeError('first attempt fails')
[data.hex(), big]
"""


def network_job_args(tmp_path, url, backend="sqlite"):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return ["--store", POSTGRES if backend == "postgres" else store_url(tmp_path), "--mount", f"{data}:/data:rw",
            "--allow-url", url + "/", "--network", f"data.txt={url}/data.txt",
            "--network", f"big.txt={url}/big.txt", "--http-max", "1K"]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_a_network_fetch_in_a_job_is_a_step_not_refetched_on_retry(binary, tmp_path,
                                                                   counting_server, backend):
    url, counts = counting_server
    server = Stdio(binary, *network_job_args(tmp_path, url, backend))
    job = submit(server, FETCH_THEN_FAIL_ONCE, max_attempts=3, backoff=0.1)
    done = wait_for(server, job["job_id"], {"succeeded", "dead"})
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    assert json.loads(done["result"]["return_value"]) == [b"fetched bytes \x00\xff".hex(),
                                                          "OSError"]
    # Two attempts, one request each: the retry read the stored response
    # (and the stored "too large" error) instead of fetching again.
    assert counts["/data.txt"] == 1 and counts["/big.txt"] == 1, counts
    # Another job is another cache: it fetches again.
    (tmp_path / "data" / "tried").unlink()
    other = submit(server, FETCH_THEN_FAIL_ONCE, id=3, max_attempts=3, backoff=0.1)
    assert wait_for(server, other["job_id"], {"succeeded", "dead"})["status"] == "succeeded"
    assert counts["/data.txt"] == 2 and counts["/big.txt"] == 2, counts
    # Outside a job a read is not cached: every run fetches.
    for id in (5, 6):
        result = tool(server, "run_python_code", id,
                      python_code="len(open('/network/data.txt', 'rb').read())")
        assert result["structuredContent"]["return_value"] == "16", result
    assert counts["/data.txt"] == 4, counts
    server.close()


# A hostile job: it asks the parent directly (as capsule.step does) to
# record, or to read, the step that holds a /network response, before it
# reads the file.
FORGE_NETWORK_STEP = """
import base64
from capsule import functions
tries = []
for request in ({"op": "step_done", "name": "/network/data.txt",
                 "value": {"base64": base64.b64encode(b"forged").decode()}},
                {"op": "step", "name": "/network/data.txt"},
                {"op": "sleep", "name": "/network/data.txt", "until": 1.0},
                {"op": "await_event", "name": "e", "key": "/network/data.txt", "timeout": 0}):
    try:
        tries.append(repr(functions._exchange(request, "step")))
    except Exception as e:
        tries.append(type(e).__name__ + ': ' + str(e))
[tries, open('/network/data.txt', 'rb').read().hex()]
"""


def test_a_job_cannot_forge_or_read_ahead_the_step_of_a_network_fetch(binary, tmp_path,
                                                                      counting_server):
    url, counts = counting_server
    server = Stdio(binary, *network_job_args(tmp_path, url))
    job = submit(server, FORGE_NETWORK_STEP, max_attempts=1)
    done = wait_for(server, job["job_id"], {"succeeded", "dead"})
    assert done["status"] == "succeeded", done
    tries, data = json.loads(done["result"]["return_value"])
    assert len(tries) == 4 and all("capsule's own" in t or "not starting" in t for t in tries), tries
    assert bytes.fromhex(data) == b"fetched bytes \x00\xff"  # the real bytes, not "forged"
    assert counts["/data.txt"] == 1, counts
    server.close()


# --- many runners, group commit, a node killed mid-drain ------------------------------------

# Each job's one step appends a line to a file of its own on the host (an
# idempotent side effect: a rerun after a cut-off may append again, and the
# job still ends the same) and returns a value the job's result is made of.
MARKED_JOB = """
import capsule
def mark():
    with open('/data/{n}', 'a') as f:
        f.write('ran\\n')
    return {n} * 2
'{n}:' + str(capsule.step('mark', mark))
"""


def list_queue(server, queue, status, id=9):
    listed = tool(server, "list_jobs", id, status=status, limit=1000)["structuredContent"]["jobs"]
    return [job for job in listed if job["queue"] == queue]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_a_node_killed_mid_drain_loses_no_job_of_a_batch(binary, tmp_path, backend):
    """300 jobs drained by 4 runners whose ends and claims share
    transactions (group commit); the node is kill -9ed halfway.  Every job
    then ends exactly once, succeeded with its own result; only the jobs
    that were running at the kill (at most one per runner) took a second
    attempt; none is left running once its lease is up."""
    data = tmp_path / "data"
    data.mkdir()
    url = POSTGRES if backend == "postgres" else store_url(tmp_path)
    mount = ["--mount", f"{data}:/data:rw"]
    queue = f"drain-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    total, runners = 300, 4
    submitter = Stdio(binary, "--store", url, "--job-runners", "0")
    expected = {}
    for n in range(total):
        job = submit(submitter, MARKED_JOB.format(n=n), id=10 + n, queue=queue)
        expected[job["job_id"]] = f"{n}:{n * 2}"
    submitter.close()

    # PostgreSQL: a second node drains beside the one killed, and sweeps its
    # jobs once its 1 s lease is out; SQLite: the file's next server does.
    doomed = Stdio(binary, "--store", url, *mount, "--job-runners", str(runners),
                   "--job-poll", "0.05", "--store-lease", "1")
    other = (Stdio(binary, "--store", url, *mount, "--job-runners", str(runners),
                   "--job-poll", "0.05") if backend == "postgres" else None)
    deadline = time.monotonic() + 120
    while len(list_queue(doomed, queue, "succeeded")) < total // 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    doomed.process.kill()
    doomed.process.wait(timeout=30)
    killed_at = time.monotonic()
    if other is None:
        other = Stdio(binary, "--store", url, *mount, "--job-runners", str(runners),
                      "--job-poll", "0.05")
    while len(list_queue(other, queue, "succeeded")) < total:
        unfinished = [job for job in list_queue(other, queue, "") if job["status"] != "succeeded"]
        assert time.monotonic() < deadline, unfinished[:5]
        time.sleep(0.1)
    # No job left running past its node's lease (1 s) plus a few polls.
    assert time.monotonic() - killed_at < 60

    jobs = list_queue(other, queue, "")
    assert len(jobs) == total
    assert {job["job_id"] for job in jobs} == set(expected)
    for job in jobs:
        assert job["status"] == "succeeded", job
        assert job["result"]["return_value"] == expected[job["job_id"]], job
        assert job["node"] is None
    retried = [job for job in jobs if job["attempts"] > 1]
    assert all(job["attempts"] == 2 and "cut off" in job["last_error"] for job in retried), retried
    assert len(retried) <= runners, retried  # only those running at the kill
    # Each step ran once, but for a step cut off between its side effect
    # and its commit (at least once outside capsule, docs/scale-out.md).
    lines = {n: (data / str(n)).read_text().count("ran") for n in range(total)}
    assert all(count >= 1 for count in lines.values()), lines
    assert sum(lines.values()) - total <= len(retried), lines
    other.close()


# --- pruning ------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_finished_jobs_are_pruned_after_the_retention(binary, tmp_path, backend):
    url = POSTGRES if backend == "postgres" else store_url(tmp_path)
    server = Stdio(binary, "--store", url, "--job-retention", "1")
    done = submit(server, "import capsule\ncapsule.step('s', lambda: 1)")
    parked = submit(server, "import capsule\ncapsule.await_event('go')", id=3)
    assert wait_for(server, done["job_id"], {"succeeded", "dead"})["status"] == "succeeded"
    assert wait_for(server, parked["job_id"], {"waiting"})["status"] == "waiting"
    deadline = time.monotonic() + 30
    while True:  # gone within about a second of the retention
        result = tool(server, "get_job", 4, job_id=done["job_id"])
        if result.get("isError"):
            break
        assert time.monotonic() < deadline, result
        time.sleep(0.2)
    assert "no job" in result["content"][0]["text"], result
    # An unfinished job stays, however old.
    time.sleep(1.5)
    assert get(server, parked["job_id"])["status"] == "waiting"
    server.close()
    bad = subprocess.run([str(binary), "serve", "--stdio", "--store", store_url(tmp_path),
                          "--job-retention", "0"], capture_output=True,
                         env=_environment(), timeout=60, stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and b"--job-retention" in bad.stderr
