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
                if self.path.startswith("/anthropic"):
                    self.anthropic()
                    return
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

            def anthropic(self):
                """The Messages API's answers: /anthropic/v1/messages answers
                text blocks; ?case=bad a 400 with Anthropic's error body,
                ?case=gateway a 502 that is not JSON, ?case=garbled a 200
                that is not JSON."""
                if self.path.endswith("?case=bad"):
                    status, kind = 400, "application/json"
                    reply = json.dumps({"type": "error", "error": {
                        "type": "invalid_request_error",
                        "message": "messages.0.content.0.image.source: image exceeds 5 MB"}}).encode()
                elif self.path.endswith("?case=gateway"):
                    status, kind, reply = 502, "text/html", b"<html>502 Bad Gateway</html>"
                elif self.path.endswith("?case=garbled"):
                    status, kind, reply = 200, "application/json", b"{not json"
                else:
                    status, kind = 200, "application/json"
                    reply = json.dumps({"id": "msg_1", "type": "message", "role": "assistant",
                                        "content": [{"type": "text", "text": ANSWER[:10]},
                                                    {"type": "text", "text": ANSWER[10:]}],
                                        "stop_reason": "end_turn"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

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


# --- Anthropic's Messages API -----------------------------------------------

ANTHROPIC_PATH = "/anthropic/v1/messages"


def anthropic_options(provider, path=ANTHROPIC_PATH):
    """The key from an environment variable (--describe-key-env)."""
    return ["--describe-url", provider.url + path, "--describe-key-env", "CAPSULE_TEST_KEY"]


ANTHROPIC_ENV = {"CAPSULE_TEST_KEY": KEY}


def test_anthropic_request_shape(capsule, provider, tmp_path):
    """A .../v1/messages URL speaks Anthropic's API: x-api-key and
    anthropic-version headers, no bearer token, the image as a base64
    source block with its media type, then the question; the answer's
    text blocks are joined."""
    question = "What is in the image?"
    result = capsule.json(MAKE_PNG + f"import capsule\ncapsule.describe('/tmp/square.png', {question!r})",
                          *anthropic_options(provider), env=ANTHROPIC_ENV)
    assert result["status"] == "success", result
    assert result["return_value"] == repr(ANSWER)
    [request] = provider.requests
    headers = {name.lower(): value for name, value in request["headers"].items()}
    assert request["path"] == ANTHROPIC_PATH
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers
    body = request["body"]
    assert body["model"] == "claude-sonnet-4-5" and body["max_tokens"] > 0
    [message] = body["messages"]
    assert message["role"] == "user"
    image, text = message["content"]
    assert image["type"] == "image"
    assert image["source"]["type"] == "base64"
    assert image["source"]["media_type"] == "image/png"
    assert base64.b64decode(image["source"]["data"]) == PNG
    assert text == {"type": "text", "text": question}
    assert KEY not in json.dumps(result)


def test_anthropic_pdf_and_text_with_an_explicit_api(capsule, provider, tmp_path):
    """--describe-api anthropic on a URL that does not end in /messages; a
    PDF goes as a document block, text as a text block."""
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    code = (f"import capsule\nopen('/tmp/report.pdf', 'wb').write({pdf!r})\n"
            "[capsule.describe('/tmp/report.pdf', 'Summarise it.'),\n"
            " capsule.describe('Hello, world'.encode(), 'Which language?')]")
    result = capsule.json(code, "--describe-url", provider.url + "/anthropic/proxy",
                          "--describe-api", "anthropic", "--describe-key-env", "CAPSULE_TEST_KEY",
                          "--describe-model", "claude-test", env=ANTHROPIC_ENV)
    assert result["status"] == "success", result
    first, second = (request["body"] for request in provider.requests)
    assert first["model"] == "claude-test"
    document, question = first["messages"][0]["content"]
    assert document["type"] == "document"
    assert document["source"] == {"type": "base64", "media_type": "application/pdf",
                                  "data": base64.b64encode(pdf).decode()}
    assert question == {"type": "text", "text": "Summarise it."}
    text, question = second["messages"][0]["content"]
    assert text["type"] == "text" and "Hello, world" in text["text"]
    assert question["text"] == "Which language?"


def test_anthropic_errors_are_clear(capsule, provider, tmp_path):
    code = ("import capsule\nfrom capsule.functions import ToolError\n"
            "try:\n    capsule.describe(b'some text', 'what?')\n"
            "except (ToolError, TimeoutError) as e:\n    r = f'{type(e).__name__}: {e}'\nr")
    bad = capsule.json(code, *anthropic_options(provider, ANTHROPIC_PATH + "?case=bad"), env=ANTHROPIC_ENV)
    assert "ToolError" in bad["return_value"] and "HTTP 400" in bad["return_value"], bad
    assert "image exceeds 5 MB" in bad["return_value"], bad
    gateway = capsule.json(code, *anthropic_options(provider, ANTHROPIC_PATH + "?case=gateway"),
                           env=ANTHROPIC_ENV)
    assert "HTTP 502" in gateway["return_value"] and "not JSON" in gateway["return_value"], gateway
    garbled = capsule.json(code, *anthropic_options(provider, ANTHROPIC_PATH + "?case=garbled"),
                           env=ANTHROPIC_ENV)
    assert "has no text (content[].text)" in garbled["return_value"], garbled
    assert "not JSON" in garbled["return_value"], garbled
    started = time.monotonic()
    slow = capsule.json(code, "--describe-url", provider.url + "/slow/v1/messages",
                        "--describe-key-env", "CAPSULE_TEST_KEY", "--timeout", "3",
                        env=ANTHROPIC_ENV)
    assert time.monotonic() - started < 8
    assert "TimeoutError" in (slow["return_value"] or "") or slow["status"] == "timeout", slow
    assert provider.requests[-1]["headers"]["x-api-key"] == KEY


def test_describe_options_are_checked(capsule, provider):
    missing = capsule.run("--describe-url", provider.url + ANTHROPIC_PATH, "--describe-key-env",
                          "CAPSULE_NO_SUCH_VARIABLE", code="1")
    assert missing.returncode != 0
    assert b"CAPSULE_NO_SUCH_VARIABLE holds no key" in missing.stderr
    wrong = capsule.run("--describe-url", provider.url, "--describe-api", "gemini", code="1")
    assert wrong.returncode != 0 and b"openai, anthropic or auto" in wrong.stderr
    assert provider.requests == []


# --- sizes -------------------------------------------------------------------

MAKE_LARGE = ("from PIL import Image, ImageDraw\n"
              "image = Image.new('RGB', (4000, 3000), 'white')\n"
              "ImageDraw.Draw(image).rectangle((1000, 750, 3000, 2250), fill='red')\n"
              "image.save('/tmp/large.png')\n")
# The start of a JPEG (SOI, JFIF, a baseline frame of 32x16, EOI), with no
# tables or scan: the guest's Pillow cannot decode it, and the host only
# reads the header.
JPEG = (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        b"\xff\xc0\x00\x11\x08\x00\x10\x00\x20\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
        b"\xff\xd9")
MAKE_JPEG = f"open('/tmp/photo.png', 'wb').write({JPEG!r})\n"


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_a_large_image_is_downscaled_in_the_session(binary, provider, tmp_path):
    """A 4000x3000 PNG made in the session: the MCP tool's session program
    shrinks it with the guest's Pillow, and the provider receives a PNG at
    most 1568 px a side and 5 MiB.  A JPEG named .png goes as image/jpeg
    (the media type is read from the bytes)."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    server = Stdio(binary, "--describe-url", provider.url + ANTHROPIC_PATH,
                   "--describe-key-file", str(key_file))
    try:
        session = server.request("tools/call", {"name": "create_session", "arguments": {}}, 2)
        session_id = session["result"]["structuredContent"]["session_id"]
        made = server.request("tools/call", {"name": "run_python_code", "arguments": {
            "python_code": MAKE_LARGE + MAKE_JPEG, "session_id": session_id}}, 3)
        assert made["result"]["structuredContent"]["status"] == "success", made
        # Pillow in wasm takes its time over 12 million pixels (longer under ASan).
        server.send({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "describe", "arguments": {"session_id": session_id, "path": "/tmp/large.png",
                                              "question": "Which colour?"}}})
        response = server.receive(timeout=300)
        assert response["result"]["isError"] is False, response
        assert response["result"]["content"][0]["text"] == ANSWER
        [request] = provider.requests
        source = request["body"]["messages"][0]["content"][0]["source"]
        assert source["media_type"] == "image/png"
        sent = base64.b64decode(source["data"])
        width, height = png_size(sent)
        assert (width, height) == (1568, 1176), (width, height)
        assert len(sent) <= 5 << 20
        # The session's globals are untouched by the fixed program.
        leaked = server.request("tools/call", {"name": "run_python_code", "arguments": {
            "python_code": "sorted(n for n in globals() if not n.startswith('__'))",
            "session_id": session_id}}, 5)
        assert "main" not in leaked["result"]["structuredContent"]["return_value"], leaked
        jpeg = server.request("tools/call", {"name": "describe", "arguments": {
            "session_id": session_id, "path": "/tmp/photo.png", "question": "What is it?"}}, 6)
        assert jpeg["result"]["structuredContent"]["media_type"] == "image/jpeg", jpeg
        sent = provider.requests[1]["body"]["messages"][0]["content"][0]["source"]
        assert sent["media_type"] == "image/jpeg"
        assert base64.b64decode(sent["data"])[:3] == b"\xff\xd8\xff"
        # A 6 MiB JPEG: too large to send as it is, and the guest's Pillow
        # cannot decode it to make it smaller: a clear error, no request.
        server.request("tools/call", {"name": "run_python_code", "arguments": {
            "python_code": f"open('/tmp/big.jpg', 'wb').write({JPEG[:-2]!r} + bytes(6 << 20))",
            "session_id": session_id}}, 7)
        big = server.request("tools/call", {"name": "describe", "arguments": {
            "session_id": session_id, "path": "/tmp/big.jpg", "question": "What is it?"}}, 8)
        assert big["result"]["isError"] is True, big
        assert "smaller" in big["result"]["content"][0]["text"], big
        assert len(provider.requests) == 2
    finally:
        server.close()


def test_the_guest_makes_a_large_image_smaller_or_it_is_refused(capsule, provider, tmp_path):
    """capsule.describe() shrinks an image over the caps with Pillow in the
    guest before it is sent; what Pillow cannot open there (a JPEG with no scan) is
    sent as it is, and the host refuses it when its header says it is too
    large; an image whose header gives no size is refused too."""
    wide_jpeg = JPEG.replace(b"\x00\x10\x00\x20\x03", b"\x0b\xb8\x0f\xa0\x03")
    code = (MAKE_LARGE + "import capsule\n"
            "answer = capsule.describe('/tmp/large.png', 'Which colour?')\nerrors = []\n"
            f"for data in ({wide_jpeg!r}, b'\\x89PNG\\r\\n\\x1a\\n' + b'x' * 40):\n"
            "    try:\n        capsule.describe(data, 'what?')\n"
            "    except TypeError as e:\n        errors.append(str(e))\n[answer, errors]")
    result = capsule.json(code, *options(provider, tmp_path), timeout=300)
    assert result["status"] == "success", result
    value = result["return_value"]
    assert repr(ANSWER) in value, value
    assert "the image is 4000x3000 px" in value and "thumbnail((1568, 1568))" in value, value
    assert "no readable size" in value, value
    [request] = provider.requests
    url = request["body"]["messages"][0]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = base64.b64decode(url[len("data:image/png;base64,"):])
    assert png_size(sent) == (1568, 1176) and len(sent) <= 5 << 20
