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

When the environment variable MISBEHAVE names a file, `crash`, `hang`,
`garbage` and `huge` misbehave once, if that file exists, removing it
first, so that a test can show that the next call works; without it they
always misbehave.
"""
import base64
import json
import os
import sys

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


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def result(text):
    return {"content": [{"type": "text", "text": text}]}


def call(name, arguments):
    if MODE == "inject":
        return result(json.dumps({"tool": name, "arguments": arguments}))
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
    return None


if MODE == "crash-at-start":
    sys.exit(1)
if MODE == "inject" and len(sys.argv) > 2:
    INJECT += [{"name": f"d{index}", "description": text, "inputSchema": {"type": "object"}}
               for index, text in enumerate(json.loads(sys.argv[2]))]

for line in sys.stdin:
    request = json.loads(line)
    method, ident = request.get("method"), request.get("id")
    if ident is None:
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": ident, "result": {
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "test-upstream", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": ident, "result": {"tools": INJECT if MODE == "inject" else TOOLS}})
    elif method == "tools/call":
        params = request["params"]
        if MODE in ("crash", "hang", "garbage", "huge") and misbehaving():
            if MODE == "crash":
                os._exit(3)
            if MODE == "hang":
                import time
                time.sleep(3600)
            if MODE == "garbage":
                sys.stdout.write("this is not JSON {{{\n")
                sys.stdout.flush()
                continue
            if MODE == "huge":
                size = int(sys.argv[2]) << 20
                send({"jsonrpc": "2.0", "id": ident, "result": result("x" * size)})
                continue
        answer = call(params["name"], params.get("arguments") or {})
        if answer is None:
            send({"jsonrpc": "2.0", "id": ident, "error": {"code": -32602, "message": "no such tool"}})
        else:
            send({"jsonrpc": "2.0", "id": ident, "result": answer})
    else:
        send({"jsonrpc": "2.0", "id": ident, "error": {"code": -32601, "message": "unknown method"}})
