"""The MCP server against clients that are not what they should be.

Principals: a session belongs to the bearer token (or, without tokens, the
MCP session) that created it; another principal naming its id gets what an
unknown id gets.  Floods: idle and slow-header connections, opened from
other loopback addresses than the legitimate client (127.0.0.2... against
the per-address limit), must not slow a legitimate call down, and the
server must close connections whose headers do not arrive in time.

Loopback only; every socket and process is closed at the end of each test.
Guest code runs only inside capsule.
"""
import http.client
import json
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, ROOT

HEADER_SECONDS = 5          # src/mcp/http.c: a new connection's headers are due by then
PER_ADDRESS = 64            # the default --max-connections-per-address
TOKENS = ("token-of-alice", "token-of-bob")


@pytest.fixture(scope="module", autouse=True)
def enough_descriptors():
    """The floods need a few thousand sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 4500:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for the floods")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Server:
    """capsule serve --http on 127.0.0.1, with a token file or --no-auth."""

    def __init__(self, binary, tmp_path, *args, tokens=TOKENS):
        command = [str(binary), "serve", "--http", "127.0.0.1:0", "--workers", "2", *args]
        if tokens:
            token_file = tmp_path / "tokens"
            token_file.write_text("# one token a line\n" + "\n".join(tokens) + "\n\n")
            command += ["--token-file", str(token_file)]
        else:
            command.append("--no-auth")
        environment = dict(os.environ)
        environment.pop("CAPSULE_TOKEN", None)
        environment.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, env=environment, cwd=ROOT)
        log = b""
        while b"listening on" not in log:
            line = self.process.stderr.readline()
            assert line, log
            log += line
        self.port = int(re.search(rb"127\.0\.0\.1:(\d+)/mcp", log).group(1))

    def post(self, body, token=None, session=None, accept="application/json, text/event-stream"):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                                source_address=("127.0.0.1", 0))
        headers = {"Content-Type": "application/json", "Accept": accept}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if session:
            headers["Mcp-Session-Id"] = session
        try:
            connection.request("POST", "/mcp", json.dumps(body).encode(), headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        return response, payload

    def initialize(self, token=None):
        response, payload = self.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                       "params": {"protocolVersion": "2025-11-25",
                                                  "capabilities": {},
                                                  "clientInfo": {"name": "t", "version": "1"}}},
                                      token)
        assert response.status == 200, payload
        return response.getheader("Mcp-Session-Id")

    def call(self, session, token, name, arguments, id=2, accept="application/json"):
        """A tool call answered with JSON: its result (or the HTTP error body)."""
        response, payload = self.post({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                       "params": {"name": name, "arguments": arguments}},
                                      token, session, accept)
        message = json.loads(payload)
        assert response.status == 200, payload
        return message["result"]

    def flood_connections(self):
        """Established connections the server has accepted from addresses
        other than 127.0.0.1 (the legitimate client's)."""
        inodes = set()
        for fd in os.listdir(f"/proc/{self.process.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.process.pid}/fd/{fd}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        held = 0
        with open("/proc/net/tcp") as table:
            for line in list(table)[1:]:
                fields = line.split()
                remote_address, state = fields[2].split(":")[0], fields[3]
                held += fields[9] in inodes and state == "01" and remote_address != "0100007F"
        return held

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        stderr = self.process.stderr.read().decode(errors="replace")
        assert code == 0, stderr
        assert "ERROR: AddressSanitizer" not in stderr and "LeakSanitizer" not in stderr, stderr


@pytest.fixture
def server(binary, tmp_path):
    instance = Server(binary, tmp_path)
    yield instance
    instance.stop()


def text(result):
    return result["content"][0]["text"]


def value(result):
    return result["structuredContent"]["return_value"]


def test_the_guest_is_the_wasi_sandbox(server):
    session = server.initialize(TOKENS[0])
    result = server.call(session, TOKENS[0], "run_python_code",
                         {"python_code": "import sys; sys.platform"})
    if value(result) != "wasi":
        pytest.exit("refusing to run: the guest is not the WASI sandbox", 2)


# --- principals -----------------------------------------------------------------------


def test_minted_ids_carry_128_bits(server):
    mcp_sessions = {server.initialize(TOKENS[0]) for _ in range(3)}
    session = next(iter(mcp_sessions))
    minted = {server.call(session, TOKENS[0], "create_session", {}, id=i)
              ["structuredContent"]["session_id"] for i in range(3)}
    for identifier in mcp_sessions | minted:
        assert re.fullmatch(r"[0-9a-f]{32}", identifier), identifier  # 32 hex digits: 128 bits
    assert len(mcp_sessions) == 3 and len(minted) == 3


def test_another_token_cannot_reach_a_session(server):
    alice, bob = (server.initialize(token) for token in TOKENS)
    created = server.call(alice, TOKENS[0], "create_session", {})["structuredContent"]
    identifier = created["session_id"]
    result = server.call(alice, TOKENS[0], "run_python_code",
                         {"python_code": "secret = 'of alice'\nopen('note', 'w').write('x')",
                          "session_id": identifier})
    assert result["structuredContent"]["status"] == "success", text(result)

    unknown = "0123456789abcdef0123456789abcdef"
    for tool, arguments in (("list_files", {}), ("read_file", {"path": "note"}),
                            ("write_file", {"path": "note", "content": "y"}),
                            ("close_session", {})):
        theirs = server.call(bob, TOKENS[1], tool, {"session_id": identifier, **arguments})
        nobodys = server.call(bob, TOKENS[1], tool, {"session_id": unknown, **arguments})
        assert theirs["isError"] and nobodys["isError"], (tool, theirs)
        assert text(theirs) == text(nobodys).replace(unknown, identifier), tool
        assert "no such session" in text(theirs)
    # Naming it in run_python_code starts bob's own, new interpreter.
    result = server.call(bob, TOKENS[1], "run_python_code",
                         {"python_code": "secret", "session_id": identifier})
    assert "NameError" in text(result) and "of alice" not in json.dumps(result)
    # Alice's session is untouched, close_session by bob included.
    result = server.call(alice, TOKENS[0], "run_python_code",
                         {"python_code": "secret + ' ' + open('note').read()",
                          "session_id": identifier})
    assert value(result) == "of alice x"

    # The MCP session too: bob naming alice's gets what an unknown one gets.
    ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
    theirs, theirs_body = server.post(ping, TOKENS[1], alice)
    nobodys, nobodys_body = server.post(ping, TOKENS[1], unknown)
    assert (theirs.status, theirs_body) == (nobodys.status, nobodys_body) == \
        (404, nobodys_body)
    response, _ = server.post(ping, TOKENS[0], alice)
    assert response.status == 200


def test_the_same_name_from_two_tokens_is_two_interpreters(server):
    alice, bob = (server.initialize(token) for token in TOKENS)
    for session, token, name in ((alice, TOKENS[0], "alice"), (bob, TOKENS[1], "bob")):
        result = server.call(session, token, "run_python_code",
                             {"python_code": f"who = '{name}'", "session_id": "work"})
        assert result["structuredContent"]["status"] == "success", text(result)
    # A token reaches its sessions from any of its MCP sessions.
    alice_again = server.initialize(TOKENS[0])
    for session, token, name in ((alice_again, TOKENS[0], "alice"), (bob, TOKENS[1], "bob")):
        result = server.call(session, token, "run_python_code",
                             {"python_code": "who", "session_id": "work"})
        assert value(result) == name


def test_without_tokens_each_mcp_session_is_a_principal(binary, tmp_path):
    server = Server(binary, tmp_path, tokens=())
    try:
        first, second = server.initialize(), server.initialize()
        server.call(first, None, "run_python_code",
                    {"python_code": "who = 'first'", "session_id": "work"})
        result = server.call(second, None, "run_python_code",
                             {"python_code": "who", "session_id": "work"})
        assert "NameError" in text(result)
        result = server.call(first, None, "run_python_code",
                             {"python_code": "who", "session_id": "work"})
        assert value(result) == "first"
    finally:
        server.stop()


def test_the_token_file_takes_several_tokens_and_no_other(server):
    for token, status in ((TOKENS[0], 200), (TOKENS[1], 200), ("# one token a line", 401),
                          ("", 401), (TOKENS[0] + "x", 401), (TOKENS[0][:-1], 401)):
        response, _ = server.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                   "params": {"protocolVersion": "2025-11-25",
                                              "capabilities": {},
                                              "clientInfo": {"name": "t", "version": "1"}}},
                                  token or None)
        assert response.status == status, token


def test_a_token_is_never_cut_in_two(binary, tmp_path):
    """A line longer than a token may be is refused, not read as two tokens."""
    token_file = tmp_path / "tokens"
    token_file.write_text("a" * 1500 + "\n")
    completed = subprocess.run([str(binary), "serve", "--http", "127.0.0.1:0", "--token-file",
                                str(token_file)], capture_output=True, timeout=60, cwd=ROOT)
    assert completed.returncode != 0
    assert b"cannot read tokens" in completed.stderr


# --- floods --------------------------------------------------------------------------


class Flood:
    """Connections to the server from 127.0.0.2, 127.0.0.3... (`per_address`
    from each), closed at the end."""

    def __init__(self, port, count, per_address=PER_ADDRESS - 4, first_address=0):
        self.sockets = []
        try:
            for i in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.sockets.append(sock)
                address = first_address + i // per_address  # 0: 127.0.0.2
                sock.bind((f"127.0.{address // 200}.{2 + address % 200}", 0))
                sock.connect(("127.0.0.1", port))
        except BaseException:
            self.close()
            raise

    def send_to_all(self, data):
        for sock in self.sockets:
            try:
                sock.send(data)
            except OSError:
                pass  # closed by the server: what the deadline is for

    def closed_by_server(self, timeout):
        """How many sockets the server closed (end of stream or reset) within `timeout`."""
        selector = selectors.DefaultSelector()
        for sock in self.sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        closed, deadline = 0, time.monotonic() + timeout
        try:
            while closed < len(self.sockets) and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    try:
                        data = key.fileobj.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        closed += 1
                        selector.unregister(key.fileobj)
        finally:
            selector.close()
        return closed

    def close(self):
        for sock in self.sockets:
            sock.close()
        self.sockets = []


def wait_for_flood(server, count, timeout=3):
    """Until the server holds `count` flood connections."""
    deadline = time.monotonic() + timeout
    while (held := server.flood_connections()) < count:
        assert time.monotonic() < deadline, f"the server accepted {held} of {count} connections"
        time.sleep(0.05)


def timed_legitimate_call(server, token=TOKENS[0]):
    """initialize and a run_python_code call from 127.0.0.1: seconds taken."""
    started = time.monotonic()
    session = server.initialize(token)
    result = server.call(session, token, "run_python_code", {"python_code": "print(6 * 7)"})
    elapsed = time.monotonic() - started
    assert result["structuredContent"]["output"] == "42", result
    return elapsed


@pytest.fixture
def release_server(tmp_path):
    """The floods time the release build (the ASan one is several times slower)."""
    instance = Server(BUILD / "capsule", tmp_path)
    yield instance
    instance.stop()


def test_a_call_succeeds_beside_2000_idle_connections(release_server):
    server = release_server
    started = time.monotonic()
    flood = Flood(server.port, 2000)
    try:
        wait_for_flood(server, 2000)
        assert time.monotonic() - started < HEADER_SECONDS - 1.5, "the flood opened too slowly"
        elapsed = timed_legitimate_call(server)
        assert elapsed < 1.0, f"the legitimate call took {elapsed:.2f} s"
        # Connections that never sent their headers are closed after the deadline.
        closed = flood.closed_by_server(HEADER_SECONDS + 3 - (time.monotonic() - started))
        assert closed == 2000, f"only {closed} of 2000 idle connections were closed"
    finally:
        flood.close()
    assert timed_legitimate_call(server) < 1.0


def test_a_call_succeeds_beside_slow_headers(release_server):
    server = release_server
    started = time.monotonic()
    flood = Flood(server.port, 1000)
    try:
        wait_for_flood(server, 1000)
        flood.send_to_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        for second in range(3):  # a byte a second: never idle, never finished
            time.sleep(1)
            flood.send_to_all(b"a")
            elapsed = timed_legitimate_call(server)
            assert elapsed < 1.0, f"the legitimate call took {elapsed:.2f} s"
        closed = flood.closed_by_server(HEADER_SECONDS + 3 - (time.monotonic() - started))
        assert closed == 1000, f"only {closed} of 1000 slow connections were closed"
    finally:
        flood.close()


def test_one_address_gets_a_bounded_number_of_connections(release_server):
    server = release_server
    flood = Flood(server.port, PER_ADDRESS + 10, per_address=PER_ADDRESS + 10, first_address=100)
    try:
        # The connections beyond the limit are accepted and closed at once.
        assert flood.closed_by_server(2) == 10
        assert server.flood_connections() == PER_ADDRESS
        assert timed_legitimate_call(server) < 1.0
    finally:
        flood.close()


def test_oversized_headers_are_refused(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        reply = b""
        try:
            sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 65536 +
                         b"\r\n\r\n")
        except OSError:
            pass  # closed while sending: refused
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:
            pass
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:100]
    assert timed_legitimate_call(server) < 5.0


def test_a_running_json_call_does_not_hold_up_others(server):
    """A tool call answered with JSON runs off the event loop."""
    session = server.initialize(TOKENS[0])
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", "/mcp", json.dumps(
            {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
             "params": {"name": "run_python_code",
                        "arguments": {"python_code": "import time; time.sleep(3); 'slept'"}}}),
            {"Content-Type": "application/json", "Accept": "application/json",
             "Authorization": f"Bearer {TOKENS[0]}", "Mcp-Session-Id": session})
        time.sleep(0.5)  # the call runs
        started = time.monotonic()
        result = server.call(session, TOKENS[0], "run_python_code", {"python_code": "1 + 1"})
        assert value(result) == "2" and time.monotonic() - started < 1.0
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["result"]["structuredContent"]["return_value"] == \
            "slept"
    finally:
        connection.close()


def test_the_server_stops_with_calls_and_streams_open(binary, tmp_path):
    """SIGTERM while a call runs (SSE and JSON) and a GET stream is open:
    the calls are cancelled, every suspended connection is woken, and the
    server exits cleanly and soon."""
    server = Server(binary, tmp_path)
    sockets = []
    try:
        session = server.initialize(TOKENS[0])
        call = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                           "params": {"name": "run_python_code",
                                      "arguments": {"python_code": "while True: pass"}}}).encode()
        for accept in ("text/event-stream", "application/json"):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sockets.append(sock)
            sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nAccept: " + accept.encode() +
                         f"\r\nAuthorization: Bearer {TOKENS[0]}\r\nMcp-Session-Id: {session}"
                         f"\r\nContent-Length: {len(call)}\r\n\r\n".encode() + call)
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sockets.append(sock)
        sock.sendall(f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                     f"Authorization: Bearer {TOKENS[0]}\r\nMcp-Session-Id: {session}\r\n\r\n"
                     .encode())
        assert b"200" in sock.recv(4096).split(b"\r\n")[0]
        time.sleep(1.5)  # both calls run, the SSE one has had a heartbeat
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
        assert time.monotonic() - started < 10
    finally:
        for sock in sockets:
            sock.close()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    stderr = server.process.stderr.read().decode(errors="replace")
    assert server.process.returncode == 0, stderr
    assert "ERROR: AddressSanitizer" not in stderr and "LeakSanitizer" not in stderr, stderr
