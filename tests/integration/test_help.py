"""`help`: the MCP tool, capsule.help() in the guest and what the host
indexes (/docs sections, the shipped recipes, the granted functions).

The documents below are this test's own; the questions are written the way
an agent asks them, not as keywords.  Guest code runs only inside capsule
(the MCP server's run_python_code, or the `capsule` fixture)."""
import json
import os
import sys

import pytest

from conftest import ROOT
from test_mcp import HttpServer, Stdio

DOCS = {
    "orders.md": """# Orders

Every order has an id, a customer, items and a shipping address.

## Refunds

To give a customer their money back, refund the order: the refund goes to the
card that paid, within five working days. Partial refunds name the items.

## Cancelling an order

An order can be cancelled until it ships; after that, it is a return.
""",
    "deploy.md": """# Deploying the service

## Rolling out a new version

Build the container image, push it to the registry, then roll out the new
version with `kubectl rollout`; a failed rollout is rolled back automatically.
""",
    "auth.md": """# Authentication

## API tokens

Clients authenticate with an API token in the Authorization header. Tokens
expire after 90 days: rotate a token from the settings page before it expires.
""",
    "billing.md": """# Billing and invoices

Invoices are issued monthly as PDF files.

## Taxes

The VAT amount is printed on every invoice, below the net total, with the rate.
""",
    "warehouse.md": """# Warehouse stock

## Reorder thresholds

When the stock of an item falls below its reorder threshold, order more from
the supplier; low stock shows in red on the inventory report.
""",
    "timezones.md": """# Dates and time zones

## Converting timestamps

Timestamps are stored in UTC. To show one in a local time zone such as
Europe/Berlin, use zoneinfo: `datetime.fromtimestamp(ts, ZoneInfo("Europe/Berlin"))`.
""",
    "style.md": """# Writing style guide

Use short sentences and active verbs. Headings are in sentence case.
""",
}

# (question, the path that answers it)
QUESTIONS = [
    ("How do I give a customer their money back for an order?", "/docs/orders.md"),
    ("How can I roll out a new version of the service?", "/docs/deploy.md"),
    ("My API token expired, what should I do to rotate it?", "/docs/auth.md"),
    ("Where can I find the VAT on an invoice?", "/docs/billing.md"),
    ("When should we reorder items that are low in stock?", "/docs/warehouse.md"),
    ("How do I convert a timestamp to the Berlin time zone?", "/docs/timezones.md"),
    ("Which Python code should I write to create a chart for the given XLSX file?",
     "capsule:recipes/xlsx.md"),
    ("How do I extract the text from a PDF document?", "capsule:recipes/pdf.md"),
    ("Can I install numpy or pandas here?", "capsule:recipes/packages.md"),
    ("How do I unpack a zip archive someone uploaded?", "capsule:recipes/zip.md"),
    ("How do I group the rows of a CSV file and sum a column?", "capsule:recipes/csv.md"),
    ("Which function tells me the shipping address of an order?",
     "capsule.functions.lookup_order"),
    # CPython's own documentation, compiled in (tools/extract-python-docs.py).
    ("How does the with statement work?", "pydoc:topics/with"),
    ("How do I parse command line arguments?", "argparse"),
    ("How do I read a gzip file?", "gzip"),
    ("What does enumerate return?", "builtins.enumerate"),
    ("How do I find all matches of a regular expression?", "re"),
    ("How do I format a date as a string?", "datetime"),
]

LOOKUP = "import json, sys; json.dump({'status': 'shipped'}, sys.stdout)"

HOSTILE_QUESTIONS = [
    '"NEAR(" AND OR * ^ : -',
    'refund* OR "order',
    "title:refund NOT order",
    "{title body}: refund",
    "NEAR(refund order, 2)",
    '"""',
    "-refund ^order +cancel",
    "refund\x00order",
    "\x1b[31mrefund\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "",
    "   ?!.,;  ",
]


def write_docs(directory, documents):
    directory.mkdir(exist_ok=True)
    for name, text in documents.items():
        (directory / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return directory


def functions_config(tmp_path, docs):
    config = tmp_path / "config.json"
    (tmp_path / "lookup.py").write_text(LOOKUP)
    config.write_text(json.dumps({"docs": str(docs), "functions": {"lookup_order": {
        "command": [sys.executable, str(tmp_path / "lookup.py")],
        "description": "Looks up an order by its id: its status, items and shipping address.",
        "input_schema": {"type": "object", "required": ["order_id"],
                         "properties": {"order_id": {"type": "integer",
                                                     "description": "The order's id."}}}}}}))
    return config


def ask(server, query, id, **arguments):
    response = server.request("tools/call", {"name": "help",
                                             "arguments": {"query": query, **arguments}}, id)
    assert "result" in response, response
    result = response["result"]
    assert result["isError"] is False, result
    return result


def guest_help(server, questions, id, limit=3):
    """capsule.help() for each question, from the guest of the same server."""
    code = ("import capsule, json\n"
            "print(json.dumps([capsule.help(q, limit=LIMIT) for q in QUESTIONS]))")
    response = server.request("tools/call", {"name": "run_python_code", "arguments": {
        "python_code": code, "global_variables": {"QUESTIONS": questions, "LIMIT": limit}}}, id)
    structured = response["result"]["structuredContent"]
    assert structured["status"] == "success", structured
    return json.loads(structured["output"])


@pytest.fixture
def server(binary, tmp_path):
    docs = write_docs(tmp_path / "docs", DOCS)
    instance = Stdio(binary, "--config", str(functions_config(tmp_path, docs)))
    yield instance
    instance.close()


def test_help_is_listed_with_a_query_schema(server):
    tools = server.request("tools/list")["result"]["tools"]
    help_tool = next(tool for tool in tools if tool["name"] == "help")
    assert help_tool["inputSchema"]["required"] == ["query"]
    assert tools[0]["name"] == "run_python_code"


def test_natural_language_questions_find_the_right_document(server):
    found, misses = 0, []
    for number, (question, expected) in enumerate(QUESTIONS):
        result = ask(server, question, id=10 + number, limit=3)
        paths = [entry["path"] for entry in result["structuredContent"]["results"]]
        assert len(paths) <= 3
        if expected in paths:
            found += 1
        else:
            misses.append((question, expected, paths))
    assert len(QUESTIONS) >= 10
    assert found >= 0.8 * len(QUESTIONS), misses


def test_results_have_titles_paths_snippets_and_text(server):
    result = ask(server, "How do I give a customer a refund?", id=2)
    best = result["structuredContent"]["results"][0]
    assert best["path"] == "/docs/orders.md"
    assert best["title"] == "Orders: Refunds" and best["section"] == "Refunds"
    assert best["kind"] == "doc"
    assert "**refund**" in best["snippet"].lower()
    assert "five working days" in best["text"]
    assert best["score"] > 0
    # The text content lists the same results, numbered.
    assert result["content"][0]["text"].startswith("1. Orders: Refunds (/docs/orders.md)")
    function = ask(server, "lookup order shipping address", id=3)["structuredContent"]["results"]
    entry = next(e for e in function if e["path"] == "capsule.functions.lookup_order")
    assert entry["kind"] == "function" and "The order's id." in entry["text"]


def test_python_documentation_is_indexed(server):
    """The language reference topics, the stdlib's modules and the
    built-ins: kind python-doc, a path the agent can name, the text."""
    topic = ask(server, "the with statement", id=2)["structuredContent"]["results"]
    entry = next(e for e in topic if e["path"] == "pydoc:topics/with")
    assert entry["kind"] == "python-doc" and entry["section"] == "with"
    assert entry["title"] == 'Python language reference: The "with" statement'
    assert "__enter__" in entry["text"]
    module = ask(server, "gzip compressed file", id=3)["structuredContent"]["results"]
    entry = next(e for e in module if e["path"] == "gzip")
    assert entry["title"].startswith("Python module gzip: ")
    assert "gzip.open(filename" in entry["text"]
    builtin = ask(server, "enumerate", id=4)["structuredContent"]["results"]
    assert builtin[0]["path"] == "builtins.enumerate", builtin
    assert "Return an enumerate object." in builtin[0]["text"]
    # Pillow, compiled into the guest, is documented from its own sources.
    pillow = ask(server, "Pillow image thumbnail", id=5, limit=10)["structuredContent"]["results"]
    assert any(e["path"].startswith("PIL") for e in pillow), pillow


def test_the_guest_gets_the_same_results_as_the_mcp_tool(server):
    questions = [question for question, _ in QUESTIONS]
    from_guest = guest_help(server, questions, id=2)
    for number, question in enumerate(questions):
        result = ask(server, question, id=100 + number, limit=3)
        assert from_guest[number] == result["structuredContent"]["results"], question
    assert any(from_guest)


def test_limits_and_bad_arguments(server):
    assert len(ask(server, "order refund invoice token stock", id=2,
                   limit=1)["structuredContent"]["results"]) == 1
    assert len(ask(server, "order refund invoice token stock csv zip pdf",
                   id=3)["structuredContent"]["results"]) == 5  # the default
    for id, arguments in enumerate([{"query": "x", "limit": 0}, {"query": "x", "limit": 21},
                                    {"query": 42}, {}, {"query": "x", "limit": "3"}], 4):
        response = server.request("tools/call", {"name": "help", "arguments": arguments}, id)
        assert response["error"]["code"] == -32602, response
    code = ("import capsule\nfrom capsule import functions\nerrors = []\n"
            "for call in (lambda: capsule.help('x', limit=99), lambda: capsule.help(b'x'),\n"
            "             lambda: functions._exchange({'op': 'help', 'query': 7}, 'help')):\n"
            "    try:\n        call()\n    except Exception as e:\n"
            "        errors.append(type(e).__name__)\nprint(errors)")
    response = server.request("tools/call", {"name": "run_python_code",
                                             "arguments": {"python_code": code}}, 20)
    output = response["result"]["structuredContent"]["output"]
    assert output.strip() == "['ValueError', 'TypeError', 'TypeError']", response


def test_hostile_questions_are_words_never_query_syntax(server):
    for id, question in enumerate(HOSTILE_QUESTIONS, 2):
        result = ask(server, question, id=id)
        assert isinstance(result["structuredContent"]["results"], list)
    # The words still count: quoted, joined with OR.
    paths = [e["path"] for e in
             ask(server, 'refund* OR "order', id=40)["structuredContent"]["results"]]
    assert "/docs/orders.md" in paths
    assert ask(server, "", id=41)["structuredContent"]["results"] == []
    assert ask(server, "   ?!.,;  ", id=42)["structuredContent"]["results"] == []
    # The same from the guest, and a 64 KiB question.
    huge = ("refund " * 10000)[: 64 << 10]
    from_guest = guest_help(server, HOSTILE_QUESTIONS + [huge], id=50, limit=5)
    assert all(isinstance(results, list) for results in from_guest)
    assert from_guest[-1] and from_guest[-1][0]["path"] == "/docs/orders.md"
    result = ask(server, huge, id=51)
    assert result["structuredContent"]["results"][0]["path"] == "/docs/orders.md"
    assert len(result["structuredContent"]["query"]) <= 200


def test_huge_and_binary_docs_are_bounded_and_skipped(binary, tmp_path):
    docs = write_docs(tmp_path / "docs", {
        "orders.md": DOCS["orders.md"],
        "huge.md": "# Huge\n\n" + "lorem ipsum dolor sit amet " * 550_000,   # ~15 MB
        "junk.md": os.urandom(1 << 20) + b"\x00",                           # binary
        "latin.md": b"# Latin-1\n\nzebrafish \xe9t\xe9 \xff\xfe caf\xe9 \x1b[31m red\n",
    })
    server = Stdio(binary, "--docs", str(docs))
    try:
        results = ask(server, "zebrafish", id=2)["structuredContent"]["results"]
        assert [e["path"] for e in results] == ["/docs/latin.md"]
        assert "\x1b" not in results[0]["text"] and "?" in results[0]["text"]
        assert ask(server, "How do I refund an order?",
                   id=3)["structuredContent"]["results"][0]["path"] == "/docs/orders.md"
        huge = ask(server, "lorem ipsum", id=4)["structuredContent"]["results"]
        assert huge[0]["path"] == "/docs/huge.md" and len(huge[0]["text"]) <= 4003
        assert all(e["path"] != "/docs/junk.md"
                   for e in ask(server, "junk", id=5)["structuredContent"]["results"])
    finally:
        server.close()


def test_an_empty_docs_folder_still_has_the_recipes(binary, tmp_path):
    server = Stdio(binary, "--docs", str(write_docs(tmp_path / "empty", {})))
    try:
        assert any(t["name"] == "help" for t in server.request("tools/list")["result"]["tools"])
        results = ask(server, "How do I refund an order?", id=2)["structuredContent"]["results"]
        assert all(e["kind"] != "doc" for e in results)
        assert ask(server, "qqqqzzzz xxyyzz", id=3)["structuredContent"]["results"] == []
        assert guest_help(server, ["qqqqzzzz", ""], id=4) == [[], []]
    finally:
        server.close()


def test_help_calls_are_in_the_audit_log(capsule, tmp_path):
    log = tmp_path / "audit.jsonl"
    result = capsule.json("import capsule\nlen(capsule.help('csv files'))",
                          "--audit-log", str(log))
    assert result["status"] == "success" and result["return_value"] != "0", result
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(line["function"], line["outcome"]) for line in lines] == [("help", "ok")]


# --- the recipes are honest: their code runs in capsule -------------------------------

RECIPES = ROOT / "docs" / "recipes"
SITE_PACKAGES = "/usr/lib/python3/dist-packages"

PRELUDE = r'''
import csv, gzip, json, os, sqlite3, tarfile, zipfile
os.makedirs("/output", exist_ok=True)
open("/work/sales.csv", "w").write("region,amount\nnorth,10\nsouth,5.5\nnorth,2\n")
json.dump({"items": [{"id": 1, "active": True}, {"id": 2}]}, open("/work/data.json", "w"))
open("/work/events.jsonl", "w").write('{"a": 1}\n\n{"a": 2}\n')
with zipfile.ZipFile("/work/upload.zip", "w") as z:
    z.writestr("docs/a.txt", "hello")
open("/tmp/report.csv", "w").write("x\n1\n")
with gzip.open("/work/log.gz", "wt") as f:
    f.write("log line\n")
with tarfile.open("/work/data.tar.gz", "w:gz") as tar:
    tar.add("/work/sales.csv", "sales.csv")
sqlite3.connect("/work/app.db").execute("CREATE TABLE t (x)").connection.commit()
totals = {"north": 12.0, "south": 5.5}
results = [("north", 12.0), ("south", 5.5)]
'''

PDF_PRELUDE = r'''
def _pdf(text):
    stream = b"BT /F1 12 Tf 20 100 Td (" + text + b") Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
open("/work/invoice.pdf", "wb").write(_pdf(b"Total due 42 EUR"))
open("/work/a.pdf", "wb").write(_pdf(b"first"))
'''

XLSX_PRELUDE = r'''
from openpyxl import Workbook as _Workbook
_book = _Workbook()
for _row in (["month", "sales"], ["Jan", 12], ["Feb", 30]):
    _book.active.append(_row)
_book.save("/work/report.xlsx")
'''


def python_blocks(name):
    text = (RECIPES / name).read_text()
    blocks = text.split("```python\n")[1:]
    return [block.split("```")[0] for block in blocks]


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.md")))
def test_every_recipe_runs_in_capsule(capsule, name, tmp_path):
    blocks = python_blocks(name)
    if name == "packages.md":
        assert blocks == []
        return
    assert blocks, name
    prelude, args = PRELUDE, []
    if name in ("xlsx.md", "pdf.md"):
        package = "openpyxl" if name == "xlsx.md" else "pypdf"
        if not os.path.isdir(os.path.join(SITE_PACKAGES, package)):
            pytest.skip(f"{package} is not installed in {SITE_PACKAGES}")
        args = ["--site-packages", SITE_PACKAGES, "--package-cache", str(tmp_path / "cache")]
        prelude += XLSX_PRELUDE if name == "xlsx.md" else PDF_PRELUDE
    program = prelude + "\n".join(blocks) + "\nprint('recipe done')\n"
    result = capsule.json(program, *args, timeout=300)
    assert result["status"] == "success", (name, result["error"], result["stderr"])
    assert "recipe done" in result["stdout"]


# --- installed distributions -------------------------------------------------

def write_wheel(directory, name, metadata_body, summary):
    """A pure wheel NAME-1.0 whose METADATA has `summary` and the
    description `metadata_body` (str or bytes)."""
    import base64
    import hashlib
    import zipfile
    info = f"{name}-1.0.dist-info"
    body = metadata_body.encode() if isinstance(metadata_body, str) else metadata_body
    entries = {f"{name}/__init__.py": b"VALUE = 1\n",
               f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                                    f"Summary: {summary}\n\n").encode() + body,
               f"{info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
              for path, data in entries.items()]
    entries[f"{info}/RECORD"] = ("\n".join(record + [f"{info}/RECORD,,"]) + "\n").encode()
    with zipfile.ZipFile(directory / f"{name}-1.0-py3-none-any.whl", "w") as archive:
        for path, data in entries.items():
            archive.writestr(path, data)


def test_installed_distributions_are_indexed_once_installed(binary, tmp_path):
    """A run that imports a package installs it; from then on help finds
    its METADATA (Summary and description, capped, cleaned), with the path
    of that file in the guest."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    write_wheel(wheels, "prettygrid", "# prettygrid\n\n## Usage\n\nCall prettygrid.render(rows) "
                "to draw the rows of a table as a text grid with borders.\n",
                "Pretty-print tabular data as text grids")
    # Hostile metadata: control characters, bad UTF-8, a 1 MB description.
    noisy = (b"kingfisher \x1b[31m\xff\xfe nests\n" + b"filler words " * 20000 +
             b"zebrafinch\n" + b"more " * 60000)
    write_wheel(wheels, "noisydoc", noisy, "Noisy \x07 metadata")
    server = Stdio(binary, "--wheels", str(wheels), "--package-cache", str(tmp_path / "cache"))
    question = "How do I pretty-print a table as a text grid?"
    try:
        before = ask(server, question, id=2)["structuredContent"]["results"]
        assert not [e for e in before if e["kind"] == "package"], before
        run = server.request("tools/call", {"name": "run_python_code", "arguments": {
            "python_code": "import prettygrid, noisydoc\nprettygrid.VALUE"}}, 3)
        assert run["result"]["structuredContent"]["status"] == "success", run
        after = ask(server, question, id=4, limit=3)["structuredContent"]["results"]
        entry = after[0]
        assert entry["kind"] == "package", after
        assert entry["title"] == "Package prettygrid 1.0: Pretty-print tabular data as text grids"
        assert entry["path"] == ("/usr/local/lib/python3.11/site-packages/"
                                 "prettygrid-1.0.dist-info/METADATA")
        assert "prettygrid.render(rows)" in entry["text"]
        usage = ask(server, "how do I use prettygrid", id=5, limit=3)["structuredContent"]["results"]
        assert usage[0]["path"] == entry["path"], usage
        # The path is a file the agent can open in a run that has the package.
        opened = server.request("tools/call", {"name": "run_python_code", "arguments": {
            "python_code": f"import prettygrid\nopen({entry['path']!r}).read().splitlines()[1]"}}, 6)
        assert opened["result"]["structuredContent"]["return_value"] == "Name: prettygrid", opened
        noisy_hits = ask(server, "kingfisher", id=7)["structuredContent"]["results"]
        noisy_entry = next(e for e in noisy_hits if "noisydoc" in e["path"])
        assert "\x1b" not in noisy_entry["text"] and "\x07" not in noisy_entry["title"]
        assert len(noisy_entry["text"].encode()) <= 4003
        # Only the first 16 KiB of a description are indexed.
        beyond = ask(server, "zebrafinch", id=8)["structuredContent"]["results"]
        assert not [e for e in beyond if "noisydoc" in e["path"]], beyond
        # A second run with the same packages indexes nothing twice.
        server.request("tools/call", {"name": "run_python_code", "arguments": {
            "python_code": "import prettygrid"}}, 9)
        again = ask(server, "prettygrid", id=10, limit=10)["structuredContent"]["results"]
        assert len([e for e in again if e["kind"] == "package"]) == 1, again
    finally:
        server.close()


def test_a_principal_sees_only_the_distributions_its_own_runs_installed(binary, tmp_path):
    """Which packages a principal's runs installed is its own business:
    help (the MCP tool and capsule.help() in the guest) shows another
    principal none of them until that principal's own run installs one."""
    from test_mcp_2026 import stateless_post
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    write_wheel(wheels, "prettygrid", "Call prettygrid.render(rows) to draw a text grid.\n",
                "Pretty-print tabular data as text grids")
    tokens = tmp_path / "tokens"
    tokens.write_text("token-alice\ntoken-bob\n")
    server = HttpServer(binary, "--workers", "1", "--token-file", str(tokens), "--wheels",
                        str(wheels), "--package-cache", str(tmp_path / "cache"), token="token-alice")
    question = "pretty-print a table as a text grid"

    def packages(token):
        server.token = token
        _, body = stateless_post(server, "tools/call", {"name": "help", "arguments": {
            "query": question, "limit": 5}})
        assert body["result"]["isError"] is False, body
        return [e["path"] for e in body["result"]["structuredContent"]["results"]
                if e["kind"] == "package"]

    def run(token, code):
        server.token = token
        _, body = stateless_post(server, "tools/call", {"name": "run_python_code", "arguments": {
            "python_code": code}})
        content = body["result"]["structuredContent"]
        assert content["status"] == "success", content
        return content.get("return_value")

    guest_question = ("import capsule, json\njson.dumps([r['kind'] for r in "
                      f"capsule.help({question!r}, limit=5)])")
    try:
        assert packages("token-alice") == [] and packages("token-bob") == []
        assert run("token-alice", "import prettygrid\nprettygrid.VALUE") == "1"
        (path,) = packages("token-alice")
        assert path.endswith("prettygrid-1.0.dist-info/METADATA"), path
        assert "package" in json.loads(run("token-alice", guest_question))
        # Bob was not told: not by the tool, not in his guest.
        assert packages("token-bob") == []
        assert "package" not in json.loads(run("token-bob", guest_question))
        # His own run installs it (the same distribution, indexed once): now he sees it too.
        assert run("token-bob", "import prettygrid\nprettygrid.VALUE") == "1"
        assert packages("token-bob") == [path]
        assert packages("token-alice") == [path]
    finally:
        server.stop()
