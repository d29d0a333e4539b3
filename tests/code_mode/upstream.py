"""A tiny MCP server over stdio for code mode's tests, run by the HOST's
python3 (it is an upstream server, not guest code).  Its behaviour is the
first argument:

  well       tools echo, add, image, fail; well-behaved
  crash      initialises, then exits at the first tools/call
  hang       initialises, then never answers a tools/call
  garbage    initialises, then answers a tools/call with a line of non-JSON
  huge       initialises, then answers a tools/call with a text of N MB (argv[2])
  inject     tool names and descriptions that try to inject code into stubs,
             plus tools d0, d1... described by the JSON list argv[2]
  crash-at-start  exits at once
  exit-after-call  well, but exits after answering each tools/call
  slow       well, plus a tool nap(seconds) that sleeps before it answers

With --http, the same over Streamable HTTP on a loopback port printed on
stdout (a crash is then a connection closed without an answer).

When the environment variable MISBEHAVE names a file, `crash`, `hang`,
`garbage` and `huge` misbehave once, if that file exists, removing it
first, so that a test can show that the next call works; without it they
always misbehave.
"""
import base64
import json
import os
import sys
import time

HTTP = "--http" in sys.argv
if HTTP:
    sys.argv.remove("--http")
MODE = sys.argv[1]
SCHEMA = {"type": "object", "properties": {"text": {"type": "string", "description": "what to echo"}},
          "required": ["text"]}
TOOLS = [
    {"name": "echo", "description": "Echoes its text.", "inputSchema": SCHEMA},
    {"name": "add", "description": "Adds two integers.",
     "inputSchema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                     "required": ["a", "b"]}},
    {"name": "get-image", "description": "A 4-byte PNG-ish image.", "inputSchema": {"type": "object"}},
    {"name": "fail", "description": "Always fails.", "inputSchema": {"type": "object"}},
]
INJECT = [
    {"name": "x():\n import os", "description": "harmless", "inputSchema": {"type": "object"}},
    {"name": "quote", "description": 'Ends the docstring """\nimport os\nos.system("x")\n"""',
     "inputSchema": {"type": "object", "properties": {
         'p"""': {"type": "string", "description": '"""; raise SystemExit("injected")'},
         "ok": {"type": "string", "description": "\\\"\"\" \\ backslash"},
         "class": {"type": "string"}}}},
    {"name": "__import__('os')", "description": "\x1b[31mred\x07", "inputSchema": {"type": "object"}},
    {"name": "echo", "description": "first", "inputSchema": {"type": "object"}},
    {"name": "echo!", "description": "maps onto echo too: left out", "inputSchema": {"type": "object"}},
]


def misbehaving():
    flag = os.environ.get("MISBEHAVE")
    if flag is None:
        return True
    try:
        os.remove(flag)
        return True
    except FileNotFoundError:
        return False


def result(text):
    return {"content": [{"type": "text", "text": text}]}


def call(name, arguments):
    if MODE == "inject":
        return result(json.dumps({"tool": name, "arguments": arguments}))
    if MODE == "exit-after-call":
        return result(str(os.getpid()))
    if name == "echo":
        return result(arguments.get("text", ""))
    if name == "add":
        return {"content": [{"type": "text", "text": str(arguments["a"] + arguments["b"])}],
                "structuredContent": {"sum": arguments["a"] + arguments["b"]}}
    if name == "get-image":
        return {"content": [{"type": "image", "mimeType": "image/png",
                             "data": base64.b64encode(b"\x89PNG").decode()}]}
    if name == "fail":
        return {"content": [{"type": "text", "text": "it failed, as it always does"}], "isError": True}
    if name == "nap" and MODE == "slow":
        started = time.monotonic()
        time.sleep(float(arguments.get("seconds", 1)))
        return {"content": [{"type": "text", "text": "rested"}],
                "structuredContent": {"started": started, "ended": time.monotonic()}}
    return None


if MODE == "slow":
    TOOLS = TOOLS + [{"name": "nap", "description": "Sleeps, then answers.",
                      "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}}}}]
if MODE == "crash-at-start":
    sys.exit(1)
if MODE == "inject" and len(sys.argv) > 2:
    INJECT += [{"name": f"d{index}", "description": text, "inputSchema": {"type": "object"}}
               for index, text in enumerate(json.loads(sys.argv[2]))]

def answer(request):
    """What to do about one request: ("send", message), ("raw", text),
    ("crash",), ("hang",), or None for a notification."""
    method, ident = request.get("method"), request.get("id")
    if ident is None:
        return None
    if method == "initialize":
        return ("send", {"jsonrpc": "2.0", "id": ident, "result": {
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "test-upstream", "version": "1"}}})
    if method == "tools/list":
        return ("send", {"jsonrpc": "2.0", "id": ident,
                         "result": {"tools": INJECT if MODE == "inject" else TOOLS}})
    if method != "tools/call":
        return ("send", {"jsonrpc": "2.0", "id": ident,
                         "error": {"code": -32601, "message": "unknown method"}})
    params = request["params"]
    if MODE in ("crash", "hang", "garbage", "huge") and misbehaving():
        if MODE in ("crash", "hang"):
            return (MODE,)
        if MODE == "garbage":
            return ("raw", "this is not JSON {{{")
        return ("send", {"jsonrpc": "2.0", "id": ident,
                         "result": result("x" * (int(sys.argv[2]) << 20))})
    reply = call(params["name"], params.get("arguments") or {})
    if reply is None:
        return ("send", {"jsonrpc": "2.0", "id": ident,
                         "error": {"code": -32602, "message": "no such tool"}})
    return ("send", {"jsonrpc": "2.0", "id": ident, "result": reply})


def serve_stdio():
    for line in sys.stdin:
        action = answer(json.loads(line))
        if action is None:
            continue
        if MODE == "exit-after-call" and json.loads(line).get("method") == "tools/call":
            sys.stdout.write(json.dumps(action[1]) + "\n")
            sys.stdout.flush()
            os._exit(0)
        if action[0] == "crash":
            os._exit(3)
        if action[0] == "hang":
            time.sleep(3600)
        text = json.dumps(action[1]) if action[0] == "send" else action[1]
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def serve_http():
    """Streamable HTTP on a free loopback port, printed on stdout: tools/call
    is answered as an event stream, the rest as JSON."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length))
            action = answer(request)
            if action is None:
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if action[0] == "crash":
                self.close_connection = True  # no answer at all
                return
            if action[0] == "hang":
                time.sleep(3600)
            stream = request.get("method") == "tools/call"
            text = json.dumps(action[1]) if action[0] == "send" else action[1]
            body = (f"event: message\ndata: {text}\n\n" if stream else text).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
            self.send_header("Mcp-Session-Id", "session-1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if HTTP:
    serve_http()
else:
    serve_stdio()
