"""MCP 2026-07-28 (stateless) beside the legacy revisions, spoken raw.

What a well-behaved client never sends: mismatched Mcp-Method / Mcp-Name
headers, missing _meta, tampered or foreign requestState.  The conformance
suite and the SDK v2 client (tests/interop) cover the well-behaved side.
"""
import base64
import json
import time

import pytest

from conftest import BUILD, ROOT
from test_mcp import HttpServer, Stdio

VERSION = "2026-07-28"
HOST_PYTHON = "/usr/bin/python3"


def _current_binaries():
    """capsule, and capsule-asan when it was built from the current MCP
    sources (a stale one predates 2026-07-28 and would only measure that)."""
    newest = max(path.stat().st_mtime for path in (ROOT / "src" / "mcp").iterdir())
    return [path for path in (BUILD / "capsule", BUILD / "capsule-asan")
            if path.exists() and (path.name == "capsule" or path.stat().st_mtime >= newest)]


@pytest.fixture(params=_current_binaries(), ids=lambda p: p.name)
def binary(request):
    return request.param


def meta(capabilities=None, **extra):
    value = {"io.modelcontextprotocol/protocolVersion": VERSION,
             "io.modelcontextprotocol/clientCapabilities": capabilities or {}}
    value.update(extra)
    return value


def stateless_post(server, method, params=None, id=7, headers=None, with_meta=True):
    params = dict(params or {})
    if with_meta:
        params.setdefault("_meta", meta())
    all_headers = {"MCP-Protocol-Version": VERSION, "Mcp-Method": method}
    name = params.get("name") if method == "tools/call" else None
    if name:
        all_headers["Mcp-Name"] = name
    all_headers.update(headers or {})
    all_headers = {k: v for k, v in all_headers.items() if v is not None}
    response, payload = server.post({"jsonrpc": "2.0", "id": id, "method": method, "params": params},
                                    all_headers)
    text = payload.decode()
    if response.getheader("Content-Type", "").startswith("text/event-stream"):
        messages = [json.loads(line[6:]) for line in text.splitlines()
                    if line.startswith("data: ") and len(line) > 6]
        body = next(m for m in messages if "id" in m)
    else:
        body = json.loads(text)
    return response, body


@pytest.fixture
def server(binary):
    instance = HttpServer(binary, "--workers", "1")
    yield instance
    instance.stop()


# --- both eras on one endpoint ---------------------------------------------------

def test_discover_without_initialize_or_session(server):
    response, body = stateless_post(server, "server/discover")
    assert response.status == 200, body
    assert response.getheader("Mcp-Session-Id") is None
    result = body["result"]
    assert result["supportedVersions"] == [VERSION]
    assert "tools" in result["capabilities"]
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "capsule"


def test_tools_list_has_caching_hints_and_legacy_still_works(server):
    response, body = stateless_post(server, "tools/list")
    assert response.status == 200, body
    assert body["result"]["cacheScope"] == "public"
    assert isinstance(body["result"]["ttlMs"], int) and body["result"]["ttlMs"] > 0
    # The same server, the same endpoint, a 2025-11-25 client.
    session = server.initialize()
    assert session
    response, payload = server.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                                    {"MCP-Protocol-Version": "2025-11-25"}, session=session)
    assert response.status == 200
    legacy = json.loads(payload)["result"]
    assert "resultType" not in legacy and "ttlMs" not in legacy


def test_a_stateless_call_runs_python(server):
    response, body = stateless_post(server, "tools/call", {
        "name": "run_python_code", "arguments": {"python_code": "print('hi')\n6 * 7"}})
    assert response.status == 200, body
    assert body["result"]["resultType"] == "complete"
    assert body["result"]["structuredContent"]["return_value"] == "42"


@pytest.mark.parametrize("headers, code", [
    ({"Mcp-Method": "tools/list"}, -32020),           # another method than the body's
    ({"Mcp-Method": "TOOLS/CALL"}, -32020),           # method names are case-sensitive
    ({"Mcp-Method": None}, -32020),                   # missing
    ({"Mcp-Name": "read_file"}, -32020),              # another tool than the body's
    ({"Mcp-Name": None}, -32020),                     # missing on tools/call
    ({"MCP-Protocol-Version": "2025-11-25"}, -32020), # the header disagrees with _meta
])
def test_mismatched_headers_are_refused_before_anything_runs(server, headers, code):
    response, body = stateless_post(server, "tools/call", {
        "name": "run_python_code",
        "arguments": {"python_code": "open('/output/ran', 'w').write('x')"}}, id=41,
        headers=headers)
    assert response.status == 400, body
    assert body["error"]["code"] == code, body
    assert body["id"] == 41
    assert "header mismatch" in body["error"]["message"]


def test_header_whitespace_is_allowed(server):
    response, body = stateless_post(server, "tools/call", {
        "name": "run_python_code", "arguments": {"python_code": "1"}},
        headers={"Mcp-Name": "  run_python_code  "})
    assert response.status == 200, body


def test_missing_meta_unsupported_version_and_unknown_methods(server):
    response, body = stateless_post(server, "tools/list", with_meta=False, id=3)
    assert (response.status, body["error"]["code"], body["id"]) == (400, -32602, 3)
    response, body = stateless_post(server, "tools/list", {"_meta": {
        "io.modelcontextprotocol/protocolVersion": VERSION}})  # no clientCapabilities
    assert (response.status, body["error"]["code"]) == (400, -32602)
    response, body = stateless_post(server, "tools/list", {"_meta": meta(**{
        "io.modelcontextprotocol/protocolVersion": "2099-01-01"})},
        headers={"MCP-Protocol-Version": "2099-01-01"})
    assert (response.status, body["error"]["code"]) == (400, -32022)
    assert body["error"]["data"] == {"supported": [VERSION], "requested": "2099-01-01"}
    for method in ("initialize", "ping", "logging/setLevel", "prompts/list", "no/such"):
        response, body = stateless_post(server, method, id=9)
        assert (response.status, body["error"]["code"], body["id"]) == (404, -32601, 9), method


def test_malformed_stateless_input_never_crashes_the_server(server):
    for params in ({"_meta": "not an object"}, {"_meta": meta(), "name": 5},
                   {"_meta": meta(), "name": "run_python_code", "arguments": [],
                    "inputResponses": None},
                   {"_meta": meta(), "name": "run_python_code",
                    "arguments": {"python_code": "1"}, "requestState": 12}):
        response, payload = server.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                         "params": params},
                                        {"MCP-Protocol-Version": VERSION, "Mcp-Method": "tools/call",
                                         "Mcp-Name": "run_python_code"})
        assert response.status in (200, 400), payload
        assert "error" in json.loads(payload.decode().split("data: ")[-1]) or b'"isError":true' in payload
    response, body = stateless_post(server, "server/discover")
    assert response.status == 200


def test_principals_stay_apart_without_sessions(binary, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("token-alice\ntoken-bob\n")
    server = HttpServer(binary, "--workers", "1", "--token-file", str(tokens), token="token-alice")
    try:
        _, created = stateless_post(server, "tools/call", {"name": "create_session", "arguments": {}})
        session_id = created["result"]["structuredContent"]["session_id"]
        _, body = stateless_post(server, "tools/call", {"name": "list_files", "arguments": {
            "session_id": session_id}})
        assert body["result"]["isError"] is False, body  # alice reaches her session
        server.token = "token-bob"
        _, body = stateless_post(server, "tools/call", {"name": "list_files", "arguments": {
            "session_id": session_id}})
        assert body["result"]["isError"] is True
        assert "no such session" in body["result"]["content"][0]["text"]
    finally:
        server.stop()


# --- stdio ------------------------------------------------------------------------

class StdioAll(Stdio):
    def receive_all(self, id, timeout=60):
        """Every message up to the response to `id`."""
        deadline = time.monotonic() + timeout
        messages = []
        while time.monotonic() < deadline:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line, self.process.stderr.read().decode(errors="replace")
            message = json.loads(line)
            messages.append(message)
            if message.get("id") == id and "method" not in message:
                return messages
        raise AssertionError("no response")


def test_stdio_logs_only_when_the_request_names_a_level(binary):
    server = StdioAll(binary)
    try:
        code = {"name": "run_python_code", "arguments": {"python_code": "print('line')"}}
        server.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                     "params": {**code, "_meta": meta()}})
        quiet = server.receive_all(1)
        assert quiet[-1]["result"]["resultType"] == "complete"
        assert not [m for m in quiet if m.get("method") == "notifications/message"]
        server.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                     "params": {**code, "_meta": meta(**{"io.modelcontextprotocol/logLevel": "info"})}})
        loud = server.receive_all(2)
        logs = [m for m in loud if m.get("method") == "notifications/message"]
        assert logs and logs[0]["params"]["data"] == "line"
        # Off HTTP there are no headers to check, but the rest holds.
        server.send({"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"_meta": meta()}})
        assert server.receive()["error"]["code"] == -32601
    finally:
        server.close()


# --- input_required: host-function approval, signed requestState ---------------------

PAY = "import sys, pathlib\npathlib.Path(sys.argv[1]).write_text('paid')\nprint('{\"ok\": true}')\n"
CODE = ("from capsule.functions import pay\ntry:\n    r = pay(amount=10)\n"
        "except PermissionError as e:\n    r = 'refused: ' + str(e)\nr")


@pytest.fixture
def approval_config(tmp_path):
    (tmp_path / "pay.py").write_text(PAY)
    marker = tmp_path / "paid.txt"
    config = tmp_path / "functions.json"
    config.write_text(json.dumps({"functions": {"pay": {
        "command": [HOST_PYTHON, str(tmp_path / "pay.py"), str(marker)],
        "description": "Pays an invoice.", "needs_approval": True}}}))
    return config, marker


def call(server, id, arguments, capabilities=None, **extra):
    params = {"name": "run_python_code", "arguments": arguments,
              "_meta": meta(capabilities), **extra}
    return server.request("tools/call", params, id=id)


def ask(server, id=1, code=CODE):
    first = call(server, id, {"python_code": code}, {"elicitation": {}})
    result = first["result"]
    assert result["resultType"] == "input_required", first
    (key, request), = result["inputRequests"].items()
    assert request["method"] == "elicitation/create"
    assert "'pay'" in request["params"]["message"]
    return key, result["requestState"]


def approve(key):
    return {key: {"action": "accept", "content": {"approve": True}}}


def test_approval_round_trip(binary, approval_config):
    config, marker = approval_config
    server = Stdio(binary, "--config", str(config))
    try:
        key, state = ask(server)
        assert not marker.exists()  # asked before running it
        done = call(server, 2, {"python_code": CODE}, {"elicitation": {}},
                    inputResponses=approve(key), requestState=state)
        assert done["result"]["resultType"] == "complete", done
        assert "ok" in done["result"]["structuredContent"]["return_value"]
        assert marker.read_text() == "paid"
    finally:
        server.close()


def test_without_elicitation_the_call_is_refused_as_before(binary, approval_config):
    config, marker = approval_config
    server = Stdio(binary, "--config", str(config))
    try:
        result = call(server, 1, {"python_code": CODE})["result"]
        assert result["resultType"] == "complete"
        assert "refused: " in result["structuredContent"]["return_value"]
        assert not marker.exists()
    finally:
        server.close()


def _flip(text, index):
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


def test_tampered_and_foreign_request_state_are_rejected(binary, approval_config):
    config, marker = approval_config
    server = Stdio(binary, "--config", str(config))
    other = Stdio(binary, "--config", str(config))
    try:
        key, state = ask(server)
        payload, mac = state.split(".")
        # Granting itself the approval in the payload, keeping the old MAC.
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        decoded["approved"] = [["pay", json.dumps({"amount": 10})]]
        forged = base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode().rstrip("=")
        for bad in (state + "-TAMPERED", _flip(payload, 5) + "." + mac,
                    payload + "." + _flip(mac, 3), forged + "." + mac, "garbage", ""):
            response = call(server, 3, {"python_code": CODE}, {"elicitation": {}},
                            inputResponses=approve(key), requestState=bad)
            assert response["error"]["code"] == -32602, (bad, response)
            assert "requestState rejected" in response["error"]["message"]
        # Another server's state (another key), and this one's for other arguments.
        other_key, other_state = ask(other)
        response = call(server, 4, {"python_code": CODE}, {"elicitation": {}},
                        inputResponses=approve(other_key), requestState=other_state)
        assert "requestState rejected" in response["error"]["message"]
        response = call(server, 5, {"python_code": CODE + "\n"}, {"elicitation": {}},
                        inputResponses=approve(key), requestState=state)
        assert "requestState rejected" in response["error"]["message"]
        assert not marker.exists()  # nothing ran on a rejected state
        # The genuine state still works after all that.
        done = call(server, 6, {"python_code": CODE}, {"elicitation": {}},
                    inputResponses=approve(key), requestState=state)
        assert done["result"]["resultType"] == "complete", done
        assert marker.exists()
    finally:
        server.close()
        other.close()


def test_tampered_request_state_over_http(binary, approval_config):
    config, marker = approval_config
    server = HttpServer(binary, "--workers", "1", "--config", str(config))
    try:
        capabilities = {"elicitation": {}}
        params = {"name": "run_python_code", "arguments": {"python_code": CODE},
                  "_meta": meta(capabilities)}
        response, body = stateless_post(server, "tools/call", params)
        result = body["result"]
        assert result["resultType"] == "input_required", body
        key = next(iter(result["inputRequests"]))
        response, body = stateless_post(server, "tools/call", {
            **params, "inputResponses": approve(key),
            "requestState": result["requestState"] + "-TAMPERED"})
        assert body["error"]["code"] == -32602 and "requestState rejected" in body["error"]["message"]
        assert not marker.exists()
    finally:
        server.stop()


# --- input_required: describe through the client's model (sampling) ----------------

def tiny_png(red=255):
    import struct
    import zlib
    raw = b"\x00" + bytes([red, 0, 0]) * 2

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw * 2)) + chunk(b"IEND", b""))


def tool(server, id, name, arguments, capabilities=None, **extra):
    return server.request("tools/call", {"name": name, "arguments": arguments,
                                         "_meta": meta(capabilities), **extra}, id=id)


def session_with_png(server, png):
    created = tool(server, 1, "create_session", {})
    session_id = created["result"]["structuredContent"]["session_id"]
    written = tool(server, 2, "write_file", {"session_id": session_id, "path": "/work/a.png",
                                             "content": base64.b64encode(png).decode(),
                                             "encoding": "base64"})
    assert written["result"]["isError"] is False, written
    return session_id


SAMPLED = {"role": "assistant", "model": "client-model",
           "content": {"type": "text", "text": "A red square."}}


def test_describe_asks_the_clients_model_with_input_required(binary):
    server = Stdio(binary)
    try:
        png = tiny_png()
        session_id = session_with_png(server, png)
        arguments = {"session_id": session_id, "path": "/work/a.png", "question": "What is it?"}
        first = tool(server, 3, "describe", arguments, {"sampling": {}})["result"]
        assert first["resultType"] == "input_required", first
        (key, request), = first["inputRequests"].items()
        assert request["method"] == "sampling/createMessage"
        image, question = request["params"]["messages"]
        assert image["content"]["type"] == "image"
        assert image["content"]["mimeType"] == "image/png"
        assert base64.b64decode(image["content"]["data"]) == png
        assert question["content"] == {"type": "text", "text": "What is it?"}
        assert request["params"]["maxTokens"] > 0
        done = tool(server, 4, "describe", arguments, {"sampling": {}},
                    inputResponses={key: SAMPLED}, requestState=first["requestState"])["result"]
        assert done["resultType"] == "complete" and done["isError"] is False, done
        assert done["content"][0]["text"] == "A red square."
        assert done["structuredContent"]["model"] == "client-model"

        # A tampered state is refused before anything is read or answered.
        payload, mac = first["requestState"].split(".")
        for bad in (first["requestState"] + "x", _flip(payload, 4) + "." + mac, "garbage"):
            response = tool(server, 5, "describe", arguments, {"sampling": {}},
                            inputResponses={key: SAMPLED}, requestState=bad)
            assert response["error"]["code"] == -32602, response
            assert "requestState rejected" in response["error"]["message"]
        # A state is good only for the arguments it was issued for.
        other = tool(server, 6, "describe", {**arguments, "question": "Other?"}, {"sampling": {}},
                     inputResponses={key: SAMPLED}, requestState=first["requestState"])
        assert other["error"]["code"] == -32602

        # The file changed after the model was asked: its answer is not used.
        tool(server, 7, "write_file", {"session_id": session_id, "path": "/work/a.png",
                                       "content": base64.b64encode(tiny_png(red=0)).decode(),
                                       "encoding": "base64"})
        changed = tool(server, 8, "describe", arguments, {"sampling": {}},
                       inputResponses={key: SAMPLED}, requestState=first["requestState"])
        assert changed["result"]["isError"] is True, changed
        assert "file changed" in changed["result"]["content"][0]["text"]
    finally:
        server.close()


def test_describe_without_sampling_returns_the_file(binary):
    server = Stdio(binary)
    try:
        png = tiny_png()
        session_id = session_with_png(server, png)
        result = tool(server, 3, "describe", {"session_id": session_id, "path": "/work/a.png",
                                              "question": "What is it?"})["result"]
        assert result["resultType"] == "complete" and result["isError"] is False, result
        text, image = result["content"]
        assert "look at it" in text["text"] and "What is it?" in text["text"]
        assert image["type"] == "image" and image["mimeType"] == "image/png"
        assert base64.b64decode(image["data"]) == png
    finally:
        server.close()
