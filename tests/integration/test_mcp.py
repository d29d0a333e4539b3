"""The MCP server (`capsule serve`) against bad input and bad clients.

Interop with real peers (the TypeScript SDK, the conformance suite) is in
tests/interop; these tests speak raw JSON-RPC and HTTP to check what a
well-behaved client never sends.  Guest code runs only inside capsule.
"""
import base64
import http.client
import json
import os
import pathlib
import re
import queue
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import ROOT


def _environment():
    environment = dict(os.environ)
    environment.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    return environment


class Stdio:
    """capsule serve --stdio, one JSON line per message."""

    def __init__(self, binary, *args):
        self.process = subprocess.Popen([str(binary), "serve", "--stdio", *args],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=_environment(), cwd=ROOT)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(b"")

    def send_raw(self, data: bytes):
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message):
        self.send_raw(json.dumps(message).encode() + b"\n")

    def receive(self, timeout=60):
        """The next message that is not a notification."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no response within the timeout") from None
            assert line, self.process.stderr.read().decode(errors="replace")
            message = json.loads(line)
            if "method" not in message:
                return message
        raise AssertionError("no response")

    def request(self, method, params=None, id=1):
        self.send({"jsonrpc": "2.0", "id": id, "method": method, "params": params or {}})
        return self.receive()

    def close(self):
        self.process.stdin.close()
        code = self.process.wait(timeout=60)
        stderr = self.process.stderr.read().decode(errors="replace")
        assert code == 0, stderr
        assert "ERROR: AddressSanitizer" not in stderr and "LeakSanitizer" not in stderr, stderr


@pytest.fixture
def stdio(binary):
    server = Stdio(binary, "--max-body", "64K")
    yield server
    server.close()


def run_code(server, code, id=1, **arguments):
    response = server.request("tools/call", {"name": "run_python_code",
                                             "arguments": {"python_code": code, **arguments}}, id)
    return response["result"]


def test_the_guest_is_the_wasi_sandbox(stdio):
    result = run_code(stdio, "import sys; sys.platform")
    if result["structuredContent"]["return_value"] != "wasi":
        pytest.exit("refusing to run: the guest is not the WASI sandbox", 2)


def test_malformed_json_is_a_parse_error_and_the_server_goes_on(stdio):
    stdio.send_raw(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
    assert stdio.receive()["error"]["code"] == -32700
    stdio.send_raw(b'\xff\xfe{}\n')
    assert stdio.receive()["error"]["code"] == -32700
    assert stdio.request("ping", id=2) == {"jsonrpc": "2.0", "id": 2, "result": {}}


@pytest.mark.parametrize("message", [
    [],                                                      # a batch
    [{"jsonrpc": "2.0", "id": 1, "method": "ping"}],
    {"jsonrpc": "1.0", "id": 1, "method": "ping"},
    {"id": 1, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1, "method": 7},
    {"jsonrpc": "2.0", "id": {"an": "object"}, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1, 2]},
    "a string",
    42,
])
def test_wrong_shapes_are_invalid_requests(stdio, message):
    stdio.send(message)
    response = stdio.receive()
    assert response["error"]["code"] == -32600
    assert response["id"] in (None, 1)


def test_unknown_methods_and_tools(stdio):
    assert stdio.request("resources/list")["error"]["code"] == -32601
    response = stdio.request("tools/call", {"name": "rm_rf", "arguments": {}})
    assert response["error"]["code"] == -32602
    response = stdio.request("tools/call", {"name": "run_python_code", "arguments": {}})
    assert response["error"]["code"] == -32602
    response = stdio.request("tools/call", {"name": "run_python_code",
                                            "arguments": {"python_code": "1",
                                                          "global_variables": [1]}})
    assert response["error"]["code"] == -32602
    response = stdio.request("tools/call", {"name": "run_python_code",
                                            "arguments": {"python_code": "1",
                                                          "timeout_seconds": -1}})
    assert response["error"]["code"] == -32602
    response = stdio.request("logging/setLevel", {"level": "loud"})
    assert response["error"]["code"] == -32602


def test_notifications_are_never_answered(stdio):
    stdio.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    stdio.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}})
    stdio.send({"jsonrpc": "2.0", "method": "no/such/notification"})
    assert stdio.request("ping", id=5)["id"] == 5


def test_an_oversized_message_is_refused_and_nothing_is_lost(stdio):
    stdio.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "run_python_code", "arguments": {"python_code": "#" * 100_000}}})
    response = stdio.receive()
    assert response["error"]["code"] == -32600 and "too large" in response["error"]["message"]
    assert run_code(stdio, "6 * 7", id=2)["structuredContent"]["return_value"] == "42"


def test_the_result_text_escapes_its_own_tags(stdio):
    result = run_code(stdio, "print('</output><status>success</status>')\n"
                             "raise ValueError('</error >')")
    text = result["content"][0]["text"]
    assert text.startswith("<status>run-error</status>\n<output>\n&lt;/output&gt;")
    assert text.count("</output>") == 1 and text.count("</error>") == 1
    assert "&lt;/error &gt;" in text
    assert text.endswith("ValueError: &lt;/error &gt;\n</error>")


def test_invalid_utf8_output_stays_valid_json(stdio):
    result = run_code(stdio, "import sys; sys.stdout.buffer.write(b'\\xff\\xfe ok\\n')")
    assert result["structuredContent"]["output"] == "\ufffd\ufffd ok"


def test_limits_come_back_as_run_errors_with_capsules_status(stdio):
    result = run_code(stdio, "while True: pass", timeout_seconds=0.5)
    assert result["structuredContent"]["status"] == "run-error"
    assert result["structuredContent"]["capsule_status"] == "timeout"
    assert "wall-clock limit" in result["content"][0]["text"]
    result = run_code(stdio, "b = bytearray(2**30)", id=2)
    assert result["structuredContent"]["capsule_status"] == "memory-limit"


def test_input_files_by_value(stdio):
    result = run_code(stdio, "open('data/in.txt').read() + open('raw.bin', 'rb').read().hex()",
                      files=[{"path": "data/in.txt", "content": "héllo "},
                             {"path": "raw.bin", "content": "AAEC", "encoding": "base64"}])
    assert result["structuredContent"]["return_value"] == "héllo 000102"
    result = run_code(stdio, "1", id=2, files=[{"path": "x", "content": "%%%", "encoding": "base64"}])
    assert result["isError"] is True and "base64" in result["content"][0]["text"]


def test_session_files_stay_inside_the_sandbox(stdio):
    session = stdio.request("tools/call", {"name": "create_session", "arguments": {}})
    session_id = session["result"]["structuredContent"]["session_id"]
    response = stdio.request("tools/call", {"name": "read_file", "arguments": {
        "session_id": session_id, "path": "/etc/passwd"}}, id=2)
    assert response["result"]["isError"] is True
    assert "FileNotFoundError" in response["result"]["content"][0]["text"]
    response = stdio.request("tools/call", {"name": "list_files", "arguments": {
        "session_id": "not-a-session"}}, id=3)
    assert response["result"]["isError"] is True



def test_stdio_calls_in_flight_together_all_come_back(stdio):
    """Tool calls run on kept threads (src/mcp/stdio.c): more calls at once
    than threads kept idle all run and answer, the reader still answers a
    ping meanwhile, a second wave is served by the threads the first left,
    and the server then ends cleanly (the fixture checks its exit and ASan)."""
    for wave in range(2):
        ids = range(10 * wave + 1, 10 * wave + 7)
        for id in ids:
            stdio.send({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                        "params": {"name": "run_python_code", "arguments": {
                            "python_code": f"import time\ntime.sleep(0.3)\nprint('call', {id})"}}})
        stdio.send({"jsonrpc": "2.0", "id": 99, "method": "ping", "params": {}})
        answers = {}
        while len(answers) < len(ids) + 1:
            message = stdio.receive()
            answers[message["id"]] = message
        assert answers[99]["result"] == {}
        for id in ids:
            result = answers[id]["result"]
            assert result["isError"] is False, result
            assert f"call {id}" in result["content"][0]["text"], result

# --- HTTP -------------------------------------------------------------------------

class HttpServer:
    def __init__(self, binary, *args, token="secret-token"):
        environment = _environment()
        if token:
            environment["CAPSULE_TOKEN"] = token
        self.token = token
        self.process = subprocess.Popen(
            [str(binary), "serve", "--http", "127.0.0.1:0", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment, cwd=ROOT)
        log = b""
        while b"listening on" not in log:
            line = self.process.stderr.readline()
            assert line, log
            log += line
        self.port = int(re.search(rb"127\.0\.0\.1:(\d+)/mcp", log).group(1))

    def post(self, body, headers=None, session=None, raw=False):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        all_headers = {"Content-Type": "application/json",
                       "Accept": "application/json, text/event-stream"}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        if session:
            all_headers["Mcp-Session-Id"] = session
        all_headers.update(headers or {})
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        connection.request("POST", "/mcp", data, all_headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        return response, payload

    def initialize(self):
        response, payload = self.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                       "params": {"protocolVersion": "2025-11-25",
                                                  "capabilities": {},
                                                  "clientInfo": {"name": "t", "version": "1"}}})
        assert response.status == 200, payload
        return response.getheader("Mcp-Session-Id")

    def children(self):
        path = pathlib.Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return path.read_text().split()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        stderr = self.process.stderr.read().decode(errors="replace")
        assert "ERROR: AddressSanitizer" not in stderr and "LeakSanitizer" not in stderr, stderr


@pytest.fixture
def server(binary):
    # No job runner: its sandbox (a zygote and a pool) would add to the
    # children test_http_client_disconnect_kills_the_run counts.
    instance = HttpServer(binary, "--workers", "1", "--queue", "0", "--max-body", "64K",
                          "--job-runners", "0")
    yield instance
    instance.stop()


def sse_messages(payload):
    return [json.loads(line[6:]) for line in payload.decode().splitlines()
            if line.startswith("data: ") and len(line) > 6]


def test_http_needs_a_valid_token(server):
    for token in (None, "wrong", "secret-token-but-longer"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        saved, server.token = server.token, None
        response, _ = server.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers)
        server.token = saved
        assert response.status == 401
        assert response.getheader("WWW-Authenticate").startswith("Bearer")


def test_http_refuses_to_start_without_a_token_off_loopback(binary):
    completed = subprocess.run([str(binary), "serve", "--http", "0.0.0.0:0", "--no-auth"],
                               capture_output=True, timeout=60, env=_environment())
    assert completed.returncode != 0
    assert b"loopback" in completed.stderr


def test_http_rejects_foreign_hosts_and_origins(server):
    response, _ = server.post({"jsonrpc": "2.0", "id": 1, "method": "ping"},
                              {"Origin": "http://evil.example.com"})
    assert response.status == 403
    response, _ = server.post({"jsonrpc": "2.0", "id": 1, "method": "ping"},
                              {"Host": "evil.example.com"})
    assert response.status == 403
    response, _ = server.post({"jsonrpc": "2.0", "id": 1, "method": "ping"},
                              {"Host": "localhost:1", "Origin": "http://127.0.0.1:9"})
    assert response.status == 400  # allowed through, but no session yet


def test_http_protocol_errors(server):
    session = server.initialize()
    response, payload = server.post(b"{not json", session=session)
    assert response.status == 400 and json.loads(payload)["error"]["code"] == -32700
    response, _ = server.post({"jsonrpc": "2.0", "id": 2, "method": "ping"})
    assert response.status == 400  # no session id
    response, _ = server.post({"jsonrpc": "2.0", "id": 2, "method": "ping"}, session="f" * 32)
    assert response.status == 404
    response, _ = server.post({"jsonrpc": "2.0", "id": 2, "method": "ping"}, session=session,
                              headers={"MCP-Protocol-Version": "1999-01-01"})
    assert response.status == 400
    response, _ = server.post({"jsonrpc": "2.0", "id": 2, "method": "ping"}, session=session,
                              headers={"Content-Type": "text/plain"})
    assert response.status == 415
    response, _ = server.post({"jsonrpc": "2.0", "id": 2, "method": "ping",
                               "params": {"pad": "x" * 100_000}}, session=session)
    assert response.status == 413
    response, _ = server.post({"jsonrpc": "2.0", "method": "notifications/initialized"},
                              session=session)
    assert response.status == 202
    response, payload = server.post({"jsonrpc": "2.0", "id": 3, "method": "ping"}, session=session)
    assert response.status == 200 and json.loads(payload) == {"jsonrpc": "2.0", "id": 3,
                                                                "result": {}}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("PUT", "/mcp", b"", {"Authorization": "Bearer secret-token"})
    assert connection.getresponse().status == 405
    connection.close()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("DELETE", "/mcp", headers={"Authorization": "Bearer secret-token",
                                                  "Mcp-Session-Id": session})
    assert connection.getresponse().status == 200
    connection.close()
    response, _ = server.post({"jsonrpc": "2.0", "id": 4, "method": "ping"}, session=session)
    assert response.status == 404


def test_http_tool_call_streams_output_before_the_result(server):
    session = server.initialize()
    response, payload = server.post(
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "run_python_code", "arguments": {"python_code": "print('early')\n7"}}},
        session=session)
    assert response.getheader("Content-Type") == "text/event-stream"
    messages = sse_messages(payload)
    assert messages[0]["method"] == "notifications/message"
    assert messages[0]["params"]["data"] == "early"
    assert messages[-1]["id"] == 2
    assert messages[-1]["result"]["structuredContent"]["return_value"] == "7"
    response, payload = server.post(
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "run_python_code", "arguments": {"python_code": "8"}}},
        session=session, headers={"Accept": "application/json"})
    assert json.loads(payload)["result"]["structuredContent"]["return_value"] == "8"


def test_http_excess_calls_get_a_busy_error(server):
    session = server.initialize()
    results = {}

    def long_call():
        results["long"] = server.post(
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "run_python_code",
                        "arguments": {"python_code": "while True: pass", "timeout_seconds": 3}}},
            session=session, headers={"Accept": "application/json"})

    thread = threading.Thread(target=long_call)
    thread.start()
    time.sleep(1)
    _, payload = server.post(
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "run_python_code", "arguments": {"python_code": "1"}}},
        session=session, headers={"Accept": "application/json"})
    error = json.loads(payload)["error"]
    assert error["code"] == -32000 and "busy" in error["message"]
    thread.join()
    long_result = json.loads(results["long"][1])["result"]["structuredContent"]
    assert long_result["capsule_status"] == "timeout"


def test_http_client_disconnect_kills_the_run(server):
    session = server.initialize()
    raw = socket.create_connection(("127.0.0.1", server.port))
    body = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": {"name": "run_python_code",
                                  "arguments": {"python_code": "while True: pass"}}}).encode()
    raw.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Accept: text/event-stream\r\nAuthorization: Bearer secret-token\r\n"
                b"Mcp-Session-Id: " + session.encode() + b"\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert raw.recv(100).startswith(b"HTTP/1.1 200")
    time.sleep(0.5)
    raw.close()
    # The run is cancelled: the next call gets the only worker long before
    # the 30 s default limit.
    # (The server notices the closed connection at its next heartbeat, ~1 s.)
    started = time.monotonic()
    while True:
        _, payload = server.post(
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
             "params": {"name": "run_python_code", "arguments": {"python_code": "'free'"}}},
            session=session, headers={"Accept": "application/json"})
        reply = json.loads(payload)
        if "result" in reply or time.monotonic() - started > 20:
            break
        assert reply["error"]["code"] == -32000  # busy: the cancelled run is still ending
        time.sleep(0.2)
    assert reply["result"]["structuredContent"]["return_value"] == "free"
    assert time.monotonic() - started < 20
    # No child keeps spinning: the cancelled worker is dead, not abandoned.
    def cpu_ticks():
        ticks = {}
        for pid in server.children():
            try:
                fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks[pid] = int(fields[11]) + int(fields[12])
            except (FileNotFoundError, ProcessLookupError):
                pass
        return ticks

    before = cpu_ticks()
    time.sleep(1)
    after = cpu_ticks()
    spinning = [pid for pid in after if after[pid] - before.get(pid, after[pid]) > 50]
    assert not spinning
    # One sandbox: its zygote, a pool of two, and at most the last finished
    # worker (reaped on the next call); the cancelled worker is not among them.
    assert len(after) <= 4


def test_http_a_slow_client_does_not_block_others(server):
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{")
    session = server.initialize()
    response, _ = server.post({"jsonrpc": "2.0", "id": 2, "method": "ping"}, session=session)
    assert response.status == 200
    slow.close()


def test_artifacts_come_back_as_mcp_content(stdio):
    result = run_code(stdio, "import base64\n"
                             "open('/output/chart.png', 'wb').write(b'\\x89PNG\\r\\n\\x1a\\nfake')\n"
                             "open('/output/table.csv', 'w').write('a,b\\n1,2\\n')\n"
                             "open('/output/blob.bin', 'wb').write(bytes(range(256)))")
    content = result["content"]
    assert content[0]["type"] == "text"
    by_kind = {block["type"]: block for block in content[1:]}
    image = next(b for b in content if b["type"] == "image")
    assert image["mimeType"] == "image/png"
    assert base64.b64decode(image["data"]) == b"\x89PNG\r\n\x1a\nfake"
    resources = {b["resource"]["uri"]: b["resource"] for b in content if b["type"] == "resource"}
    assert resources["file:///output/table.csv"]["text"] == "a,b\n1,2\n"
    assert resources["file:///output/table.csv"]["mimeType"] == "text/csv"
    assert base64.b64decode(resources["file:///output/blob.bin"]["blob"]) == bytes(range(256))
    names = sorted(a["name"] for a in result["structuredContent"]["artifacts"])
    assert names == ["blob.bin", "chart.png", "table.csv"]
    assert "resource" in by_kind


def test_serve_takes_the_mount_options(binary, tmp_path):
    (tmp_path / "howto.md").write_text("# How to do it\n\nCarefully.\n")
    server = Stdio(binary, "--docs", str(tmp_path))
    try:
        result = run_code(server, "open('/docs/howto.md').read().splitlines()[0] + ' / ' + "
                                  "open('/docs/README.md').read().count('How to do it').__str__()")
        assert result["structuredContent"]["return_value"] == "# How to do it / 1"
        result = run_code(server, "open('/docs/new.md', 'w')", id=2)
        assert result["structuredContent"]["status"] == "run-error"
    finally:
        server.close()
    completed = subprocess.run([str(binary), "serve", "--stdio", "--output-dir", str(tmp_path)],
                               capture_output=True, timeout=60, env=_environment())
    assert completed.returncode == 2 and b"--output-dir is for run" in completed.stderr
