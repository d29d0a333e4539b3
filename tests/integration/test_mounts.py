"""Capabilities through the file system: artifacts out (/output), the
read-only documentation mount (/docs) and input files by value.

Guest code runs only through capsule (the `capsule` fixture refuses to start
unless the guest reports that it is the WASI sandbox)."""
import json


WRITE_ARTIFACTS = """
import os
os.makedirs('/output/charts', exist_ok=True)
open('/output/report.md', 'w').write('# Report\\n')
open('/output/charts/plot.png', 'wb').write(b'\\x89PNG' + bytes(range(256)))
open('/output/data.xlsx', 'wb').write(b'PK')
open('/output/blob', 'wb').write(b'')
"""


def test_artifacts_are_returned_with_their_media_types(capsule):
    result = capsule.json(WRITE_ARTIFACTS)
    assert result["status"] == "success", result
    by_name = {a["name"]: a for a in result["artifacts"]}
    assert set(by_name) == {"report.md", "charts/plot.png", "data.xlsx", "blob"}
    assert by_name["charts/plot.png"]["media_type"] == "image/png"
    assert by_name["charts/plot.png"]["size"] == 260
    assert by_name["report.md"]["media_type"] == "text/markdown"
    assert by_name["data.xlsx"]["media_type"].endswith("spreadsheetml.sheet")
    assert by_name["blob"] == {"name": "blob", "media_type": "application/octet-stream", "size": 0}


def test_output_dir_writes_the_artifacts_on_the_host(capsule, tmp_path):
    target = tmp_path / "out"
    completed = capsule.run("--output-dir", str(target), code=WRITE_ARTIFACTS)
    assert completed.returncode == 0, completed.stderr
    assert (target / "report.md").read_text() == "# Report\n"
    assert (target / "charts" / "plot.png").read_bytes() == b"\x89PNG" + bytes(range(256))
    assert (target / "blob").read_bytes() == b""


def test_files_outside_output_are_not_artifacts(capsule):
    result = capsule.json("open('/work/x.txt', 'w').write('x'); open('/tmp/y', 'w').write('y')")
    assert result["status"] == "success"
    assert result["artifacts"] == []


def test_output_directory_is_configurable(capsule, tmp_path):
    code = "open('/results/deep/a.json', 'w').write('{}')"
    result = capsule.json(code, "--output", "/results/deep")
    assert [a["name"] for a in result["artifacts"]] == ["a.json"]
    assert result["artifacts"][0]["media_type"] == "application/json"
    bad = capsule.run("--output", "relative", code="pass")
    assert bad.returncode == 2 and b"absolute guest path" in bad.stderr


def test_artifacts_of_a_failed_run_are_still_returned(capsule):
    result = capsule.json("open('/output/partial.txt', 'w').write('half'); 1/0")
    assert result["status"] == "run-error"
    assert [a["name"] for a in result["artifacts"]] == ["partial.txt"]


def test_artifacts_stay_within_the_disk_quota(capsule):
    code = "open('/output/big.bin', 'wb').write(b'x' * (3 << 20))"
    result = capsule.json(code, "--disk", "1M")
    assert result["status"] == "disk-limit"
    assert all(a["size"] <= 1 << 20 for a in result["artifacts"])


# --- documentation mount ----------------------------------------------------

def make_docs(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "api.md").write_text("intro line\n# Using the API\n\nCall it.\n")
    (docs / "notes.md").write_text("no heading here\n")
    (docs / "README.md").write_text("Read api.md first.\n")
    (docs / "skip.txt").write_text("not markdown")
    (tmp_path / "secret.md").write_text("host secret")
    (docs / "link.md").symlink_to(tmp_path / "secret.md")
    return docs


def test_docs_are_readable_with_a_generated_index(capsule, tmp_path):
    docs = make_docs(tmp_path)
    code = ("import os, json\n"
            "print(json.dumps({'list': sorted(os.listdir('/docs')),"
            " 'index': open('/docs/README.md').read(),"
            " 'api': open('/docs/api.md').read()}))")
    result = capsule.json(code, "--docs", str(docs))
    assert result["status"] == "success", result
    seen = json.loads(result["stdout"])
    assert seen["list"] == ["README.md", "api.md", "notes.md"]  # no .txt, no symlink
    assert "- [Using the API](api.md)" in seen["index"]
    assert "- [notes.md](notes.md)" in seen["index"]
    assert "Read api.md first." in seen["index"]
    assert seen["api"].startswith("intro line")


def test_docs_are_read_only(capsule, tmp_path):
    docs = make_docs(tmp_path)
    code = """
import errno, os
denied = []
attempts = [
    lambda: open('/docs/api.md', 'w'),
    lambda: open('/docs/new.md', 'x'),
    lambda: open('/docs/api.md', 'a'),
    lambda: os.mkdir('/docs/sub'),
    lambda: os.unlink('/docs/api.md'),
    lambda: os.rename('/docs/api.md', '/docs/b.md'),
    lambda: os.truncate('/docs/api.md', 0),
    lambda: os.rmdir('/docs'),
]
for attempt in attempts:
    try:
        attempt()
    except OSError as error:
        denied.append(error.errno in (errno.EROFS, errno.EACCES, errno.EBUSY, errno.EPERM)
                      or error.errno)
print(denied)
"""
    result = capsule.json(code, "--docs", str(docs))
    assert result["stdout"].strip() == str([True] * 8), result
    assert (docs / "api.md").read_text().startswith("intro line")


def test_docs_directory_must_exist(capsule, tmp_path):
    completed = capsule.run("--docs", str(tmp_path / "missing"), code="pass")
    assert completed.returncode == 2
    assert b"cannot open documentation directory" in completed.stderr


def test_no_docs_mount_unless_configured(capsule):
    result = capsule.json("import os; os.path.exists('/docs')")
    assert result["return_value"] == "False"


# --- input files by value -----------------------------------------------------

def test_input_file_by_value_lands_in_scratch(capsule, tmp_path):
    host = tmp_path / "in.csv"
    host.write_text("a,b\n1,2\n")
    code = ("data = open('data/in.csv').read()\n"
            "open('data/in.csv', 'w').write('changed')\n"
            "data")
    result = capsule.json(code, "--file", f"data/in.csv={host}")
    assert result["return_value"] == repr("a,b\n1,2\n")
    assert host.read_text() == "a,b\n1,2\n"  # by value: the host copy is untouched


# --- path normalisation -------------------------------------------------------

def test_trailing_slash_means_directory_as_on_linux(capsule):
    code = """
import os
seen = []
open('f', 'w').write('x')
for attempt in [lambda: open('missing/', 'w'), lambda: os.stat('f/'),
                lambda: open('f/'), lambda: os.unlink('f/')]:
    try:
        attempt()
        seen.append('ok')
    except OSError as error:
        seen.append(type(error).__name__)
os.mkdir('d/')
seen += [os.path.isdir('d/'), os.path.exists('missing')]
print(seen)
"""
    result = capsule.json(code)
    assert result["stdout"].strip() == str(["IsADirectoryError", "NotADirectoryError",
                                            "NotADirectoryError", "NotADirectoryError",
                                            True, False]), result


# --- HTTP resources (/network) --------------------------------------------------

import http.server
import threading
import time

import pytest


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path == "/ip.json":
            self.reply(200, b'{"ip": "203.0.113.7"}')
        elif self.path == "/huge":
            self.send_response(200)
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(64):  # 4 MiB, far past the cap used below
                    self.wfile.write(chunk)
            except OSError:
                pass
        elif self.path == "/slow":
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(30):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
        elif self.path.startswith("/echo/"):
            self.reply(200, ("path=" + self.path).encode())
        elif self.path == "/redirect-in":
            self.redirect(f"http://127.0.0.1:{port}/ip.json")
        elif self.path == "/redirect-out":
            self.redirect(f"http://localhost:{port}/ip.json")
        else:
            self.reply(404, b"not here")

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def network_args(server, *names):
    args = ["--allow-url", server + "/"]
    for name in names:
        args += ["--network", f"{name}={server}/{name}"]
    return args


READ = """
import os
try:
    print('ok', open('/network/%s').read())
except OSError as error:
    print('error', type(error).__name__)
"""


def test_http_resource_is_fetched_by_the_host(capsule, server):
    code = "import json, os\nprint(os.listdir('/network'), json.load(open('/network/ip.json')))"
    result = capsule.json(code, *network_args(server, "ip.json"))
    assert result["stdout"].strip() == "['ip.json'] {'ip': '203.0.113.7'}", result


def test_http_resource_template_fills_in_the_name(capsule, server):
    code = """
import os
print(os.listdir('/network'))
for name in ['city-paris.json', 'city-new york.json', 'city-a?b#c@d%.json']:
    print(open('/network/' + name).read())
for name in ['city-.json', 'city-..json', 'city-...json', 'other.json', 'city-x.txt']:
    try:
        open('/network/' + name)
        print('opened', name)
    except OSError as error:
        print(type(error).__name__)
"""
    result = capsule.json(code, "--allow-url", server + "/echo/",
                          "--network", f"city-{{}}.json={server}/echo/{{}}?format=json")
    assert result["stdout"].splitlines() == [
        "['city-{}.json']",
        "path=/echo/paris?format=json",
        "path=/echo/new%20york?format=json",
        "path=/echo/a%3Fb%23c%40d%25?format=json"] + ["FileNotFoundError"] * 5, result


def test_http_resource_template_is_checked(capsule, server):
    for spec in (f"a-{{}}.json={server}/fixed", f"a.json={server}/{{}}",
                 f"a-{{}}-{{}}={server}/{{}}", f"a-{{}}=http://{{}}.example.com/"):
        bad = capsule.run("--network", spec, code="pass")
        assert bad.returncode == 2 and b"template" in bad.stderr + b"template", spec


def test_http_404_is_an_oserror_with_a_message(capsule, server):
    result = capsule.json(READ % "missing", *network_args(server, "missing"))
    assert result["stdout"].strip() == "error FileNotFoundError"
    assert "HTTP 404" in result["stderr"]


def test_http_body_over_the_size_cap_is_refused(capsule, server):
    result = capsule.json(READ % "huge", *network_args(server, "huge"), "--http-max", "1M")
    assert result["stdout"].strip() == "error OSError", result
    assert "larger than 1048576 bytes" in result["stderr"]


def test_slow_http_body_times_out(capsule, server):
    started = time.monotonic()
    result = capsule.json(READ % "slow", *network_args(server, "slow"), "--http-timeout", "1")
    assert result["stdout"].strip() == "error TimeoutError", result
    assert "timed out" in result["stderr"]
    assert time.monotonic() - started < 5


def test_redirects_are_rechecked_against_the_allow_list(capsule, server):
    inside = capsule.json(READ % "redirect-in", *network_args(server, "redirect-in"))
    assert inside["stdout"].strip() == 'ok {"ip": "203.0.113.7"}', inside
    outside = capsule.json(READ % "redirect-out", *network_args(server, "redirect-out"))
    assert outside["stdout"].strip() == "error PermissionError", outside
    assert "redirect to http://localhost" in outside["stderr"]


def test_url_outside_the_allow_list_is_denied(capsule, server):
    args = ["--network", f"ip.json={server}/ip.json"]
    denied = capsule.json(READ % "ip.json", *args)
    assert denied["stdout"].strip() == "error PermissionError"
    # A prefix only matches at a boundary: port 1 is not port 1xxxx.
    port_prefix = server.rsplit(":", 1)[0] + ":" + server.rsplit(":", 1)[1][:1]
    denied = capsule.json(READ % "ip.json", *args, "--allow-url", port_prefix)
    assert denied["stdout"].strip() == "error PermissionError"
    allowed = capsule.json(READ % "ip.json", *args, "--allow-host", server.split("//")[1])
    assert allowed["stdout"].strip().startswith("ok")


def test_network_files_are_read_only_and_no_others_appear(capsule, server):
    code = """
import os
seen = []
for attempt in [lambda: open('/network/ip.json', 'w'), lambda: open('/network/new', 'w'),
                lambda: os.unlink('/network/ip.json'), lambda: os.mkdir('/network/d'),
                lambda: open('/network/other')]:
    try:
        attempt()
        seen.append('ok')
    except OSError as error:
        seen.append(type(error).__name__)
print(seen)
"""
    result = capsule.json(code, *network_args(server, "ip.json"))
    assert result["stdout"].strip() == str(["OSError", "OSError", "OSError", "OSError",
                                            "FileNotFoundError"]), result


def test_no_network_directory_unless_configured(capsule):
    result = capsule.json("import os; os.path.exists('/network')")
    assert result["return_value"] == "False"


def test_network_report_example(tmp_path):
    from conftest import ROOT
    import subprocess
    out = tmp_path / "report"
    completed = subprocess.run([str(ROOT / "examples" / "network_report.sh"), str(out)],
                               capture_output=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    report = (out / "report.md").read_text()
    assert "- **ip**: 203.0.113.7" in report and "is IPv4" in report
    assert json.loads((out / "ip.json").read_text())["city"] == "Example City"


# --- exec resources (--exec-resource) -------------------------------------------

def make_command(tmp_path, body):
    script = tmp_path / "provider.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def test_exec_resource_runs_the_host_command_with_the_name(capsule, tmp_path):
    command = make_command(tmp_path, 'printf "content of %s" "$1"\n')
    result = capsule.json("open('/backend/report.csv').read()",
                          "--exec-resource", f"/backend={command}")
    assert result["return_value"] == "'content of report.csv'", result


def test_exec_resource_name_is_an_argument_not_shell(capsule, tmp_path):
    marker = tmp_path / "pwned"
    command = make_command(tmp_path, 'printf "%s" "$1"\n')
    name = f"$(touch {marker})".replace("/", "")  # '/' cannot be in a name anyway
    code = f"open('/backend/' + {name!r}).read()"
    result = capsule.json(code, "--exec-resource", f"/backend={command}")
    assert result["return_value"] == repr(name)
    assert not marker.exists()


def test_failing_exec_resource_is_an_oserror(capsule, tmp_path):
    command = make_command(tmp_path, 'echo partial; exit 3\n')
    result = capsule.json(READ.replace("/network/", "/backend/") % "x",
                          "--exec-resource", f"/backend={command}")
    assert result["stdout"].strip() == "error OSError", result
    assert "failed" in result["stderr"]


def test_exec_resource_stays_inside_its_directory_and_read_only(capsule, tmp_path):
    command = make_command(tmp_path, 'printf x\n')
    code = """
import os
seen = []
for attempt in [lambda: open('/backend/../etc/passwd'), lambda: open('/backend/a/b'),
                lambda: open('/backend/x', 'w'), lambda: os.mkdir('/backend/d'),
                lambda: os.listdir('/backend')]:
    try:
        seen.append(repr(attempt()))
    except OSError as error:
        seen.append(type(error).__name__)
print(seen)
"""
    result = capsule.json(code, "--exec-resource", f"/backend={command}")
    assert result["stdout"].strip() == str(["FileNotFoundError", "FileNotFoundError", "OSError",
                                            "OSError", "[]"]), result


def test_no_exec_resource_unless_configured(capsule):
    result = capsule.json("import os; os.path.exists('/backend')")
    assert result["return_value"] == "False"


# --- read-only host directory mounts (--mount HOST:GUEST[:ro]) --------------------

import os


def make_host_tree(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret")
    (root / "a.txt").write_text("hello")
    (root / "sub" / "b.txt").write_text("nested")
    (root / "escape").symlink_to("../outside/secret.txt")
    (root / "absolute").symlink_to(outside / "secret.txt")
    (root / "dir-escape").symlink_to("../outside")
    (root / "inner").symlink_to("a.txt")
    return root


def test_host_mount_reads_and_lists(capsule, tmp_path):
    root = make_host_tree(tmp_path)
    code = ("import os, json\n"
            "print(json.dumps([sorted(os.listdir('/data')), os.listdir('/data/sub'),"
            " open('/data/a.txt').read(), open('/data/sub/b.txt').read(),"
            " open('/data/inner').read(), os.stat('/data/a.txt').st_size,"
            " os.path.isdir('/data/sub')]))")
    result = capsule.json(code, "--mount", f"{root}:/data/../data/")
    assert json.loads(result["stdout"]) == [
        ["a.txt", "absolute", "dir-escape", "escape", "inner", "sub"], ["b.txt"],
        "hello", "nested", "hello", 5, True], result


def test_host_mount_cannot_be_left(capsule, tmp_path):
    root = make_host_tree(tmp_path)
    code = """
seen = []
for path in ['/data/escape', '/data/absolute', '/data/dir-escape/secret.txt',
             '/data/../' + %r + '/outside/secret.txt', '/data/sub/../../etc/passwd']:
    try:
        seen.append(open(path).read())
    except OSError as error:
        seen.append(type(error).__name__)
print(seen)
""" % str(tmp_path).lstrip("/")
    result = capsule.json(code, "--mount", f"{root}:/data")
    seen = result["stdout"]
    assert "host secret" not in seen and "root:" not in seen, result
    assert seen.strip() == str(["PermissionError", "PermissionError", "PermissionError",
                                "FileNotFoundError", "FileNotFoundError"])


def test_host_mount_symlink_swapped_during_use_stays_inside(capsule, tmp_path):
    root = make_host_tree(tmp_path)
    link = root / "swing"
    link.symlink_to("a.txt")
    stop = threading.Event()

    def swap():
        # Flips the link between an inside and an outside target as fast as
        # it can while the guest keeps reading it.
        targets = ["a.txt", str(tmp_path / "outside" / "secret.txt")]
        i = 0
        while not stop.is_set():
            temporary = root / f".swing{i % 2}"
            temporary.symlink_to(targets[i % 2])
            os.replace(temporary, link)
            i += 1

    thread = threading.Thread(target=swap)
    thread.start()
    try:
        code = """
seen = set()
for _ in range(3000):
    try:
        seen.add(open('/data/swing').read())
    except OSError as error:
        seen.add(type(error).__name__)
print(sorted(seen))
"""
        result = capsule.json(code, "--mount", f"{root}:/data")
    finally:
        stop.set()
        thread.join()
    assert "host secret" not in result["stdout"], result
    assert "hello" in result["stdout"]


def test_host_mount_is_read_only(capsule, tmp_path):
    root = make_host_tree(tmp_path)
    code = """
import errno, os
seen = []
for attempt in [lambda: open('/data/a.txt', 'w'), lambda: open('/data/a.txt', 'a'),
                lambda: open('/data/new', 'w'), lambda: os.mkdir('/data/d'),
                lambda: os.unlink('/data/a.txt'), lambda: os.rmdir('/data/sub'),
                lambda: os.rename('/data/a.txt', '/data/b'),
                lambda: os.rename('/data/a.txt', '/work/b'),
                lambda: os.truncate('/data/a.txt', 0), lambda: os.utime('/data/a.txt'),
                lambda: os.link('/data/a.txt', '/work/hard'),
                lambda: os.link('/work/main.py', '/data/hard'),
                lambda: os.symlink('/etc', '/data/link')]:
    try:
        attempt()
        seen.append('allowed')
    except OSError as error:
        seen.append(errno.errorcode[error.errno])
print(seen)
"""
    result = capsule.json(code, "--mount", f"{root}:/data:ro")
    seen = eval(result["stdout"])
    assert "allowed" not in seen, result
    assert set(seen) <= {"EROFS", "EACCES", "EPERM", "EXDEV", "ENOTSUP", "EBUSY"}, seen
    assert (root / "a.txt").read_text() == "hello"
    assert sorted(p.name for p in root.iterdir()) == [
        "a.txt", "absolute", "dir-escape", "escape", "inner", "sub"]


def test_host_mount_arguments_are_checked(capsule, tmp_path):
    root = make_host_tree(tmp_path)
    for mode in (":rx", ":rw:lots", ":rw:"):
        wrong = capsule.run("--mount", f"{root}:/data{mode}", code="pass")
        assert wrong.returncode == 2 and b"--mount wants" in wrong.stderr, mode
    missing = capsule.run("--mount", f"{tmp_path}/missing:/data", code="pass")
    assert missing.returncode == 2 and b"cannot mount" in missing.stderr
    bad = capsule.run("--mount", f"{root}:relative", code="pass")
    assert bad.returncode == 2


# --- read-write host mounts (--mount HOST:GUEST:rw[:QUOTA]) -------------------------

def test_read_write_mount_changes_the_host_directory(capsule, tmp_path):
    root = make_host_tree(tmp_path)
    code = """
import os
with open('/data/new.txt', 'w') as f: f.write('written by the guest')
with open('/data/a.txt', 'a') as f: f.write(' world')
os.mkdir('/data/made')
with open('/data/made/x.bin', 'wb') as f: f.write(bytes(range(10)))
os.rename('/data/sub/b.txt', '/data/made/b.txt')
os.rmdir('/data/sub')
os.truncate('/data/made/x.bin', 4)
with open('/data/made/x.bin', 'r+b') as f:
    f.seek(2); f.write(b'AB'); f.seek(0); print(f.read().hex())
os.remove('/data/inner')
print(sorted(os.listdir('/data')), sorted(os.listdir('/data/made')), open('/data/a.txt').read())
"""
    result = capsule.json(code, "--mount", f"{root}:/data:rw")
    assert result["status"] == "success", result
    assert result["stdout"].splitlines() == [
        "0001" + b"AB".hex(),
        "['a.txt', 'absolute', 'dir-escape', 'escape', 'made', 'new.txt'] "
        "['b.txt', 'x.bin'] hello world"]
    assert (root / "new.txt").read_text() == "written by the guest"
    assert (root / "a.txt").read_text() == "hello world"
    assert (root / "made" / "b.txt").read_text() == "nested"
    assert (root / "made" / "x.bin").read_bytes() == b"\x00\x01AB"
    assert not (root / "sub").exists() and not (root / "inner").exists()


def test_read_write_mount_cannot_be_left_or_write_outside(capsule, tmp_path):
    root = make_host_tree(tmp_path)
    outside = tmp_path / "outside"
    hard = tmp_path / "hard-target"
    hard.write_text("host file with two names")
    os.link(hard, root / "hardlink")
    code = """
import errno, os
seen = []
for attempt in [lambda: open('/data/escape', 'w').close(),           # symlink out (relative)
                lambda: open('/data/absolute', 'a').close(),         # symlink out (absolute)
                lambda: open('/data/dir-escape/new', 'w').close(),   # through a linked directory
                lambda: os.mkdir('/data/dir-escape/d'),
                lambda: os.rename('/data/a.txt', '/data/dir-escape/a.txt'),
                lambda: os.unlink('/data/dir-escape/secret.txt'),
                lambda: open('/data/hardlink', 'w').close(),        # a name of an outside file
                lambda: os.rename('/data/a.txt', '/work/a.txt'),     # out of the mount
                lambda: os.rmdir('/data')]:
    try:
        attempt()
        seen.append('allowed')
    except OSError as error:
        seen.append(errno.errorcode[error.errno])
print(seen)
"""
    result = capsule.json(code, "--mount", f"{root}:/data:rw")
    seen = eval(result["stdout"])
    assert "allowed" not in seen, (seen, result)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "host secret"
    assert hard.read_text() == "host file with two names"
    assert (root / "a.txt").read_text() == "hello"


def test_read_write_mount_quota_is_enforced(capsule, tmp_path):
    root = make_host_tree(tmp_path)
    code = """
import errno, os
with open('/data/one', 'wb') as f: f.write(b'x' * 600)
try:
    with open('/data/two', 'wb') as f: f.write(b'y' * 600)
    print('second write allowed')
except OSError as error:
    print(errno.errorcode[error.errno])
os.remove('/data/one')
with open('/data/three', 'wb') as f: f.write(b'z' * 900)   # freed space can be reused
print(os.path.getsize('/data/three'))
with open('/data/three', 'wb') as f: f.write(b'z' * 5000)
"""
    result = capsule.json(code, "--mount", f"{root}:/data:rw:1K")
    assert result["stdout"].splitlines() == ["ENOSPC", "900"], result
    assert result["status"] == "disk-limit", result
    assert (root / "three").stat().st_size <= 1024
    assert not (root / "one").exists()


def test_read_write_mount_in_a_config_file(capsule, tmp_path):
    root = make_host_tree(tmp_path)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mounts": [
        {"host": str(root), "guest": "/data", "mode": "rw", "quota_bytes": 100}]}))
    code = ("import errno\ntry:\n    with open('/data/big', 'w') as f: f.write('x' * 200)\n"
            "except OSError as e:\n    print(errno.errorcode[e.errno])\n"
            "with open('/data/small', 'w') as f: f.write('ok')")
    result = capsule.json(code, "--config", str(config))
    assert result["stdout"].strip() == "ENOSPC", result
    assert (root / "small").read_text() == "ok"


# --- --config FILE ------------------------------------------------------------------

def test_config_file_grants_what_the_flags_grant(capsule, tmp_path, server):
    root = make_host_tree(tmp_path)
    docs = make_docs(tmp_path)
    command = make_command(tmp_path, 'printf "from %s" "$1"\n')
    config = tmp_path / "capsule.json"
    config.write_text(json.dumps({
        "mounts": [{"host": str(root), "guest": "/data", "mode": "ro"}],
        "docs": str(docs),
        "output": "/results",
        "output_dir": str(tmp_path / "out"),
        "http": {"ip.json": server + "/ip.json"},
        "allow_urls": [server + "/"],
        "http_timeout": 5,
        "http_max_bytes": 1048576,
        "exec_resources": {"/backend": command},
    }))
    code = ("import json\n"
            "open('/results/r.txt', 'w').write('done')\n"
            "print(json.dumps([open('/data/a.txt').read(), json.load(open('/network/ip.json')),"
            " open('/backend/x').read(), open('/docs/api.md').read()[:5]]))")
    completed = capsule.run("--config", str(config), code=code)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == ["hello", {"ip": "203.0.113.7"}, "from x", "intro"]
    assert (tmp_path / "out" / "r.txt").read_text() == "done"


def test_config_file_errors_are_clear(capsule, tmp_path):
    config = tmp_path / "capsule.json"
    config.write_text('{"mounts": [{"host": "/tmp", "guest": "/data"}], "mount": []}')
    completed = capsule.run("--config", str(config), code="pass")
    assert completed.returncode == 2 and b'unknown key "mount"' in completed.stderr
    config.write_text("[1, 2]")
    completed = capsule.run("--config", str(config), code="pass")
    assert completed.returncode == 2 and b"not a JSON object" in completed.stderr
    config.write_text('{"http": {"x": 42}}')
    completed = capsule.run("--config", str(config), code="pass")
    assert completed.returncode == 2 and b"malformed setting" in completed.stderr
