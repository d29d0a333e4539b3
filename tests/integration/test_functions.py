"""Host functions through the CLI: `--function NAME=COMMAND` (a host
program: JSON arguments on stdin, JSON result on stdout), `--config`'s
"functions", limits, approval and the audit log.

The host programs below are this test's own trusted helpers, run by
capsule in the host (that is what a host function is).  Guest code runs
only through capsule (the `capsule` fixture refuses to start unless the
guest reports that it is the WASI sandbox)."""
import hashlib
import json
import sys
import time

HOST_PYTHON = sys.executable

LOOKUP = """
import json, sys
arguments = json.load(sys.stdin)
if arguments.get("order_id") == 13:
    print("order 13 is cursed", file=sys.stderr)
    sys.exit(3)
json.dump({"order": arguments.get("order_id"), "argv": sys.argv[1:]}, sys.stdout)
"""

BIG = """
import json, sys
size = json.load(sys.stdin)["size"]
sys.stdout.write(json.dumps("y" * size))
"""

SLOW = """
import time
time.sleep(30)
"""

NOT_JSON = """
print("this is not json")
"""

MARKER = """
import sys, pathlib
pathlib.Path(sys.argv[1]).write_text("ran")
print("{}")
"""


def program(tmp_path, name, text):
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return f"{HOST_PYTHON} {path}"


def test_function_is_called_with_keyword_arguments(capsule, tmp_path):
    command = program(tmp_path, "lookup", LOOKUP) + " 'two words' \"$HOME\" a\\ b"
    result = capsule.json("from capsule.functions import lookup_order\n"
                          "lookup_order(order_id=42)",
                          "--function", f"lookup_order={command}")
    assert result["status"] == "success", result
    value = json.loads(result["return_value"].replace("'", '"'))
    # The words were split without a shell: no expansion of $HOME.
    assert value == {"order": 42, "argv": ["two words", "$HOME", "a b"]}


def test_function_not_granted_is_a_permission_error(capsule, tmp_path):
    command = program(tmp_path, "lookup", LOOKUP)
    code = ("import capsule.functions as f\nout = [f.__all__]\n"
            "for name in ('drop_tables', 'lookup_order'):\n"
            "    try:\n        getattr(f, name)(order_id=1)\n"
            "    except PermissionError as e:\n        out.append(str(e))\nout")
    result = capsule.json(code, "--function", f"lookup_order={command}",
                          "--function", f"drop_tables={command}", "--deny-function", "drop_*")
    assert result["status"] == "success", result
    assert "['lookup_order']" in result["return_value"]
    assert "host function 'drop_tables' is not granted" in result["return_value"]
    assert "'lookup_order': 1" not in result["return_value"]  # the granted one ran
    # Nothing granted at all: the import itself says so.
    result = capsule.json("from capsule.functions import lookup_order")
    assert result["status"] == "run-error"
    assert "PermissionError: host function 'lookup_order' is not granted" in result["error"]


def test_oversized_result_is_spilled_not_lost(capsule, tmp_path):
    command = program(tmp_path, "big", BIG)
    code = ("import os\nfrom capsule.functions import big\n"
            "r = big(size=6 << 20)\n(len(r), r[:3], os.listdir('/tmp/capsule-results'))")
    # A scratch quota smaller than the result: the spill does not count.
    result = capsule.json(code, "--function", f"big={command}", "--disk", "2M")
    assert result["status"] == "success", result
    assert result["return_value"] == "(6291456, 'yyy', [])"


def test_program_failure_is_a_tool_error_with_its_message(capsule, tmp_path):
    command = program(tmp_path, "lookup", LOOKUP)
    code = ("from capsule.functions import lookup_order, ToolError\n"
            "try:\n    lookup_order(order_id=13)\nexcept ToolError as e:\n    r = str(e)\nr")
    result = capsule.json(code, "--function", f"lookup_order={command}")
    assert result["return_value"] == "'order 13 is cursed'", result
    bad = program(tmp_path, "not_json", NOT_JSON)
    result = capsule.json("from capsule.functions import f\nf()", "--function", f"f={bad}")
    assert result["status"] == "run-error"
    assert "capsule.functions.ToolError:" in result["error"]
    assert "its output is not JSON" in result["error"]
    missing = capsule.json("from capsule.functions import f\nf()",
                           "--function", "f=/nonexistent/program")
    assert "cannot run /nonexistent/program" in missing["error"]


def test_timeout_kills_the_program_and_raises_timeout_error(capsule, tmp_path):
    command = program(tmp_path, "slow", SLOW)
    code = ("from capsule.functions import slow\n"
            "try:\n    slow()\nexcept TimeoutError as e:\n    r = str(e)\nr")
    started = time.monotonic()
    result = capsule.json(code, "--function", f"slow={command}", "--call-timeout", "0.5")
    assert time.monotonic() - started < 10
    assert result["status"] == "success", result
    assert "timed out after 0.5 s" in result["return_value"]
    # Never past the run's own wall clock.
    started = time.monotonic()
    result = capsule.json("from capsule.functions import slow\nslow()",
                          "--function", f"slow={command}", "--timeout", "1")
    assert time.monotonic() - started < 10
    assert result["status"] in ("timeout", "run-error"), result
    assert "TimeoutError" in (result["error"] or "") or result["status"] == "timeout"


def test_approval_denied_fails_closed(capsule, tmp_path):
    marker = tmp_path / "ran.txt"
    config = tmp_path / "functions.json"
    config.write_text(json.dumps({"functions": {"pay": {
        "command": [HOST_PYTHON, str(tmp_path / "marker.py"), str(marker)],
        "description": "Pays an invoice.", "needs_approval": True,
        "input_schema": {"type": "object", "properties": {"amount": {"type": "number"}}}}}}))
    (tmp_path / "marker.py").write_text(MARKER)
    result = capsule.json("from capsule.functions import pay\n"
                          "try:\n    pay(amount=10)\nexcept PermissionError as e:\n    r = str(e)\nr",
                          "--config", str(config))
    assert "needs approval, which was not available" in result["return_value"], result
    assert not marker.exists()  # the program never ran


def test_config_functions_have_signatures_and_docstrings(capsule, tmp_path):
    config = tmp_path / "functions.json"
    hostile = "Looks up.\"\"\"\nimport os; os.system('touch /tmp/pwned')\n\x1b[31m"
    config.write_text(json.dumps({"functions": {"lookup_order": {
        "command": program(tmp_path, "lookup", LOOKUP), "description": hostile,
        "input_schema": {"type": "object", "required": ["order_id"],
                         "properties": {"order_id": {"type": "integer",
                                                     "description": "The number."},
                                        "class": {"type": "string"}}}}}}))
    code = ("import inspect\nfrom capsule.functions import lookup_order as f, describe\n"
            "(str(inspect.signature(f)), f.__doc__, describe())")
    result = capsule.json(code, "--config", str(config))
    assert result["status"] == "success", result
    assert "(*, order_id: int, **arguments)" in result["return_value"]
    # The description is text, shown (without control characters), never run.
    assert "import os; os.system" in result["return_value"]
    assert "\\x1b" not in result["return_value"]
    assert "order_id (int, required): The number." in result["return_value"]


def test_hostile_guest_writing_garbage_to_the_call_device(capsule, tmp_path):
    command = program(tmp_path, "lookup", LOOKUP)
    code = ("import os\nos.write(6, bytes(range(256)) * 64)\n"
            "answer = b''\nwhile True:\n    c = os.read(6, 4096)\n    if not c: break\n"
            "    answer += c\nanswer.split(b'\\n')[0].decode()")
    result = capsule.json(code, "--function", f"lookup_order={command}")
    assert result["status"] == "success", result
    assert '"error":"malformed"' in result["return_value"]
    assert "not a function call" in result["return_value"]
    # The host is fine: the next run calls the function.
    result = capsule.json("from capsule.functions import lookup_order\n"
                          "lookup_order(order_id=1)['order']",
                          "--function", f"lookup_order={command}")
    assert result["return_value"] == "1"


def test_limits_and_audit_log(capsule, tmp_path):
    command = program(tmp_path, "lookup", LOOKUP)
    log = tmp_path / "audit.jsonl"
    code = ("from capsule.functions import lookup_order\nout = []\n"
            "for i in range(3):\n"
            "    try:\n        out.append(lookup_order(order_id=i)['order'])\n"
            "    except PermissionError as e:\n        out.append(str(e))\nout")
    result = capsule.json(code, "--function", f"lookup_order={command}", "--max-calls", "2",
                          "--audit-log", str(log))
    assert result["return_value"] == \
        "[0, 1, \"the run's limit of 2 function calls is reached\"]", result
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["outcome"] for line in lines] == ["ok", "ok", "limit"]
    first = lines[0]
    assert first["function"] == "lookup_order" and first["session"] is None
    assert first["arguments_sha256"] == hashlib.sha256(b'{"order_id":0}').hexdigest()
    assert first["arguments_bytes"] == 14
    assert first["result_bytes"] > 0 and len(first["result_sha256"]) == 64
    assert first["duration_ms"] >= 0 and first["time"].endswith("Z")
    assert lines[2]["result_sha256"] is None


def test_bad_function_options_are_usage_errors(capsule, tmp_path):
    for args in (["--function", "class=/bin/true"], ["--function", "f="],
                 ["--function", "f=prog 'unbalanced"], ["--audit-log", "/nonexistent/a/b"]):
        completed = capsule.run(*args, code="pass")
        assert completed.returncode == 2, (args, completed.stderr)


def test_http_endpoint_function_behind_the_allow_list(capsule):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            arguments = json.loads(self.rfile.read(length))
            if self.path == "/broken":
                self.send_response(500)
                self.end_headers()
                return
            body = json.dumps({"sum": arguments["a"] + arguments["b"],
                               "type": self.headers["Content-Type"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        code = ("from capsule.functions import add\nadd(a=2, b=3)")
        result = capsule.json(code, "--function", f"add={base}/add", "--allow-url", f"{base}/")
        assert result["return_value"] == "{'sum': 5, 'type': 'application/json'}", result
        # Outside the allow-list: refused in the host, PermissionError in the guest.
        result = capsule.json(code, "--function", f"add={base}/add")
        assert result["status"] == "run-error"
        assert "PermissionError" in result["error"] and "allow-list" in result["error"]
        result = capsule.json("from capsule.functions import bad\nbad(a=1, b=1)",
                              "--function", f"bad={base}/broken", "--allow-url", f"{base}/")
        assert "capsule.functions.ToolError: HTTP 500" in result["error"], result
    finally:
        server.shutdown()
