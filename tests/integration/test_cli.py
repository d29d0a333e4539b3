"""Integration tests of `capsule run`: behaviour, results, and the walls."""
import json
import os
import subprocess

import pytest

from conftest import ROOT


# --- running code ---------------------------------------------------------

def test_sample_program_runs(capsule):
    completed = capsule.run(str(ROOT / "examples" / "hello.py"))
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout.decode()
    assert "Hello from Python 3.11" in out and "on wasi" in out
    assert "zlib round trip ok: True" in out
    assert "sqlite says: ('3.40.1', 42)" in out


def test_code_from_stdin(capsule):
    completed = capsule.run("-", stdin=b"print(6 * 7)\n")
    assert completed.returncode == 0
    assert completed.stdout == b"42\n"


def test_code_from_file_argument_and_missing_file(capsule, tmp_path):
    program = tmp_path / "prog.py"
    program.write_text("import sys\nprint('args', sys.argv)\n")
    completed = capsule.run(str(program))
    assert completed.stdout == b"args ['main.py']\n"
    missing = capsule.run(str(tmp_path / "nope.py"))
    assert missing.returncode == 1
    assert b"cannot read" in missing.stderr and b"No such file" in missing.stderr


def test_exit_status_is_the_programs(capsule):
    assert capsule.run(code="import sys; sys.exit(3)").returncode == 3
    assert capsule.run(code="import sys; sys.exit(0)").returncode == 0
    assert capsule.run(code="raise SystemExit('bye')").returncode == 1


def test_uncaught_exception_streams_traceback(capsule):
    completed = capsule.run(code="print('before')\n1/0\n")
    assert completed.returncode == 1
    assert completed.stdout == b"before\n"
    err = completed.stderr.decode()
    assert 'File "main.py", line 2, in <module>' in err
    assert "ZeroDivisionError: division by zero" in err
    assert "_capsule_runner" not in err  # the runner's frames are hidden


def test_json_result_fields(capsule):
    result = capsule.json("import sys\nprint('out')\nprint('err', file=sys.stderr)\n{'a': [1, 2]}")
    assert result["status"] == "success"
    assert result["stdout"] == "out\n"
    assert result["stderr"] == "err\n"
    assert result["return_value"] == "{'a': [1, 2]}"
    assert result["error"] is None
    assert result["exit_code"] == 0


@pytest.mark.parametrize("code, expected", [
    ("1 + 1", "2"),
    ("'text'", "'text'"),
    ("x = 5", None),
    ("None", None),
    ("print('only side effects')", None),
    ("x = 3\nx * 2", "6"),
])
def test_return_value_is_repr_of_last_expression(capsule, code, expected):
    assert capsule.json(code)["return_value"] == expected


def test_json_run_error_has_traceback_not_stderr(capsule):
    result = capsule.json("def f():\n    raise KeyError('k')\nf()")
    assert result["status"] == "run-error"
    assert result["exit_code"] == 1
    assert result["stderr"] == ""
    assert 'File "main.py", line 3, in <module>' in result["error"]
    assert 'File "main.py", line 2, in f' in result["error"]
    assert result["error"].rstrip().endswith("KeyError: 'k'")
    assert result["return_value"] is None


def test_syntax_error_is_a_run_error(capsule):
    result = capsule.json("def broken(:\n    pass")
    assert result["status"] == "run-error"
    assert "SyntaxError" in result["error"]


def test_invalid_utf8_source_is_a_clean_error(capsule):
    completed = capsule.run("--json", "-", stdin=b"x = '\xff\xfe'\n")
    result = json.loads(completed.stdout)
    assert result["status"] == "run-error"
    assert "SyntaxError" in result["error"] and "utf-8" in result["error"].lower()


def test_nul_bytes_in_source_are_a_clean_error(capsule):
    completed = capsule.run("--json", "-", stdin=b"print(1)\x00print(2)\n")
    result = json.loads(completed.stdout)
    assert result["status"] == "run-error"
    assert "null bytes" in result["error"]


def test_invalid_utf8_output_still_gives_valid_json(capsule):
    result = capsule.json("import sys; sys.stdout.buffer.write(b'ok\\xff\\x00end')")
    assert result["stdout"] == "ok\ufffd\ufffdend"


def test_top_level_await(capsule):
    result = capsule.json("import asyncio\nawait asyncio.sleep(0)\nx = await asyncio.sleep(0, 'done')\nx")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "'done'"


def test_stdout_and_stderr_interleave_in_order(capsule):
    completed = capsule.run(code="import sys\nfor i in range(3):\n"
                                 "    print('o', i)\n    print('e', i, file=sys.stderr)\n")
    assert completed.stdout == b"o 0\no 1\no 2\n"
    assert completed.stderr == b"e 0\ne 1\ne 2\n"


def test_output_flood_is_truncated_with_marker(capsule):
    result = capsule.json("import sys\nfor _ in range(40):\n    sys.stdout.write('x' * (1 << 20))\n'done'")
    assert result["status"] == "output-limit"
    assert len(result["stdout"]) == 16 << 20
    assert "output truncated" in result["stderr"]
    assert "output limit" in result["error"]
    assert result["return_value"] is None


def test_input_file_by_value(capsule, tmp_path):
    source = tmp_path / "data.csv"
    source.write_text("a,b\n1,2\n")
    result = capsule.json("import csv\nlist(csv.reader(open('data.csv')))",
                          "--file", f"data.csv={source}")
    assert result["return_value"] == "[['a', 'b'], ['1', '2']]"


# --- standard library that agents lean on ---------------------------------

def test_archives_and_databases_work(capsule):
    code = """
import gzip, io, json, sqlite3, zipfile, zlib
buf = io.BytesIO()
with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('a.txt', 'hello ' * 1000)
with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
    assert z.read('a.txt') == b'hello ' * 1000
assert gzip.decompress(gzip.compress(b'x' * 10000)) == b'x' * 10000
with open('/tmp/t.db', 'wb'): pass
db = sqlite3.connect('/tmp/data.db')
db.execute('create table t (k text, v int)')
db.executemany('insert into t values (?, ?)', [('a', 1), ('b', 2)])
db.commit(); db.close()
db = sqlite3.connect('/tmp/data.db')
rows = db.execute('select k, v from t order by v').fetchall()
json.dumps(rows)
"""
    result = capsule.json(code)
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "'[[\"a\", 1], [\"b\", 2]]'"


def test_common_modules_import(capsule):
    modules = ["json", "re", "decimal", "datetime", "pathlib", "hashlib", "statistics",
               "collections", "itertools", "csv", "zoneinfo", "xml.etree.ElementTree",
               "email", "html.parser", "unicodedata", "fractions", "tomllib", "uuid",
               "sqlite3", "zlib", "gzip", "zipfile", "tarfile", "base64", "struct", "asyncio"]
    result = capsule.json(f"import importlib\nfor m in {modules!r}: importlib.import_module(m)\n'ok'")
    assert result["return_value"] == "'ok'", result["error"]


def test_files_in_scratch_space_persist_within_a_run_only(capsule):
    first = capsule.json("open('/tmp/marker', 'w').write('x')\nimport os; os.listdir('/tmp')")
    assert first["return_value"] == "['marker']"
    second = capsule.json("import os; os.path.exists('/tmp/marker')")
    assert second["return_value"] == "False"


# --- stack ----------------------------------------------------------------

def test_deep_python_recursion_is_recursion_error(capsule):
    result = capsule.json("def f(n): return f(n + 1)\nf(0)")
    assert result["status"] == "run-error"
    assert "RecursionError" in result["error"]


def test_deep_c_recursion_is_recursion_error(capsule):
    result = capsule.json("x = []\nfor _ in range(100000): x = [x]\nrepr(x)")
    assert result["status"] == "run-error"
    assert "RecursionError" in result["error"]


def test_stack_exhaustion_past_the_limit_is_a_clean_trap(capsule):
    code = "import sys\nsys.setrecursionlimit(10**6)\nx = []\nfor _ in range(10**6): x = [x]\nrepr(x)"
    result = capsule.json(code)
    assert result["status"] == "trap"
    assert "stack" in result["error"]
    # The host is fine and the next run works.
    assert capsule.json("1 + 1")["return_value"] == "2"


def test_recursion_limit_matches_native(capsule):
    assert capsule.json("import sys; sys.getrecursionlimit()")["return_value"] == "1000"


# --- the walls (the full five-test protocol is `capsule check`) -------------

@pytest.mark.parametrize("path", ["/etc/passwd", "../../../../etc/passwd", "/proc/self/environ",
                                  "/root/.ssh/id_rsa", "/usr/bin/python3",
                                  "/usr/local/lib/python3.11/../../../../etc/passwd"])
def test_host_files_are_not_visible(capsule, path):
    result = capsule.json(f"open({path!r}).read()")
    assert result["status"] == "run-error"
    assert "FileNotFoundError" in result["error"]


def test_root_holds_only_the_sandbox(capsule):
    result = capsule.json("import os; sorted(os.listdir('/'))")
    assert result["return_value"] == "['dev', 'output', 'tmp', 'usr', 'work']"


def test_host_environment_is_not_visible(capsule):
    result = capsule.json("import os; dict(os.environ)", env={"CAPSULE_TEST_SECRET": "hunter2"})
    assert result["return_value"] == "{}"
    passed = capsule.json("import os; os.environ['GREETING']", "--env", "GREETING=hi")
    assert passed["return_value"] == "'hi'"


@pytest.mark.parametrize("code, expected", [
    ("import socket; socket.socket()", "PermissionError: [Errno 63] network access"),
    ("import socket; socket.create_connection(('127.0.0.1', 22), timeout=1)",
     "PermissionError: [Errno 63] network access"),
    ("import socket; socket.socket(fileno=0).connect(('127.0.0.1', 22))", "PermissionError"),
    ("import urllib.request; urllib.request.urlopen('http://127.0.0.1:1/')", "URLError"),
])
def test_network_is_unavailable(capsule, code, expected):
    result = capsule.json(code)
    assert result["status"] == "run-error"
    last = result["error"].strip().splitlines()[-1]
    assert any(name in last for name in expected.split("|")), last


@pytest.mark.parametrize("code, expected", [
    ("import os; os.system('id')", "PermissionError"),
    ("import subprocess; subprocess.run(['id'])", "OSError|NotImplementedError|ModuleNotFoundError|PermissionError"),
    ("import os; os.fork()", "AttributeError"),
    ("import os; os.execv('/bin/sh', ['sh'])", "AttributeError"),
    ("import os; os.kill(1, 9)", "AttributeError"),
])
def test_processes_cannot_be_spawned(capsule, code, expected):
    result = capsule.json(code)
    assert result["status"] == "run-error"
    last = result["error"].strip().splitlines()[-1]
    assert any(last.startswith(name) for name in expected.split("|")), last


def test_standard_library_is_read_only(capsule):
    result = capsule.json("open('/usr/local/lib/python3.11/os.py', 'a').write('evil')")
    assert result["status"] == "run-error"
    assert "Read-only file system" in result["error"]


def test_runs_are_independent(capsule):
    capsule.json("import builtins; builtins.LEAK = 1")
    assert capsule.json("import builtins; hasattr(builtins, 'LEAK')")["return_value"] == "False"


# --- command line ----------------------------------------------------------

def test_usage_errors(capsule):
    completed = subprocess.run([str(capsule.binary), "run", "--bogus"], capture_output=True)
    assert completed.returncode == 2 and b"unknown option" in completed.stderr
    completed = subprocess.run([str(capsule.binary), "frobnicate"], capture_output=True)
    assert completed.returncode == 2
    completed = subprocess.run([str(capsule.binary), "version"], capture_output=True)
    assert completed.returncode == 0 and b"capsule" in completed.stdout


def test_missing_stdlib_image_is_a_clear_error(capsule, tmp_path):
    completed = capsule.run("--stdlib", str(tmp_path / "missing.img"), code="1")
    assert completed.returncode == 1
    assert b"cannot open image" in completed.stderr


def test_damaged_stdlib_image_is_a_clear_error(capsule, tmp_path):
    bad = tmp_path / "bad.img"
    bad.write_bytes(b"CAPIMG01" + os.urandom(100))
    completed = capsule.run("--stdlib", str(bad), code="1")
    assert completed.returncode == 1
    assert b"damaged" in completed.stderr
