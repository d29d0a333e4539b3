"""`describe`: the MCP tool and capsule.describe(), against a fake
OpenAI-compatible chat/completions provider on 127.0.0.1 written here.

The provider records each request so that its shape is checked: the
model, the question, the file as a data URL with its media type, the key
as a bearer token.  Guest code runs only inside capsule."""
import base64
import http.server
import json
import struct
import threading
import time
import zlib

import pytest

from test_mcp import Stdio

KEY = "sk-test-key-123"
ANSWER = "A red square on a white background."


def tiny_png():
    raw = b"\x00" + b"\xff\x00\x00" * 2
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw * 2)) + chunk(b"IEND", b""))


PNG = tiny_png()
# The same bytes, made by the guest (the guest has no host files).
MAKE_PNG = f"open('/tmp/square.png', 'wb').write(__import__('base64').b64decode({base64.b64encode(PNG).decode()!r}))\n"


class Provider:
    def __init__(self):
        self.requests = []
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                provider.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": json.loads(body)})
                if self.path.startswith("/slow"):
                    time.sleep(8)
                if self.path.startswith("/fail"):
                    self.send_response(500)
                    reply = b'{"error": {"message": "overloaded"}}'
                elif self.path.startswith("/empty"):
                    self.send_response(200)
                    reply = b'{"choices": []}'
                else:
                    self.send_response(200)
                    reply = json.dumps({"choices": [{"message": {"role": "assistant",
                                                                 "content": ANSWER}}]}).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                try:
                    self.wfile.write(reply)
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider():
    instance = Provider()
    yield instance
    instance.close()


def options(provider, tmp_path, path="/v1/chat/completions", model=None):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    args = ["--describe-url", provider.url + path, "--describe-key-file", str(key_file)]
    return args + (["--describe-model", model] if model else [])


def check_image_request(request, question):
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["model"] == "gpt-4o-mini"
    [message] = body["messages"]
    assert message["role"] == "user"
    text, image = message["content"]
    assert text == {"type": "text", "text": question}
    assert image["type"] == "image_url"
    prefix = "data:image/png;base64,"
    assert image["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(image["image_url"]["url"][len(prefix):]) == PNG


def test_without_a_backend_describe_returns_the_file(binary, capsule):
    """No endpoint and a client without sampling: the tool is still listed
    (its description says so) and hands the file back as content; the
    guest, with no model to ask, gets PermissionError."""
    server = Stdio(binary)
    try:
        server.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                      "clientInfo": {"name": "t", "version": "1"}})
        tools = {tool["name"]: tool for tool in server.request("tools/list", id=2)["result"]["tools"]}
        assert "help" in tools and "look at" in tools["describe"]["description"]
        created = server.request("tools/call", {"name": "create_session", "arguments": {}}, 3)
        session_id = created["result"]["structuredContent"]["session_id"]
        for path, content in (("/work/a.png", PNG), ("/work/notes.txt", b"plain words"),
                              ("/work/doc.pdf", b"%PDF-1.4 tiny"), ("/work/x.bin", b"\x00\x01")):
            server.request("tools/call", {"name": "write_file", "arguments": {
                "session_id": session_id, "path": path, "encoding": "base64",
                "content": base64.b64encode(content).decode()}}, 4)
        def describe(path):
            return server.request("tools/call", {"name": "describe", "arguments": {
                "session_id": session_id, "path": path, "question": "what?"}}, 5)["result"]
        image = describe("/work/a.png")
        assert image["isError"] is False and "look at it" in image["content"][0]["text"]
        assert image["content"][1]["mimeType"] == "image/png"
        assert base64.b64decode(image["content"][1]["data"]) == PNG
        text = describe("/work/notes.txt")["content"][1]
        assert text["type"] == "resource" and text["resource"]["text"] == "plain words"
        assert text["resource"]["uri"] == "file:///work/notes.txt"
        pdf = describe("/work/doc.pdf")["content"][1]["resource"]
        assert pdf["mimeType"] == "application/pdf"
        assert base64.b64decode(pdf["blob"]) == b"%PDF-1.4 tiny"
        binary_junk = describe("/work/x.bin")
        assert binary_junk["isError"] is True
        assert "unsupported media type" in binary_junk["content"][0]["text"]
        missing = server.request("tools/call", {"name": "describe", "arguments": {
            "session_id": "x", "path": "/tmp/a.png", "question": "what?"}}, 6)
        assert "no such session" in missing["result"]["content"][0]["text"]
    finally:
        server.close()
    result = capsule.json("import capsule\ntry:\n    capsule.describe(b'hello', 'what?')\n"
                          "except PermissionError as e:\n    r = str(e)\nr")
    assert "describe is not available" in result["return_value"], result


def test_the_mcp_tool_sends_the_image_and_the_question(binary, provider, tmp_path):
    server = Stdio(binary, *options(provider, tmp_path))
    try:
        tools = {tool["name"]: tool for tool in server.request("tools/list")["result"]["tools"]}
        assert tools["describe"]["inputSchema"]["required"] == ["session_id", "path", "question"]
        session = server.request("tools/call", {"name": "create_session", "arguments": {}}, 2)
        session_id = session["result"]["structuredContent"]["session_id"]
        made = server.request("tools/call", {"name": "run_python_code", "arguments": {
            "python_code": MAKE_PNG, "session_id": session_id}}, 3)
        assert made["result"]["structuredContent"]["status"] == "success", made
        question = "What shape and colour is in this picture?"
        response = server.request("tools/call", {"name": "describe", "arguments": {
            "session_id": session_id, "path": "/tmp/square.png", "question": question}}, 4)
        result = response["result"]
        assert result["isError"] is False, result
        assert result["content"][0]["text"] == ANSWER
        assert result["structuredContent"]["media_type"] == "image/png"
        [request] = provider.requests
        check_image_request(request, question)
        missing = server.request("tools/call", {"name": "describe", "arguments": {
            "session_id": session_id, "path": "/tmp/nothing.png", "question": "q"}}, 5)
        assert missing["result"]["isError"] is True
        assert len(provider.requests) == 1
    finally:
        server.close()


def test_the_guest_describes_a_file_it_made(capsule, provider, tmp_path):
    log = tmp_path / "audit.jsonl"
    question = "What is in the image?"
    result = capsule.json(MAKE_PNG + f"import capsule\ncapsule.describe('/tmp/square.png', {question!r})",
                          *options(provider, tmp_path), "--audit-log", str(log))
    assert result["status"] == "success", result
    assert result["return_value"] == repr(ANSWER)
    [request] = provider.requests
    check_image_request(request, question)
    assert KEY not in json.dumps(result)
    [line] = [json.loads(line) for line in log.read_text().splitlines()]
    assert line["function"] == "describe" and line["outcome"] == "ok"


def test_text_and_the_model_option(capsule, provider, tmp_path):
    result = capsule.json("import capsule\ncapsule.describe('hello, world'.encode(), 'Which language?')",
                          *options(provider, tmp_path, model="tiny-vision"))
    assert result["return_value"] == repr(ANSWER), result
    body = provider.requests[0]["body"]
    assert body["model"] == "tiny-vision"
    parts = body["messages"][0]["content"]
    assert parts[0]["text"] == "Which language?"
    assert parts[1]["type"] == "text" and "hello, world" in parts[1]["text"]


def test_bad_files_are_refused_before_any_request(capsule, provider, tmp_path):
    code = ("import capsule\nfrom capsule.functions import ToolError\nerrors = []\n"
            "for data in (b'\\x00\\x01junk' * 10, b'', b'\\x89PNG\\r\\n\\x1a\\n' + bytes(9 << 20)):\n"
            "    try:\n        capsule.describe(data, 'what?')\n"
            "    except Exception as e:\n        errors.append(f'{type(e).__name__}: {e}')\n"
            "try:\n    capsule.describe(b'text', '')\nexcept TypeError as e:\n"
            "    errors.append('TypeError: ' + str(e))\nerrors")
    result = capsule.json(code, *options(provider, tmp_path))
    assert result["status"] == "success", result
    value = result["return_value"]
    assert "unsupported media type" in value
    assert "the file is empty" in value
    assert "more than the 8388608 it may have" in value
    assert "non-empty string" in value
    assert provider.requests == []


def test_provider_errors_and_timeouts_are_clear(capsule, provider, tmp_path):
    code = ("import capsule\nfrom capsule.functions import ToolError\n"
            "try:\n    capsule.describe(b'some text', 'what?')\n"
            "except (ToolError, TimeoutError) as e:\n    r = f'{type(e).__name__}: {e}'\nr")
    failed = capsule.json(code, *options(provider, tmp_path, path="/fail"))
    assert "ToolError" in failed["return_value"] and "HTTP 500" in failed["return_value"], failed
    empty = capsule.json(code, *options(provider, tmp_path, path="/empty"))
    assert "has no text" in empty["return_value"], empty
    started = time.monotonic()
    slow = capsule.json(code, *options(provider, tmp_path, path="/slow"), "--timeout", "3")
    assert time.monotonic() - started < 8
    assert "TimeoutError" in (slow["return_value"] or "") or slow["status"] == "timeout", slow
