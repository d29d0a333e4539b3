"""GET /metrics on the HTTP server (issue 16): Prometheus' text format, the
runs by how they ended, workers, the queue and the store's numbers, behind
the same token as /mcp."""
import http.client
import json
import re
import time

from test_mcp import HttpServer


def scrape(server, token="secret-token", method="GET"):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connection.request(method, "/metrics", headers=headers)
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    return response, body


def samples(text):
    """{'name{labels}': value} for every sample line; every other line must
    be a # HELP, # TYPE or comment line."""
    found = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"# (HELP|TYPE) capsule_\w+ |# ", line), line
            continue
        match = re.fullmatch(r'(capsule_\w+(?:\{(?:status|le|source)="[\w.+-]+"\})?) (\d+(?:\.\d+)?)',
                             line)
        assert match, line
        value = match.group(2)
        found[match.group(1)] = float(value) if "." in value else int(value)
    return found


def run(server, code, session, id):
    response, payload = server.post({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                     "params": {"name": "run_python_code",
                                                "arguments": {"python_code": code}}},
                                    session=session)
    assert response.status == 200, payload


def test_metrics_count_runs_by_status_and_show_the_store(binary, tmp_path):
    server = HttpServer(binary, "--workers", "1", "--job-runners", "0",
                        "--store", f"sqlite:{tmp_path / 'store.db'}")
    try:
        response, text = scrape(server)
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/plain; version=0.0.4")
        before = samples(text)
        assert before['capsule_runs_total{status="success"}'] == 0
        assert before["capsule_workers"] == 1
        assert before["capsule_workers_busy"] == 0
        assert before["capsule_calls_waiting"] == 0
        session = server.initialize()
        run(server, "print(1)", session, 2)
        run(server, "print(2)", session, 3)
        run(server, "raise ValueError('x')", session, 4)
        after = samples(scrape(server)[1])
        assert after['capsule_runs_total{status="success"}'] == 2
        assert after['capsule_runs_total{status="run-error"}'] == 1
        assert after['capsule_runs_total{status="timeout"}'] == 0
        assert after["capsule_runs_refused_total"] == 0
        # The store's numbers are there (no session was durable here: no blobs).
        assert "capsule_store_blob_bytes" in after and "capsule_store_sessions" in after
        # A durable session's snapshot adds blobs.
        response, payload = server.post(
            {"jsonrpc": "2.0", "id": 6, "method": "tools/call",
             "params": {"name": "run_python_code",
                        "arguments": {"python_code": "x = 1", "session_id": "s"}}},
            session=session)
        assert response.status == 200, payload
        stored = samples(scrape(server)[1])
        assert stored["capsule_store_blob_bytes"] > 0
        assert stored["capsule_store_sessions"] == 1
        assert stored['capsule_runs_total{status="success"}'] == 3
        assert stored['capsule_session_restores_total{source="page_file"}'] == 0
    finally:
        server.stop()
    # Restores, by where the memory came from: this node's page file, then
    # (the files removed) the store.
    for source in ("page_file", "store"):
        if source == "store":
            for path in (tmp_path / "store.db-pages").iterdir():
                if path.name != "lock":
                    path.unlink()
        server = HttpServer(binary, "--workers", "1", "--job-runners", "0",
                            "--store", f"sqlite:{tmp_path / 'store.db'}")
        try:
            session = server.initialize()
            response, payload = server.post(
                {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                 "params": {"name": "run_python_code",
                            "arguments": {"python_code": "x", "session_id": "s"}}},
                session=session)
            assert response.status == 200 and b'"return_value":"1"' in payload, payload
            restored = samples(scrape(server)[1])
            assert restored[f'capsule_session_restores_total{{source="{source}"}}'] == 1, restored
            other = "store" if source == "page_file" else "page_file"
            assert restored[f'capsule_session_restores_total{{source="{other}"}}'] == 0
            assert restored[f'capsule_session_restore_seconds_total{{source="{source}"}}'] > 0
        finally:
            server.stop()


def test_metrics_need_the_token_and_take_get_only(binary):
    server = HttpServer(binary, "--workers", "1", "--job-runners", "0", "--no-store")
    try:
        for token in (None, "wrong"):
            response, _ = scrape(server, token=token)
            assert response.status == 401
        response, body = scrape(server, method="POST")
        assert response.status == 405
        # Without a store: the server's numbers, none of the store's.
        response, text = scrape(server)
        assert response.status == 200
        found = samples(text)
        assert "capsule_runs_total{status=\"crash\"}" in found
        assert not [name for name in found if name.startswith("capsule_store_")]
    finally:
        server.stop()


def test_jobs_are_counted_by_status(binary, tmp_path):
    server = HttpServer(binary, "--workers", "1", "--job-runners", "0",
                        "--store", f"sqlite:{tmp_path / 'store.db'}")
    try:
        session = server.initialize()
        for id in (2, 3):
            response, payload = server.post(
                {"jsonrpc": "2.0", "id": id, "method": "tools/call",
                 "params": {"name": "submit_job", "arguments": {"code": "1"}}},
                session=session)
            assert response.status == 200, payload
        found = samples(scrape(server)[1])
        # No runner: both wait in the queue.
        assert found['capsule_jobs{status="queued"}'] == 2, json.dumps(found)
    finally:
        server.stop()


def call_tool(server, session, id, name, **arguments):
    response, payload = server.post({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                     "params": {"name": name, "arguments": arguments}},
                                    session=session)
    assert response.status == 200, payload
    text = payload.decode()
    messages = [json.loads(line[6:]) for line in text.splitlines()
                if line.startswith("data: ") and len(line) > 6] or [json.loads(text)]
    return next(m for m in messages if "id" in m)["result"]["structuredContent"]


def test_claim_latency_is_a_histogram_of_how_long_due_jobs_waited(binary, tmp_path):
    server = HttpServer(binary, "--workers", "1", "--job-runners", "1", "--job-poll", "0.05",
                        "--store", f"sqlite:{tmp_path / 'store.db'}")
    try:
        session = server.initialize()
        # One runner: the second job is due while the first holds it ~1.5 s.
        slow = call_tool(server, session, 2, "submit_job", code="import time\ntime.sleep(1.5)")
        time.sleep(0.3)
        quick = call_tool(server, session, 3, "submit_job", code="1")
        deadline = time.monotonic() + 60
        while call_tool(server, session, 4, "get_job", job_id=quick["job_id"])["status"] != \
                "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        waited = call_tool(server, session, 5, "get_job", job_id=quick["job_id"])
        assert 900 <= waited["claim_wait_ms"] < 30000, waited
        first = call_tool(server, session, 6, "get_job", job_id=slow["job_id"])
        assert first["claim_wait_ms"] < 900, first
        found = samples(scrape(server)[1])
        name = "capsule_job_claim_latency_seconds"
        assert found[name + "_count"] == 2 and found[name + '_bucket{le="+Inf"}'] == 2, found
        assert found[name + '_bucket{le="0.5"}'] == 1, found  # the first, not the second
        assert found[name + '_bucket{le="60"}'] == 2, found
        assert 0.9 <= found[name + "_sum"] < 30, found
        buckets = [v for k, v in found.items() if k.startswith(name + "_bucket")]
        assert buckets == sorted(buckets), found  # cumulative
    finally:
        server.stop()
