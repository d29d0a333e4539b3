"""What real agent programs hit (issue 11): each test failed before its fix.

Every program here runs inside capsule only (see conftest.py).
"""
import pathlib
import threading
import http.server

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SITE_PACKAGES = "/usr/lib/python3/dist-packages"


# --- 1. SQLite: several connections to one file ---------------------------------------

def test_sqlite_second_connection_sees_commits(capsule):
    result = capsule.json(
        "import sqlite3\n"
        "a = sqlite3.connect('/tmp/d.db'); a.execute('create table t(x)'); a.commit()\n"
        "b = sqlite3.connect('/tmp/d.db'); b.execute('select * from t').fetchall()\n"
        "a.execute('insert into t values (1)'); a.commit()\n"
        "b.execute('insert into t values (2)'); b.commit()\n"
        "sorted(sqlite3.connect('/tmp/d.db').execute('select x from t').fetchall())")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "[(1,), (2,)]"


def test_sqlite_interleaved_writers_lose_nothing(capsule):
    result = capsule.json(
        "import sqlite3\n"
        "a = sqlite3.connect('/work/d.db'); a.execute('create table t(x)'); a.commit()\n"
        "b = sqlite3.connect('/work/d.db')\n"
        "for i in range(300):\n"
        "    a.execute('insert into t values (?)', (i,)); a.commit()\n"
        "    b.execute('insert into t values (?)', (1000 + i,)); b.commit()\n"
        "c = sqlite3.connect('d.db')\n"
        "(c.execute('select count(*) from t').fetchone()[0],"
        " c.execute('pragma integrity_check').fetchone()[0])")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "(600, 'ok')"


def test_sqlite_writer_blocked_by_an_open_reader_is_busy_not_lost(capsule):
    # b holds a read transaction open: a's commit must wait (and time out
    # with "database is locked"), as with two connections natively.
    result = capsule.json(
        "import sqlite3\n"
        "a = sqlite3.connect('/tmp/d.db', timeout=0.1); a.execute('create table t(x)'); a.commit()\n"
        "b = sqlite3.connect('/tmp/d.db', isolation_level=None)\n"
        "b.execute('begin'); b.execute('select * from t').fetchall()\n"
        "a.execute('insert into t values (1)')\n"
        "try:\n"
        "    a.commit(); outcome = 'committed'\n"
        "except sqlite3.OperationalError as e:\n"
        "    outcome = str(e)\n"
        "b.execute('commit'); a.commit()\n"
        "(outcome, sqlite3.connect('/tmp/d.db').execute('select count(*) from t').fetchone()[0])")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "('database is locked', 1)"


def test_sqlite_wal_mode_works_with_two_connections(capsule):
    result = capsule.json(
        "import sqlite3, os\n"
        "a = sqlite3.connect('/tmp/w.db')\n"
        "mode = a.execute('pragma journal_mode=wal').fetchone()[0]\n"
        "a.execute('create table t(x)'); a.commit()\n"
        "b = sqlite3.connect('/tmp/w.db')\n"
        "a.execute('insert into t values (1)'); a.commit()\n"
        "seen = b.execute('select count(*) from t').fetchone()[0]\n"
        "b.execute('insert into t values (2)'); b.commit()\n"
        "wal = os.path.exists('/tmp/w.db-wal')\n"
        "a.close(); b.close()\n"
        "(mode, seen, wal, sqlite3.connect('/tmp/w.db').execute('select count(*) from t').fetchone()[0])")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "('wal', 1, True, 2)"


def test_sqlite_same_file_by_relative_and_dotted_paths(capsule):
    result = capsule.json(
        "import sqlite3, os\n"
        "os.makedirs('/work/sub', exist_ok=True)\n"
        "a = sqlite3.connect('d.db'); a.execute('create table t(x)'); a.commit()\n"
        "b = sqlite3.connect('/work/sub/../d.db'); b.execute('select * from t').fetchall()\n"
        "a.execute('insert into t values (1)'); a.commit()\n"
        "b.execute('insert into t values (2)'); b.commit()\n"
        "sqlite3.connect('/work/d.db').execute('select count(*) from t').fetchone()[0]")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "2"


# --- 2. time zones ---------------------------------------------------------------------

def test_zoneinfo_converts_time_zones(capsule):
    result = capsule.json(
        "from zoneinfo import ZoneInfo, available_timezones\n"
        "from datetime import datetime\n"
        "t = datetime(2026, 7, 1, 12, tzinfo=ZoneInfo('UTC'))\n"
        "(t.astimezone(ZoneInfo('Europe/Paris')).isoformat(),"
        " t.astimezone(ZoneInfo('America/New_York')).hour,"
        " 'Asia/Tokyo' in available_timezones())")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "('2026-07-01T14:00:00+02:00', 8, True)"


def test_time_zone_data_is_read_only_and_not_the_hosts_localtime(capsule):
    result = capsule.json(
        "import os, errno\n"
        "try:\n"
        "    open('/usr/share/zoneinfo/Europe/Paris', 'wb')\n"
        "    outcome = 'written'\n"
        "except OSError as e:\n"
        "    outcome = errno.errorcode[e.errno]\n"
        "(outcome, os.path.exists('/usr/share/zoneinfo/localtime'))")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "('EROFS', False)"  # the host's own zone is not leaked


# --- 3 and 4. packages from host site-packages ------------------------------------------

def test_accelerated_packages_install_without_their_compiled_modules(capsule):
    result = capsule.json(
        "import yaml, markupsafe, jinja2\n"
        "(yaml.safe_load('a: [1, 2]'), yaml.__with_libyaml__, str(markupsafe.escape('<b>')),"
        " jinja2.Template('{{ x|e }}').render(x='<i>'))",
        "--site-packages", SITE_PACKAGES)
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "({'a': [1, 2]}, False, '&lt;b&gt;', '&lt;i&gt;')"
    assert any(d.lower().startswith("pyyaml==") for d in result["dependencies"])
    notes = " ".join(result.get("notes", []))
    assert "PyYAML" in notes and "_yaml" in notes and "compiled" in notes
    assert "MarkupSafe" in notes and "_speedups" in notes


def test_single_file_egg_info_distributions_are_installed(capsule):
    result = capsule.json(
        "import xlsxwriter, jdcal\n"
        "wb = xlsxwriter.Workbook('/tmp/a.xlsx'); wb.add_worksheet().write('A1', 42); wb.close()\n"
        "import zipfile\n"
        "('xl/worksheets/sheet1.xml' in zipfile.ZipFile('/tmp/a.xlsx').namelist(),"
        " jdcal.gcal2jd(2000, 1, 1))",
        "--site-packages", SITE_PACKAGES)
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "(True, (2400000.5, 51544.0))"
    names = [d.split("==")[0].lower() for d in result["dependencies"]]
    assert "xlsxwriter" in names and "jdcal" in names


# --- 5. what is not granted says so ------------------------------------------------------

@pytest.mark.parametrize("code, exception", [
    ("import socket; socket.getaddrinfo('example.com', 80)", "PermissionError"),
    ("import socket; socket.create_connection(('127.0.0.1', 80))", "PermissionError"),
    ("import socket; socket.socket()", "PermissionError"),
    ("import socket; socket.gethostbyname('localhost')", "PermissionError"),
    ("import urllib.request; urllib.request.urlopen('http://127.0.0.1:1/')", "URLError"),
    ("import subprocess; subprocess.run(['ls'])", "PermissionError"),
    ("import os; os.system('ls')", "PermissionError"),
    ("import threading; threading.Thread(target=print).start()", "RuntimeError"),
    ("from concurrent.futures import ThreadPoolExecutor\n"
     "ThreadPoolExecutor().submit(print).result()", "RuntimeError"),
])
def test_denied_capabilities_raise_standard_exceptions_that_say_so(capsule, code, exception):
    result = capsule.json(code)
    assert result["status"] == "run-error"
    last = result["error"].strip().splitlines()[-1]
    assert last.split(":")[0].split(".")[-1] == exception, result["error"]
    assert "not available in the capsule sandbox" in result["error"]
    assert "AttributeError" not in result["error"]


def test_denied_network_names_the_granted_alternative(capsule):
    result = capsule.json("import socket; socket.getaddrinfo('example.com', 80)",
                          "--network", "ip.json=http://127.0.0.1:9/ip.json",
                          "--allow-url", "http://127.0.0.1:9/")
    assert "PermissionError" in result["error"]
    assert "/network/" in result["error"] and "ip.json" in result["error"]


def test_host_paths_are_explained(capsule):
    result = capsule.json("open('/etc/passwd').read()")
    assert "FileNotFoundError" in result["error"]
    assert "host files are not visible in the sandbox" in result["error"]
    result = capsule.json("open('/usr/local/lib/python3.11/os.py', 'a')")
    assert "read-only" in result["error"]


def test_permission_error_is_an_oserror_with_errno(capsule):
    result = capsule.json(
        "import socket, errno\n"
        "try:\n"
        "    socket.socket()\n"
        "except OSError as e:\n"
        "    r = (type(e).__name__, e.errno == errno.EPERM)\n"
        "r")
    assert result["return_value"] == "('PermissionError', True)"


# --- 6. traceback carets --------------------------------------------------------------

CARET_PROGRAM = "x = {'a': 1}\nvalue = 2 + x['b'] * 3\n"


def _caret_lines(text):
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("value = 2"):
            return line, lines[i + 1]
    raise AssertionError(text)


def test_traceback_carets_match_native_for_code_from_c_and_stdin(capsule, tmp_path):
    program = tmp_path / "p.py"
    program.write_text(CARET_PROGRAM)
    reference = capsule.run(str(program))
    expected = _caret_lines(reference.stderr.decode())
    assert "^" in expected[1]
    from_c = capsule.run(code=CARET_PROGRAM)
    assert _caret_lines(from_c.stderr.decode()) == expected
    from_stdin = capsule.run("-", stdin=CARET_PROGRAM.encode())
    assert _caret_lines(from_stdin.stderr.decode()) == expected
    without_newline = capsule.run(code=CARET_PROGRAM.rstrip("\n"))
    assert _caret_lines(without_newline.stderr.decode()) == expected
    as_json = capsule.json(CARET_PROGRAM)
    assert _caret_lines(as_json["error"]) == expected


# --- 7. file-system fidelity ------------------------------------------------------------

def test_utime_is_stored(capsule):
    result = capsule.json(
        "import os\n"
        "open('/tmp/f', 'w').close()\n"
        "os.utime('/tmp/f', (1000000000, 1234567890))\n"
        "s = os.stat('/tmp/f')\n"
        "(int(s.st_atime), int(s.st_mtime))")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "(1000000000, 1234567890)"


def test_shutil_copy2_keeps_modification_time(capsule):
    result = capsule.json(
        "import os, shutil\n"
        "open('/tmp/a', 'w').write('x')\n"
        "os.utime('/tmp/a', (1, 1600000000))\n"
        "shutil.copy2('/tmp/a', '/work/b')\n"
        "int(os.stat('/work/b').st_mtime)")
    assert result["return_value"] == "1600000000", result["error"]


def test_access_reports_read_only_mounts(capsule, tmp_path):
    (tmp_path / "data.txt").write_text("x")
    result = capsule.json(
        "import os\n"
        "(os.access('/usr/local/lib/python3.11/os.py', os.W_OK),"
        " os.access('/usr/local/lib/python3.11/os.py', os.R_OK),"
        " os.access('/data/data.txt', os.W_OK), os.access('/data', os.W_OK),"
        " os.access('/tmp', os.W_OK))",
        "--mount", f"{tmp_path}:/data:ro")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "(False, True, False, False, True)"


def test_dev_null_and_friends(capsule):
    result = capsule.json(
        "import os, subprocess\n"
        "with open('/dev/null', 'w') as f: f.write('gone')\n"
        "empty = open('/dev/null', 'rb').read()\n"
        "zeros = open('/dev/zero', 'rb').read(4)\n"
        "noise = len(open('/dev/urandom', 'rb').read(16))\n"
        "(empty, zeros, noise, os.devnull, sorted(os.listdir('/dev')))")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == (
        "(b'', b'\\x00\\x00\\x00\\x00', 16, '/dev/null', ['null', 'random', 'urandom', 'zero'])")


def test_dev_cannot_be_written_into(capsule):
    result = capsule.json(
        "import os\n"
        "out = []\n"
        "for attempt in (lambda: open('/dev/evil', 'w'), lambda: os.unlink('/dev/null'),\n"
        "                lambda: os.mkdir('/dev/d')):\n"
        "    try:\n"
        "        attempt(); out.append('allowed')\n"
        "    except OSError as e:\n"
        "        out.append(type(e).__name__)\n"
        "out")
    assert result["return_value"] == "['PermissionError', 'PermissionError', 'PermissionError']"


def test_bz2_and_lzma_round_trip_and_tarfile_uses_them(capsule):
    result = capsule.json(
        "import bz2, lzma, tarfile, io\n"
        "data = b'capsule ' * 1000\n"
        "ok = bz2.decompress(bz2.compress(data)) == data and lzma.decompress(lzma.compress(data)) == data\n"
        "for mode in ('w:bz2', 'w:xz'):\n"
        "    buffer = io.BytesIO()\n"
        "    with tarfile.open(fileobj=buffer, mode=mode) as t:\n"
        "        info = tarfile.TarInfo('a.txt'); info.size = len(data)\n"
        "        t.addfile(info, io.BytesIO(data))\n"
        "    buffer.seek(0)\n"
        "    with tarfile.open(fileobj=buffer) as t:\n"
        "        ok = ok and t.extractfile('a.txt').read() == data\n"
        "ok")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "True"


def test_corrupt_bz2_and_xz_data_are_exceptions(capsule):
    result = capsule.json(
        "import bz2, lzma\n"
        "out = []\n"
        "for module, data in ((bz2, b'BZh91AY&SYgarbage' * 10), (lzma, b'\\xfd7zXZ\\x00garbage' * 10)):\n"
        "    try:\n"
        "        module.decompress(data); out.append('decoded')\n"
        "    except (OSError, ValueError, EOFError, lzma.LZMAError) as e:\n"
        "        out.append(type(e).__name__)\n"
        "out")
    assert result["status"] == "success", result["error"]
    assert "decoded" not in result["return_value"]


# --- 8. entries are bounded -------------------------------------------------------------

def test_scratch_file_system_bounds_entries(capsule):
    result = capsule.json(
        "import os, errno\n"
        "n = 0\n"
        "try:\n"
        "    for n in range(200000):\n"
        "        open(f'/tmp/f{n}', 'w').close()\n"
        "except OSError as e:\n"
        "    outcome = (e.errno == errno.ENOSPC)\n"
        "(outcome, n)", "--max-files", "5000")
    assert result["status"] == "success", result["error"]
    made = eval(result["return_value"])
    assert made[0] is True and 4900 <= made[1] <= 5000


def test_read_write_host_mount_bounds_entries(capsule, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    result = capsule.json(
        "import os, errno\n"
        "n = 0\n"
        "try:\n"
        "    for n in range(100000):\n"
        "        os.mkdir(f'/out/d{n}') if n % 2 else open(f'/out/f{n}', 'w').close()\n"
        "except OSError as e:\n"
        "    outcome = (e.errno == errno.ENOSPC)\n"
        "(outcome, n)", "--mount", f"{target}:/out:rw:4M", "--max-files", "300")
    assert result["status"] == "success", result["error"]
    made = eval(result["return_value"])
    assert made[0] is True
    assert len(list(target.iterdir())) <= 300
    # Removing entries gives room back.
    result = capsule.json(
        "import os\n"
        "for name in os.listdir('/out'):\n"
        "    p = '/out/' + name\n"
        "    os.rmdir(p) if os.path.isdir(p) else os.unlink(p)\n"
        "os.mkdir('/out/again'); 'ok'", "--mount", f"{target}:/out:rw:4M", "--max-files", "300")
    assert result["return_value"] == "'ok'", result["error"]


# --- 9. /network template values -----------------------------------------------------

@pytest.fixture
def recording_server():
    paths = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            paths.append(self.path)
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], paths
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("value", ["..\\\\..\\\\secret.json", "a\\\\b", "..%5C..%5Csecret",
                                   "%2e%2e", "..%2F..%2Fsecret", "a%5cb"])
def test_template_values_with_backslash_or_dotdot_are_refused(capsule, recording_server, value):
    port, paths = recording_server
    result = capsule.json(
        f"try:\n"
        f"    open('/network/t-{value}').read(); outcome = 'fetched'\n"
        f"except OSError as e:\n"
        f"    outcome = type(e).__name__\n"
        f"outcome",
        "--network", f"t-{{}}=http://127.0.0.1:{port}/ok/{{}}",
        "--allow-url", f"http://127.0.0.1:{port}/")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] != "'fetched'"
    assert paths == []


def test_plain_template_values_still_work(capsule, recording_server):
    port, paths = recording_server
    result = capsule.json(
        "open('/network/t-paris..json').read()",
        "--network", f"t-{{}}=http://127.0.0.1:{port}/ok/{{}}",
        "--allow-url", f"http://127.0.0.1:{port}/")
    assert result["status"] == "success", result["error"]
    assert paths == ["/ok/paris..json"]


def test_utime_reaches_a_read_write_host_mount_and_not_a_read_only_one(capsule, tmp_path):
    (tmp_path / "rw").mkdir()
    (tmp_path / "ro").mkdir()
    (tmp_path / "rw" / "a.txt").write_text("x")
    (tmp_path / "ro" / "b.txt").write_text("y")
    result = capsule.json(
        "import os, errno\n"
        "os.utime('/rw/a.txt', (1500000000, 1600000000))\n"
        "try:\n"
        "    os.utime('/ro/b.txt', (1, 2)); ro = 'changed'\n"
        "except OSError as e:\n"
        "    ro = errno.errorcode[e.errno]\n"
        "(int(os.stat('/rw/a.txt').st_mtime), ro)",
        "--mount", f"{tmp_path / 'rw'}:/rw:rw", "--mount", f"{tmp_path / 'ro'}:/ro:ro")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "(1600000000, 'EROFS')"
    assert int((tmp_path / "rw" / "a.txt").stat().st_mtime) == 1600000000
    assert int((tmp_path / "ro" / "b.txt").stat().st_mtime) != 2


def test_files_have_ordinary_permission_bits_and_chmod_is_seen(capsule):
    result = capsule.json(
        "import os, stat, zipfile, tarfile\n"
        "open('/tmp/a.txt', 'w').write('x'); os.mkdir('/tmp/d')\n"
        "before = (oct(stat.S_IMODE(os.stat('/tmp/a.txt').st_mode)), oct(stat.S_IMODE(os.stat('/tmp/d').st_mode)))\n"
        "os.chmod('/tmp/a.txt', 0o600)\n"
        "after = oct(stat.S_IMODE(os.stat('/tmp/a.txt').st_mode))\n"
        "with zipfile.ZipFile('/tmp/z.zip', 'w') as z: z.write('/tmp/a.txt', 'a.txt')\n"
        "zip_mode = oct(zipfile.ZipFile('/tmp/z.zip').getinfo('a.txt').external_attr >> 16)\n"
        "with tarfile.open('/tmp/t.tar', 'w') as t: t.add('/tmp/d', 'd')\n"
        "tar_mode = oct(tarfile.open('/tmp/t.tar').getmember('d').mode)\n"
        "(before, after, zip_mode, tar_mode, stat.S_ISREG(os.stat('/tmp/a.txt').st_mode))")
    assert result["status"] == "success", result["error"]
    assert result["return_value"] == "(('0o644', '0o755'), '0o600', '0o100600', '0o755', True)"
