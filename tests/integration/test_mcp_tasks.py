"""The Tasks extension (io.modelcontextprotocol/tasks, SEP-2663) for
run_python_code, spoken raw over stdio and Streamable HTTP in 2026-07-28.

A run_python_code call whose request declares the extension becomes a task:
the server answers a CreateTaskResult at once and runs the code in the
background; tasks/get polls it, tasks/cancel stops it (its worker killed,
as a timeout would), and only the principal that started a task reaches it.
With a store a task outlives the server: a finished one keeps its result, a
running one reads as failed, interrupted, after a kill -9.  Guest code runs
only inside capsule.
"""
import json
import os
import re
import time

import pytest

from test_mcp import HttpServer, Stdio
from test_mcp_2026 import VERSION, _current_binaries, stateless_post

TASKS = "io.modelcontextprotocol/tasks"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
TERMINAL = ("completed", "failed", "cancelled")
NOT_FOUND = "invalid params: no such task (unknown, expired, or not this client's)"


@pytest.fixture(params=_current_binaries(), ids=lambda p: p.name)
def binary(request):
    return request.param


def meta(tasks=True):
    capabilities = {"extensions": {TASKS: {}}} if tasks else {}
    return {"io.modelcontextprotocol/protocolVersion": VERSION,
            "io.modelcontextprotocol/clientCapabilities": capabilities}


def store_url(tmp_path):
    return f"sqlite:{tmp_path / 'tasks.db'}"


class StdioClient:
    """2026-07-28 over stdio: every request carries its _meta."""

    def __init__(self, binary, *args):
        self.server = Stdio(binary, *args)
        self.next_id = 100

    def request(self, method, params=None, tasks=True):
        params = dict(params or {})
        params["_meta"] = meta(tasks)
        self.next_id += 1
        return self.server.request(method, params, id=self.next_id)

    def close(self):
        self.server.close()

    def kill(self):
        self.server.process.kill()
        self.server.process.wait(timeout=30)


class HttpClient:
    """2026-07-28 over HTTP, with the headers a client sends (Mcp-Name is
    the task id on tasks/*), as the bearer token `token`."""

    def __init__(self, server, token=None):
        self.server, self.token = server, token
        self.next_id = 100

    def request(self, method, params=None, tasks=True, headers=None):
        params = dict(params or {})
        params["_meta"] = meta(tasks)
        all_headers = {}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        if method.startswith("tasks/") and isinstance(params.get("taskId"), str):
            all_headers["Mcp-Name"] = params["taskId"]
        all_headers.update(headers or {})
        self.next_id += 1
        response, body = stateless_post(self.server, method, params, id=self.next_id,
                                        headers=all_headers)
        body["http_status"] = response.status
        return body


@pytest.fixture(params=["stdio", "http"])
def client(request, binary):
    if request.param == "stdio":
        instance = StdioClient(binary, "--workers", "1", "--no-store")
        yield instance
        instance.close()
    else:
        server = HttpServer(binary, "--workers", "1", "--no-store")
        yield HttpClient(server)
        server.stop()


def run(client, code, tasks=True, **arguments):
    return client.request("tools/call", {"name": "run_python_code",
                                         "arguments": {"python_code": code, **arguments}},
                          tasks=tasks)


def create(client, code, **arguments):
    result = run(client, code, **arguments)["result"]
    assert result["resultType"] == "task", result
    return result


def get(client, task_id):
    return client.request("tasks/get", {"taskId": task_id})


def wait(client, task_id, timeout=60, until=TERMINAL):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = get(client, task_id)
        assert "result" in response, response
        if response["result"]["status"] in until:
            return response["result"]
        time.sleep(response["result"].get("pollIntervalMs", 250) / 1000)
    raise AssertionError(f"task {task_id} did not reach {until} in {timeout} s")


def error_of(response, code):
    assert "error" in response, response
    assert response["error"]["code"] == code, response
    return response["error"]["message"]


# --- create, poll, complete -------------------------------------------------------------

def test_a_declaring_client_gets_a_task_and_polls_it_to_its_result(client):
    created = create(client, "import time\ntime.sleep(1)\nprint('hello')\n6 * 7")
    assert re.fullmatch(r"[0-9a-f]{32}", created["taskId"]), created
    assert created["status"] == "working"
    assert ISO.match(created["createdAt"]) and ISO.match(created["lastUpdatedAt"]), created
    assert isinstance(created["ttlMs"], int) and created["ttlMs"] >= 3600000
    assert isinstance(created["pollIntervalMs"], int) and created["pollIntervalMs"] > 0
    for absent in ("result", "error", "content", "requestState", "inputRequests", "task", "ttl"):
        assert absent not in created, created

    # Right after the CreateTaskResult the task is there, still working.
    working = get(client, created["taskId"])["result"]
    assert working["resultType"] == "complete"
    assert working["taskId"] == created["taskId"] and working["status"] == "working"
    assert "result" not in working and "error" not in working

    done = wait(client, created["taskId"])
    assert done["status"] == "completed", done
    assert done["result"]["structuredContent"]["return_value"] == "42"
    assert done["result"]["structuredContent"]["output"] == "hello"
    assert "<status>success</status>" in done["result"]["content"][0]["text"]
    assert done["result"]["resultType"] == "complete"  # the CallToolResult, as a call returns it
    assert "_meta" not in done["result"]  # no related-task metadata
    assert "pollIntervalMs" not in done
    assert done["createdAt"] == created["createdAt"] and done["lastUpdatedAt"] >= done["createdAt"]
    # Polled again: the same outcome.
    assert get(client, created["taskId"])["result"]["result"] == done["result"]


def test_code_that_raises_completes_with_the_run_error_not_failed(client):
    created = create(client, "1 / 0")
    done = wait(client, created["taskId"])
    assert done["status"] == "completed", done  # a tool result, not a JSON-RPC error
    assert done["result"]["structuredContent"]["status"] == "run-error"
    assert "ZeroDivisionError" in done["result"]["structuredContent"]["error"]


def test_without_the_extension_a_call_is_synchronous_and_tasks_are_refused(client):
    result = run(client, "6 * 7", tasks=False)["result"]
    assert result["resultType"] == "complete"
    assert result["structuredContent"]["return_value"] == "42"
    task_id = create(client, "1")["taskId"]
    for method, params in (("tasks/get", {"taskId": task_id}),
                           ("tasks/cancel", {"taskId": task_id}),
                           ("tasks/update", {"taskId": task_id, "inputResponses": {}})):
        response = client.request(method, params, tasks=False)
        error_of(response, -32021)
        assert response["error"]["data"] == {"requiredCapabilities": {"extensions": {TASKS: {}}}}


def test_other_tools_stay_synchronous(client):
    response = client.request("tools/call", {"name": "help", "arguments": {"query": "csv"}})
    assert response["result"]["resultType"] == "complete", response
    assert "taskId" not in response["result"]


# --- cancel -----------------------------------------------------------------------------

def test_cancel_kills_the_run_and_the_task_reads_cancelled(client):
    created = create(client, "import time\ntime.sleep(60)")
    time.sleep(1)  # running in the one worker
    started = time.monotonic()
    ack = client.request("tasks/cancel", {"taskId": created["taskId"]})
    assert ack["result"] == {"resultType": "complete"}, ack
    cancelled = get(client, created["taskId"])["result"]
    assert cancelled["status"] == "cancelled", cancelled
    assert "result" not in cancelled and "error" not in cancelled
    # The worker was killed, not left to sleep: the one worker runs the next call.
    result = run(client, "'next'", tasks=False)["result"]
    assert result["structuredContent"]["return_value"] == "next", result
    assert time.monotonic() - started < 30
    # Cancelling a finished task is the same empty acknowledgement; it stays cancelled.
    again = client.request("tasks/cancel", {"taskId": created["taskId"]})
    assert again["result"] == {"resultType": "complete"}, again
    assert get(client, created["taskId"])["result"]["status"] == "cancelled"


def test_cancel_of_a_queued_task_means_it_never_runs(client):
    first = create(client, "import time\ntime.sleep(60)")
    time.sleep(1.5)  # the first holds the one worker
    second = create(client, "marker = 'ran'", session_id="queued")
    time.sleep(0.5)
    assert get(client, second["taskId"])["result"]["status"] == "working"  # waiting
    for task in (second, first):
        ack = client.request("tasks/cancel", {"taskId": task["taskId"]})
        assert ack["result"] == {"resultType": "complete"}, ack
    assert wait(client, second["taskId"])["status"] == "cancelled"
    result = run(client, "'marker' in globals()", tasks=False, session_id="queued")["result"]
    assert result["structuredContent"]["return_value"] == "false", result


def test_a_completed_task_stays_completed_when_cancelled(client):
    created = create(client, "'done'")
    assert wait(client, created["taskId"])["status"] == "completed"
    ack = client.request("tasks/cancel", {"taskId": created["taskId"]})
    assert ack["result"] == {"resultType": "complete"}
    done = get(client, created["taskId"])["result"]
    assert done["status"] == "completed" and done["result"]["structuredContent"]["return_value"] == "done"


def test_tasks_update_is_acknowledged_and_ignored(client):
    created = create(client, "'x'")
    ack = client.request("tasks/update", {"taskId": created["taskId"],
                                          "inputResponses": {"unknown-key": {"action": "accept"}}})
    assert ack["result"] == {"resultType": "complete"}, ack
    assert wait(client, created["taskId"])["status"] == "completed"
    bad = client.request("tasks/update", {"taskId": created["taskId"], "inputResponses": [1]})
    error_of(bad, -32602)


# --- malformed and unknown task ids, removed methods --------------------------------------

@pytest.mark.parametrize("params", [
    {},                         # no taskId
    {"taskId": 12345},          # not a string
    {"taskId": ""},             # empty
    {"taskId": "a" * 200},      # longer than any id
    {"taskId": None},
])
def test_a_malformed_task_id_is_invalid_params(client, params, binary):
    for method in ("tasks/get", "tasks/cancel"):
        message = error_of(client.request(method, params), -32602)
        assert "taskId" in message


def test_an_unknown_task_is_invalid_params(client):
    for method, extra in (("tasks/get", {}), ("tasks/cancel", {}),
                          ("tasks/update", {"inputResponses": {}})):
        response = client.request(method, {"taskId": "0" * 32, **extra})
        assert error_of(response, -32602) == NOT_FOUND


@pytest.mark.parametrize("method", ["tasks/result", "tasks/list"])
def test_the_removed_methods_are_not_found(client, method):
    error_of(client.request(method, {"taskId": "0" * 32}), -32601)


def test_discover_advertises_the_extension_over_both_transports(client):
    capabilities = client.request("server/discover")["result"]["capabilities"]
    assert capabilities["extensions"] == {TASKS: {}}
    assert "tasks" not in capabilities  # not the 2025-11-25 slot


def test_http_tasks_get_needs_the_task_id_in_mcp_name(binary):
    server = HttpServer(binary, "--workers", "1", "--no-store")
    try:
        client = HttpClient(server)
        task_id = create(client, "1")["taskId"]
        wrong = client.request("tasks/get", {"taskId": task_id}, headers={"Mcp-Name": "other"})
        assert wrong["http_status"] == 400 and wrong["error"]["code"] == -32020, wrong
        missing = client.request("tasks/get", {"taskId": task_id}, headers={"Mcp-Name": None})
        assert missing["http_status"] == 400 and missing["error"]["code"] == -32020, missing
        spaced = client.request("tasks/get", {"taskId": task_id},
                                headers={"Mcp-Name": f"  {task_id} "})
        assert spaced["http_status"] == 200, spaced
        unknown = client.request("tasks/get", {"taskId": "f" * 32})
        assert unknown["http_status"] == 200 and unknown["error"]["code"] == -32602
    finally:
        server.stop()


# --- principals -------------------------------------------------------------------------

def test_another_token_cannot_see_or_cancel_a_task(binary, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("token-alice\ntoken-bob\n")
    server = HttpServer(binary, "--workers", "1", "--no-store", "--token-file", str(tokens),
                        token=None)
    try:
        alice, bob = HttpClient(server, "token-alice"), HttpClient(server, "token-bob")
        task_id = create(alice, "import time\ntime.sleep(2)\n'alice'")["taskId"]
        for method, extra in (("tasks/get", {}), ("tasks/cancel", {}),
                              ("tasks/update", {"inputResponses": {}})):
            response = bob.request(method, {"taskId": task_id, **extra})
            assert error_of(response, -32602) == NOT_FOUND  # as for an id never used
        # Bob's cancel did nothing: Alice's task runs to its end.
        done = wait(alice, task_id)
        assert done["status"] == "completed"
        assert done["result"]["structuredContent"]["return_value"] == "alice"
        assert error_of(bob.request("tasks/get", {"taskId": task_id}), -32602) == NOT_FOUND
    finally:
        server.stop()


def test_another_token_cannot_reach_a_stored_task_after_a_restart(binary, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("token-alice\ntoken-bob\n")
    arguments = ("--workers", "1", "--store", store_url(tmp_path), "--token-file", str(tokens))
    server = HttpServer(binary, *arguments, token=None)
    try:
        task_id = create(HttpClient(server, "token-alice"), "'kept'")["taskId"]
        assert wait(HttpClient(server, "token-alice"), task_id)["status"] == "completed"
    finally:
        server.process.kill()
        server.process.wait(timeout=30)
    server = HttpServer(binary, *arguments, token=None)
    try:
        bob = HttpClient(server, "token-bob")
        assert error_of(bob.request("tasks/get", {"taskId": task_id}), -32602) == NOT_FOUND
        assert error_of(bob.request("tasks/cancel", {"taskId": task_id}), -32602) == NOT_FOUND
        alice = HttpClient(server, "token-alice")
        done = get(alice, task_id)["result"]
        assert done["status"] == "completed", done
        assert done["result"]["structuredContent"]["return_value"] == "kept"
    finally:
        server.stop()


# --- durability: kill -9 and restart on the same store -------------------------------------

def test_after_kill_9_a_finished_task_keeps_its_result_and_a_running_one_is_interrupted(
        binary, tmp_path):
    arguments = ("--workers", "2", "--store", store_url(tmp_path))
    client = StdioClient(binary, *arguments)
    finished = create(client, "print('before the crash')\n'result kept'")["taskId"]
    assert wait(client, finished)["status"] == "completed"
    running = create(client, "import time\ntime.sleep(60)")["taskId"]
    time.sleep(1)
    assert get(client, running)["result"]["status"] == "working"
    client.kill()

    client = StdioClient(binary, *arguments)
    done = get(client, finished)["result"]
    assert done["status"] == "completed", done
    assert done["result"]["structuredContent"]["return_value"] == "result kept"
    assert done["result"]["structuredContent"]["output"] == "before the crash"

    lost = get(client, running)["result"]
    assert lost["status"] == "failed", lost  # never "working" for ever
    assert lost["statusMessage"].startswith("interrupted"), lost
    assert lost["error"]["code"] == -32603 and "interrupted" in lost["error"]["message"]
    assert "result" not in lost and "pollIntervalMs" not in lost
    # Cancelling it now changes nothing; it reads the same after another restart.
    assert client.request("tasks/cancel", {"taskId": running})["result"] == \
        {"resultType": "complete"}
    client.close()
    client = StdioClient(binary, *arguments)
    assert get(client, running)["result"]["status"] == "failed"
    assert get(client, finished)["result"]["status"] == "completed"
    # New tasks work in the restarted server.
    assert wait(client, create(client, "2 + 2")["taskId"])["result"]["structuredContent"][
        "return_value"] == "4"
    client.close()


def test_a_graceful_stop_interrupts_running_tasks_in_the_store(binary, tmp_path):
    arguments = ("--workers", "1", "--store", store_url(tmp_path))
    client = StdioClient(binary, *arguments)
    running = create(client, "import time\ntime.sleep(60)")["taskId"]
    time.sleep(1)
    started = time.monotonic()
    client.close()  # stdin closed: the server ends, its running task is stopped
    assert time.monotonic() - started < 30
    client = StdioClient(binary, *arguments)
    lost = get(client, running)["result"]
    assert lost["status"] == "failed" and lost["statusMessage"].startswith("interrupted"), lost
    client.close()


def test_without_a_store_tasks_die_with_the_server(binary):
    client = StdioClient(binary, "--no-store")
    task_id = create(client, "1")["taskId"]
    assert wait(client, task_id)["status"] == "completed"
    client.close()
    client = StdioClient(binary, "--no-store")
    assert error_of(get(client, task_id), -32602) == NOT_FOUND
    client.close()


# --- PostgreSQL: several nodes share the tasks (make test starts a throwaway server) ------

POSTGRES = os.environ.get("CAPSULE_TEST_POSTGRES")
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="no CAPSULE_TEST_POSTGRES server "
                                    "(run under tests/store/with-postgres.sh)")


@needs_postgres
def test_postgres_another_node_polls_a_task_and_sees_it_interrupted_when_its_node_dies(binary):
    """Two servers on one PostgreSQL store, as behind a load balancer: the
    second answers tasks/get for the first's tasks from the store; once the
    first is killed and its lease runs out, its running task reads failed."""
    a = StdioClient(binary, "--store", POSTGRES, "--store-lease", "1")
    b = StdioClient(binary, "--store", POSTGRES, "--store-lease", "1")
    finished = create(a, "import time\ntime.sleep(1)\n'from a'")["taskId"]
    assert get(b, finished)["result"]["status"] == "working"  # a is alive
    done = wait(b, finished)
    assert done["status"] == "completed", done
    assert done["result"]["structuredContent"]["return_value"] == "from a"
    running = create(a, "import time\ntime.sleep(60)")["taskId"]
    time.sleep(2.5)  # more than two leases: a renews its own
    assert get(b, running)["result"]["status"] == "working"
    a.kill()
    lost = wait(b, running, timeout=30)
    assert lost["status"] == "failed" and lost["statusMessage"].startswith("interrupted"), lost
    b.close()


# --- 2025-11-25: tasks in core (task-augmented tools/call, tasks/result, tasks/list) ---------

class LegacyStdio:
    def __init__(self, binary, *args):
        self.server = Stdio(binary, *args)
        self.next_id = 100
        response = self.request("initialize", {"protocolVersion": "2025-11-25",
                                               "capabilities": {"tasks": {}},
                                               "clientInfo": {"name": "t", "version": "1"}})
        self.capabilities = response["result"]["capabilities"]

    def request(self, method, params=None):
        self.next_id += 1
        return self.server.request(method, params or {}, id=self.next_id)

    def close(self):
        self.server.close()


class LegacyHttp:
    def __init__(self, server, token=None):
        self.server, self.token = server, token
        self.next_id = 100
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response, payload = server.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                         "params": {"protocolVersion": "2025-11-25",
                                                    "capabilities": {"tasks": {}},
                                                    "clientInfo": {"name": "t", "version": "1"}}},
                                        headers)
        assert response.status == 200, payload
        self.session = response.getheader("Mcp-Session-Id")
        self.capabilities = json.loads(payload)["result"]["capabilities"]

    def request(self, method, params=None):
        self.next_id += 1
        headers = {"MCP-Protocol-Version": "2025-11-25", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        response, payload = self.server.post({"jsonrpc": "2.0", "id": self.next_id,
                                              "method": method, "params": params or {}},
                                             headers, session=self.session)
        return json.loads(payload)


@pytest.fixture(params=["stdio", "http"])
def legacy(request, binary):
    if request.param == "stdio":
        instance = LegacyStdio(binary, "--workers", "1", "--no-store")
        yield instance
        instance.close()
    else:
        server = HttpServer(binary, "--workers", "1", "--no-store")
        yield LegacyHttp(server, server.token)
        server.stop()


def legacy_create(client, code, **arguments):
    response = client.request("tools/call", {"name": "run_python_code", "task": {"ttl": 60000},
                                             "arguments": {"python_code": code, **arguments}})
    task = response["result"]["task"]
    assert set(task) >= {"taskId", "status", "createdAt", "lastUpdatedAt", "ttl"}, task
    assert task["status"] == "working" and "resultType" not in response["result"]
    return task["taskId"]


def test_legacy_task_augmented_call_and_tasks_result(legacy):
    assert legacy.capabilities["tasks"]["requests"]["tools"]["call"] == {}
    tools = legacy.request("tools/list")["result"]["tools"]
    assert tools[0]["name"] == "run_python_code"
    assert tools[0]["execution"] == {"taskSupport": "optional"}
    # Without params.task the call is synchronous, as before.
    plain = legacy.request("tools/call", {"name": "run_python_code",
                                          "arguments": {"python_code": "1 + 1"}})["result"]
    assert plain["structuredContent"]["return_value"] == "2" and "task" not in plain

    task_id = legacy_create(legacy, "import time\ntime.sleep(1)\nprint('legacy')\n6 * 7")
    working = legacy.request("tasks/get", {"taskId": task_id})["result"]
    assert working["status"] == "working" and working["pollInterval"] > 0
    # tasks/result waits for the end, then answers what the call would have.
    result = legacy.request("tasks/result", {"taskId": task_id})["result"]
    assert result["structuredContent"]["return_value"] == "42"
    assert result["structuredContent"]["output"] == "legacy"
    assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task_id}
    assert "resultType" not in result
    assert legacy.request("tasks/get", {"taskId": task_id})["result"]["status"] == "completed"
    listed = legacy.request("tasks/list")["result"]["tasks"]
    assert task_id in [task["taskId"] for task in listed]


def test_legacy_cancel_and_errors(legacy):
    task_id = legacy_create(legacy, "import time\ntime.sleep(60)")
    time.sleep(1)
    started = time.monotonic()
    cancelled = legacy.request("tasks/cancel", {"taskId": task_id})["result"]
    assert cancelled["taskId"] == task_id and cancelled["status"] == "cancelled", cancelled
    again = legacy.request("tasks/cancel", {"taskId": task_id})
    assert again["error"]["code"] == -32602 and "terminal" in again["error"]["message"], again
    assert "error" in legacy.request("tasks/result", {"taskId": task_id})
    quick = legacy.request("tools/call", {"name": "run_python_code",
                                          "arguments": {"python_code": "'next'"}})["result"]
    assert quick["structuredContent"]["return_value"] == "next"
    assert time.monotonic() - started < 30
    for method in ("tasks/get", "tasks/result", "tasks/cancel"):
        unknown = legacy.request(method, {"taskId": "0" * 32})
        assert unknown["error"]["code"] == -32602 and unknown["error"]["message"] == NOT_FOUND
        malformed = legacy.request(method, {"taskId": 7})
        assert malformed["error"]["code"] == -32602 and "taskId" in malformed["error"]["message"]


def test_legacy_tasks_result_ends_when_its_request_is_cancelled(binary):
    client = LegacyStdio(binary, "--workers", "1", "--no-store")
    task_id = legacy_create(client, "import time\ntime.sleep(60)")
    client.server.send({"jsonrpc": "2.0", "id": 500, "method": "tasks/result",
                        "params": {"taskId": task_id}})
    time.sleep(0.5)
    client.server.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 500}})
    time.sleep(0.5)
    # No answer to the cancelled request (the next one is the tasks/get's); the
    # task itself goes on until cancelled.
    status = client.request("tasks/get", {"taskId": task_id})
    assert status["id"] == client.next_id and status["result"]["status"] == "working", status
    assert client.request("tasks/cancel", {"taskId": task_id})["result"]["status"] == "cancelled"
    time.sleep(0.5)
    # Had the wait gone on, the task's end would have answered request 500 now.
    assert client.server.lines.empty()
    client.close()


def test_legacy_another_token_cannot_see_a_task(binary, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("token-alice\ntoken-bob\n")
    server = HttpServer(binary, "--workers", "1", "--no-store", "--token-file", str(tokens),
                        token=None)
    try:
        alice, bob = LegacyHttp(server, "token-alice"), LegacyHttp(server, "token-bob")
        task_id = legacy_create(alice, "'alice'")
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            denied = bob.request(method, {"taskId": task_id})
            assert denied["error"]["message"] == NOT_FOUND, denied
        assert bob.request("tasks/list")["result"]["tasks"] == []
        assert alice.request("tasks/result", {"taskId": task_id})["result"][
            "structuredContent"]["return_value"] == "alice"
    finally:
        server.stop()


def test_legacy_a_finished_task_survives_a_restart_with_the_store(binary, tmp_path):
    arguments = ("--workers", "1", "--store", store_url(tmp_path))
    client = LegacyStdio(binary, *arguments)
    task_id = legacy_create(client, "'kept'")
    assert client.request("tasks/result", {"taskId": task_id})["result"]["structuredContent"][
        "return_value"] == "kept"
    client.server.process.kill()
    client.server.process.wait(timeout=30)
    client = LegacyStdio(binary, *arguments)
    assert client.request("tasks/get", {"taskId": task_id})["result"]["status"] == "completed"
    assert client.request("tasks/result", {"taskId": task_id})["result"]["structuredContent"][
        "return_value"] == "kept"
    client.close()


# --- input_required inside a task: host-function approval through tasks/update -----------

from test_mcp_2026 import CODE, PAY, approval_config  # noqa: E402,F401  (the fixture)


def approval_task(client):
    created = client.request("tools/call", {"name": "run_python_code",
                                            "arguments": {"python_code": CODE}},
                             capabilities={"elicitation": {}, "extensions": {TASKS: {}}})
    assert created["result"]["resultType"] == "task", created
    task_id = created["result"]["taskId"]
    asking = wait(client, task_id, until=("input_required",) + TERMINAL)
    assert asking["status"] == "input_required", asking
    (key, request), = asking["inputRequests"].items()
    assert request["method"] == "elicitation/create" and "'pay'" in request["params"]["message"]
    assert "requestState" not in asking and asking["pollIntervalMs"] > 0
    return task_id, key


class ApprovalStdio(StdioClient):
    def request(self, method, params=None, tasks=True, capabilities=None):
        params = dict(params or {})
        params["_meta"] = meta(tasks)
        if capabilities is not None:
            params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = capabilities
        self.next_id += 1
        return self.server.request(method, params, id=self.next_id)


def test_a_task_asks_for_approval_and_tasks_update_answers(binary, approval_config):
    config, marker = approval_config
    client = ApprovalStdio(binary, "--config", str(config), "--no-store")
    try:
        task_id, key = approval_task(client)
        assert not marker.exists()  # asked before running it
        # An answer to another key is ignored: still waiting.
        ack = client.request("tasks/update", {"taskId": task_id, "inputResponses": {
            "not-asked": {"action": "accept", "content": {"approve": True}}}})
        assert ack["result"] == {"resultType": "complete"}
        time.sleep(0.5)
        assert get(client, task_id)["result"]["status"] == "input_required"
        ack = client.request("tasks/update", {"taskId": task_id, "inputResponses": {
            key: {"action": "accept", "content": {"approve": True}}}})
        assert ack["result"] == {"resultType": "complete"}, ack
        done = wait(client, task_id)
        assert done["status"] == "completed", done
        assert "ok" in done["result"]["structuredContent"]["return_value"]
        assert marker.read_text() == "paid"

        # Declined: the call is refused, the task completes with what the code made of it.
        marker.unlink()
        task_id, key = approval_task(client)
        client.request("tasks/update", {"taskId": task_id, "inputResponses": {
            key: {"action": "decline"}}})
        done = wait(client, task_id)
        assert "refused: " in done["result"]["structuredContent"]["return_value"], done
        assert not marker.exists()

        # Cancelled while it waits for its answer.
        task_id, key = approval_task(client)
        assert client.request("tasks/cancel", {"taskId": task_id})["result"] == \
            {"resultType": "complete"}
        assert wait(client, task_id)["status"] == "cancelled"
        assert not marker.exists()
    finally:
        client.close()


def test_without_elicitation_a_task_refuses_the_call(binary, approval_config):
    config, marker = approval_config
    client = ApprovalStdio(binary, "--config", str(config), "--no-store")
    try:
        task_id = create(client, CODE)["taskId"]
        done = wait(client, task_id)
        assert done["status"] == "completed"
        assert "refused: " in done["result"]["structuredContent"]["return_value"]
        assert not marker.exists()
    finally:
        client.close()
