"""Approval of host-function calls: which calls need it (--require-approval
GLOB, "require_approval" in --config, "requireApproval" per server in
--mcp-config) and how a legacy MCP client is asked mid-run
(elicitation/create on the call's own stream), spoken raw here so that the
client can misbehave: answer garbage, never answer, go away.  The SDK
client's well-behaved side is in tests/interop/sdk.test.mjs.

Guest code runs only inside capsule; the functions are host programs.
"""
import json
import time

from test_code_mode import config as mcp_config, python_server
from test_mcp import Stdio

HOST_PYTHON = "/usr/bin/python3"
# Records that it ran (argv[1] is a marker file), answers with its arguments.
RECORDER = ("import json, pathlib, sys\n"
            "arguments = json.load(sys.stdin)\n"
            "pathlib.Path(sys.argv[1]).write_text(json.dumps(arguments))\n"
            "print(json.dumps(arguments))\n")
CALLS = ("from capsule.functions import pay_invoice, lookup_order\n"
         "try:\n    paid = pay_invoice(amount=10)\n"
         "except PermissionError as e:\n    paid = 'denied: ' + str(e)\n"
         "[paid, lookup_order(order=7)]")


def functions(tmp_path):
    (tmp_path / "recorder.py").write_text(RECORDER)
    args = []
    for name in ("pay_invoice", "lookup_order"):
        args += ["--function", f"{name}={HOST_PYTHON} {tmp_path / 'recorder.py'} {tmp_path / name}"]
    return args


def test_the_glob_decides_which_calls_need_approval(capsule, tmp_path):
    audit = tmp_path / "audit.jsonl"
    result = capsule.json(CALLS, *functions(tmp_path), "--require-approval", "pay_*",
                          "--audit-log", str(audit))
    assert result["status"] == "success", result
    paid, looked = eval(result["return_value"])
    # `capsule run` has no one to ask: the matching call fails closed.
    assert paid.startswith("denied: calling 'pay_invoice' needs approval, which was not available")
    assert not (tmp_path / "pay_invoice").exists()
    assert looked == {"order": 7} and (tmp_path / "lookup_order").exists()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    outcomes = {line["function"]: line["outcome"] for line in lines}
    assert outcomes == {"pay_invoice": "denied", "lookup_order": "ok"}


def test_without_a_matching_glob_nothing_needs_approval(capsule, tmp_path):
    result = capsule.json(CALLS, *functions(tmp_path), "--require-approval", "github.*")
    paid, looked = eval(result["return_value"])
    assert paid == {"amount": 10} and looked == {"order": 7}


def test_require_approval_in_a_config_file(capsule, tmp_path):
    (tmp_path / "recorder.py").write_text(RECORDER)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "functions": {name: {"command": [HOST_PYTHON, str(tmp_path / "recorder.py"),
                                         str(tmp_path / name)]}
                      for name in ("pay_invoice", "lookup_order")},
        "require_approval": ["*_invoice"]}))
    result = capsule.json(CALLS, "--config", str(config))
    paid, looked = eval(result["return_value"])
    assert paid.startswith("denied: ") and looked == {"order": 7}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"require_approval": "pay_*"}))
    assert capsule.run("--config", str(bad), code="1").returncode != 0


def test_require_approval_per_code_mode_server(capsule, tmp_path):
    server = python_server("well") | {"requireApproval": ["ec*"]}
    mcp = mcp_config(tmp_path, test=server)
    code = ("from servers.test import echo, add\n"
            "try:\n    echoed = echo(text='hi')\nexcept PermissionError as e:\n    echoed = str(e)\n"
            "[echoed, add(a=2, b=3), 'needs approval' in open('/servers/test/echo.py').read(),"
            " 'needs approval' in open('/servers/test/add.py').read()]")
    result = capsule.json(code, "--mcp-config", mcp)
    assert result["status"] == "success", result
    echoed, total, echo_doc, add_doc = eval(result["return_value"])
    assert "calling 'test.echo' needs approval" in echoed
    assert total == {"sum": 5}
    assert echo_doc and not add_doc
    bad = mcp_config(tmp_path, test=python_server("well") | {"requireApproval": "ec*"})
    completed = capsule.run("--mcp-config", bad, code="1")
    assert completed.returncode != 0 and b"requireApproval" in completed.stderr


# --- a raw legacy client over stdio ------------------------------------------------

class Client(Stdio):
    """A 2025-11-25 client that declared elicitation, driven by hand."""

    def __init__(self, binary, *args, capabilities=None):
        super().__init__(binary, *args)
        self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"elicitation": {}} if capabilities is None else capabilities,
            "clientInfo": {"name": "raw", "version": "1"}}})
        assert self.next_message()["result"]["protocolVersion"] == "2025-11-25"

    def next_message(self, timeout=60):
        """The next message that is not a notification: a response, or a
        request of the server's."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line, self.process.stderr.read().decode(errors="replace")
            message = json.loads(line)
            if "id" in message:
                return message

    def start_call(self, id, code, **arguments):
        self.send({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "run_python_code", "arguments": {"python_code": code, **arguments}}})


def returned(response):
    return eval(response["result"]["structuredContent"]["return_value"])


def test_a_raw_client_is_asked_and_its_answers_decide(binary, tmp_path):
    audit = tmp_path / "audit.jsonl"
    client = Client(binary, *functions(tmp_path), "--require-approval", "pay_*",
                    "--audit-log", str(audit))
    try:
        # Accept: the request names the function and its arguments, in form mode.
        client.start_call(1, CALLS)
        request = client.next_message()
        assert request["method"] == "elicitation/create", request
        params = request["params"]
        assert params["mode"] == "form"
        assert "'pay_invoice'" in params["message"] and '{"amount":10}' in params["message"]
        assert params["requestedSchema"]["properties"]["approve"]["type"] == "boolean"
        client.send({"jsonrpc": "2.0", "id": request["id"],
                     "result": {"action": "accept", "content": {"approve": True}}})
        assert returned(client.next_message()) == [{"amount": 10}, {"order": 7}]
        assert (tmp_path / "pay_invoice").exists()
        (tmp_path / "pay_invoice").unlink()

        # Garbage, then an answer to an id never sent, then accept without approve.
        for answer, words in (({"result": "yes"}, "neither a result object nor an error"),
                              ({"result": {"action": "accept", "content": {}}},
                               "did not set approve"),
                              ({"result": {"action": "maybe"}}, "unknown action"),
                              ({"error": {"code": -1, "message": "no UI"}}, "error -1: no UI")):
            client.start_call(2, CALLS)
            request = client.next_message()
            client.send({"jsonrpc": "2.0", "id": "capsule-999999", "result": {"action": "accept"}})
            client.send({"jsonrpc": "2.0", "id": request["id"], **answer})
            paid, looked = returned(client.next_message())
            assert paid.startswith("denied: ") and words in paid, (answer, paid)
            assert looked == {"order": 7}
        assert not (tmp_path / "pay_invoice").exists()

        # No answer at all: refused a second before the run's own time is up.
        started = time.monotonic()
        client.start_call(3, CALLS, timeout_seconds=4)
        assert client.next_message()["method"] == "elicitation/create"
        paid, looked = returned(client.next_message())
        assert "did not answer elicitation/create" in paid
        assert time.monotonic() - started < 10
    finally:
        client.close()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    paid_lines = [line for line in lines if line["function"] == "pay_invoice"]
    assert [line["outcome"] for line in paid_lines] == ["ok"] + ["denied"] * 5
    assert "declined" not in paid_lines[1]["message"]
    assert "did not answer" in paid_lines[-1]["message"]


def test_a_decline_and_a_client_without_elicitation(binary, tmp_path):
    client = Client(binary, *functions(tmp_path), "--require-approval", "pay_*")
    try:
        client.start_call(1, CALLS)
        request = client.next_message()
        client.send({"jsonrpc": "2.0", "id": request["id"], "result": {"action": "decline"}})
        paid, _ = returned(client.next_message())
        assert paid.endswith("refused: declined by the user"), paid
    finally:
        client.close()
    client = Client(binary, *functions(tmp_path), "--require-approval", "pay_*",
                    capabilities={"elicitation": {"url": {}}})  # URL mode only: not a form
    try:
        client.start_call(1, CALLS)
        paid, looked = returned(client.next_message())
        assert "cannot be asked" in paid and looked == {"order": 7}
    finally:
        client.close()
    assert not (tmp_path / "pay_invoice").exists()


def test_a_client_that_goes_away_while_asked_ends_the_wait(binary, tmp_path):
    client = Client(binary, *functions(tmp_path), "--require-approval", "pay_*")
    client.start_call(1, CALLS, timeout_seconds=60)
    assert client.next_message()["method"] == "elicitation/create"
    started = time.monotonic()
    client.process.stdin.close()  # the client is gone: the server must not wait 60 s
    assert client.process.wait(timeout=20) is not None
    assert time.monotonic() - started < 20
    assert not (tmp_path / "pay_invoice").exists()


def test_an_http_call_answered_with_json_cannot_ask(binary, tmp_path):
    """A legacy HTTP client that takes only JSON answers has no stream on
    which the server could ask it: refused at once, never a hang."""
    from test_mcp import HttpServer
    server = HttpServer(binary, *functions(tmp_path), "--require-approval", "pay_*")
    try:
        response, payload = server.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                         "params": {"protocolVersion": "2025-11-25",
                                                    "capabilities": {"elicitation": {}},
                                                    "clientInfo": {"name": "t", "version": "1"}}})
        session = response.getheader("Mcp-Session-Id")
        started = time.monotonic()
        response, payload = server.post(
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "run_python_code", "arguments": {"python_code": CALLS}}},
            headers={"Accept": "application/json"}, session=session)
        assert response.getheader("Content-Type").startswith("application/json")
        paid, looked = returned(json.loads(payload))
        assert "cannot be asked on this connection" in paid and looked == {"order": 7}
        assert time.monotonic() - started < 20
    finally:
        server.stop()
    assert not (tmp_path / "pay_invoice").exists()
