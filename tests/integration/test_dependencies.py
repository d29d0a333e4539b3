"""Dependencies: imports and PEP 723 in, pure-Python packages installed by
the host from wheel directories, a local PEP 503/691 index and Debian's
site-packages.

The wheels are built here, with zipfile, so every error path (native-only,
conflicts, corrupt archives, "../" names, symbolic links, zip bombs, wrong
hashes) has a real file behind it.  Guest code runs only through capsule.
"""
import base64
import hashlib
import http.server
import io
import json
import os
import threading
import zipfile

import pytest

DIST_PACKAGES = "/usr/lib/python3/dist-packages"
SITE = "/usr/local/lib/python3.11/site-packages"


def make_wheel(directory, name, version, files, requires=(), tag="py3-none-any",
               requires_python=None, extra_entries=()):
    """Writes NAME-VERSION-TAG.whl with the files given, its METADATA, WHEEL
    and RECORD; returns its path."""
    info = f"{name}-{version}.dist-info"
    metadata = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        metadata.append(f"Requires-Python: {requires_python}")
    metadata += [f"Requires-Dist: {r}" for r in requires]
    entries = dict(files)
    entries[f"{info}/METADATA"] = "\n".join(metadata) + "\n\n"
    entries[f"{info}/WHEEL"] = f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n"
    record = []
    for path, content in entries.items():
        data = content.encode() if isinstance(content, str) else content
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    entries[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    path = os.path.join(directory, f"{name}-{version}-{tag}.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, content in entries.items():
            archive.writestr(entry, content)
        for info_entry, content in extra_entries:
            archive.writestr(info_entry, content)
    return path


def module(value):
    return {"VALUE": value}


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("wheelhouse"))
    make_wheel(d, "capsule_demo", "1.0", {"capsule_demo/__init__.py": "VALUE = 'one'\n"})
    make_wheel(d, "capsule_demo", "2.0", {"capsule_demo/__init__.py": "VALUE = 'two'\n"})
    make_wheel(d, "capsule_demo", "3.0a1", {"capsule_demo/__init__.py": "VALUE = 'pre'\n"})
    make_wheel(d, "demo_app", "1.0", {"demo_app.py": "import capsule_demo\nVALUE = capsule_demo.VALUE\n"},
               requires=["capsule-demo<2", 'helper-lib; sys_platform != "wasi"',
                         'extra_lib>=1; extra == "fancy"'])
    make_wheel(d, "extra_lib", "1.0", {"extra_lib.py": "VALUE = 'extra'\n"})
    make_wheel(d, "needs_new_demo", "1.0", {"needs_new_demo.py": ""}, requires=["capsule-demo>=2"])
    make_wheel(d, "native_only", "1.0", {"native_only.py": ""},
               tag="cp311-cp311-manylinux_2_17_x86_64")
    make_wheel(d, "future_only", "1.0", {"future_only.py": ""}, requires_python=">=3.13")
    make_wheel(d, "with_data", "1.0", {"with_data-1.0.data/purelib/with_data.py": "VALUE = 'data'\n",
                                       "with_data-1.0.data/scripts/tool": "#!/bin/sh\n"})
    make_wheel(d, "traversal_pkg", "1.0", {"traversal_pkg.py": ""},
               extra_entries=[("../evil.py", "print('escaped')\n")])
    link = zipfile.ZipInfo("symlink_pkg/passwd")
    link.create_system = 3
    link.external_attr = (0o120777 << 16)
    make_wheel(d, "symlink_pkg", "1.0", {"symlink_pkg/__init__.py": ""},
               extra_entries=[(link, "/etc/passwd")])
    make_wheel(d, "bomb_pkg", "1.0", {"bomb_pkg/__init__.py": "",
                                      "bomb_pkg/zeros.bin": b"\0" * (64 << 20)})
    with open(os.path.join(d, "corrupt_pkg-1.0-py3-none-any.whl"), "wb") as f:
        f.write(b"PK\x03\x04 this is not a zip archive" * 10)
    return d


class Index:
    """A PEP 503 (HTML) and PEP 691 (JSON) simple index on loopback."""

    def __init__(self, root):
        self.root = root
        self.projects = {}  # normalized name -> [(filename, sha256 given)]
        self.json_projects = set()
        self.raw_pages = {}  # normalized name -> (body, content type), served as is
        self.downloads = []

    def add(self, wheel, sha256=None, json_api=False):
        name = os.path.basename(wheel).split("-")[0].replace("_", "-").lower()
        with open(wheel, "rb") as f:
            data = f.read()
        os.makedirs(os.path.join(self.root, "files"), exist_ok=True)
        with open(os.path.join(self.root, "files", os.path.basename(wheel)), "wb") as f:
            f.write(data)
        given = sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
        self.projects.setdefault(name, []).append((os.path.basename(wheel), given))
        if json_api:
            self.json_projects.add(name)

    def page(self, name, accept):
        if name in self.raw_pages:
            return self.raw_pages[name]
        files = self.projects.get(name)
        if files is None:
            return None, None
        if name in self.json_projects and "application/vnd.pypi.simple.v1+json" in accept:
            body = {"meta": {"api-version": "1.0"}, "name": name,
                    "files": [{"filename": f, "url": f"../../files/{f}", "hashes": {"sha256": h}}
                              for f, h in files]}
            return json.dumps(body).encode(), "application/vnd.pypi.simple.v1+json"
        links = "".join(f'<a href="../../files/{f}#sha256={h}">{f}</a><br>\n' for f, h in files)
        return f"<!DOCTYPE html><html><body>{links}</body></html>".encode(), "text/html"


@pytest.fixture(scope="session")
def index(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("index"))
    built = str(tmp_path_factory.mktemp("index-wheels"))
    state = Index(root)
    state.add(make_wheel(built, "idx_pkg", "1.0", {"idx_pkg.py": "VALUE = 'from the index'\n"},
                         requires=["idx-dep"]))
    state.add(make_wheel(built, "idx_dep", "0.5", {"idx_dep.py": "VALUE = 'dep'\n"}), json_api=True)
    state.add(make_wheel(built, "bad_hash", "1.0", {"bad_hash.py": ""}), sha256="0" * 64)
    # Pages no index should serve: the host must shrug, not crash.
    state.raw_pages = {
        "broken-html": (b'<a href="../../files/x-1.0-py3-none-any.whl<a href=\'<a href= <a'
                        b' data-yanked href=../../files/broken_html-1.0-py3-none-any.whl>'
                        b'broken_html-1.0-py3-none-any.whl' + b"&amp;" * 5000, "text/html"),
        "broken-json": (json.dumps({"files": [{"filename": 7, "url": None},
                                              {"filename": "broken_json-1.0-py3-none-any.whl",
                                               "url": {"no": 1}, "hashes": "x"},
                                              "text", None]}).encode(),
                        "application/vnd.pypi.simple.v1+json"),
        "not-a-list": (b'{"files": "nope"}', "application/vnd.pypi.simple.v1+json"),
        "binary-junk": (bytes(range(256)) * 64, "text/html"),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if len(parts) == 2 and parts[0] == "simple":
                body, kind = state.page(parts[1], self.headers.get("Accept", ""))
            elif len(parts) == 2 and parts[0] == "files":
                state.downloads.append(parts[1])
                try:
                    with open(os.path.join(root, "files", os.path.basename(parts[1])), "rb") as f:
                        body, kind = f.read(), "application/octet-stream"
                except OSError:
                    body, kind = None, None
            else:
                body, kind = None, None
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    yield state
    server.shutdown()


def run(capsule, tmp_path, code, *sources, **kwargs):
    return capsule.json(code, "--package-cache", str(tmp_path / "cache"), *sources, **kwargs)


# --- detection and installation -------------------------------------------------------

def test_an_import_installs_the_highest_stable_version(capsule, wheelhouse, tmp_path):
    result = run(capsule, tmp_path, "import capsule_demo\nprint(capsule_demo.VALUE)",
                 "--wheels", wheelhouse)
    assert result["status"] == "success", result
    assert result["stdout"] == "two\n"
    assert result["dependencies"] == ["capsule_demo==2.0"]


def test_nested_and_from_imports_are_found(capsule, wheelhouse, tmp_path):
    code = ("def later():\n"
            "    if True:\n"
            "        from extra_lib import VALUE\n"
            "        return VALUE\n"
            "class C:\n"
            "    def m(self):\n"
            "        import with_data\n"
            "        return with_data.VALUE\n"
            "print(later(), C().m())")
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert result["status"] == "success", result
    assert result["stdout"] == "extra data\n"
    assert result["dependencies"] == ["extra_lib==1.0", "with_data==1.0"]


def test_stdlib_imports_install_nothing(capsule, wheelhouse, tmp_path):
    result = run(capsule, tmp_path, "import json, os.path, xml.etree.ElementTree\nfrom collections import abc",
                 "--wheels", wheelhouse)
    assert result["status"] == "success", result
    assert result["dependencies"] == []


def test_pep723_block_is_authoritative(capsule, wheelhouse, tmp_path):
    pinned = ("# /// script\n# requires-python = \">=3.10\"\n# dependencies = [\"capsule-demo<2\"]\n# ///\n"
              "import capsule_demo\nprint(capsule_demo.VALUE)")
    result = run(capsule, tmp_path, pinned, "--wheels", wheelhouse)
    assert result["status"] == "success", result
    assert (result["stdout"], result["dependencies"]) == ("one\n", ["capsule_demo==1.0"])
    # Imports outside the block are not installed when a block exists.
    empty = "# /// script\n# dependencies = []\n# ///\nimport capsule_demo"
    result = run(capsule, tmp_path, empty, "--wheels", wheelhouse)
    assert result["status"] == "run-error"
    assert "ModuleNotFoundError" in result["error"]


def test_markers_and_extras_are_evaluated_for_the_sandbox(capsule, wheelhouse, tmp_path):
    code = ("# /// script\n# dependencies = [\"demo_app[fancy]\"]\n# ///\n"
            "import demo_app, extra_lib\nprint(demo_app.VALUE, extra_lib.VALUE)")
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert result["status"] == "success", result
    assert result["stdout"] == "one extra\n"
    # helper-lib is only for sys_platform != "wasi": not wanted, not missing.
    assert result["dependencies"] == ["capsule_demo==1.0", "demo_app==1.0", "extra_lib==1.0"]


def test_prereleases_only_when_asked_for(capsule, wheelhouse, tmp_path):
    code = ("# /// script\n# dependencies = [\"capsule-demo>=3.0a1\"]\n# ///\n"
            "import capsule_demo\nprint(capsule_demo.VALUE)")
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert (result["status"], result["stdout"]) == ("success", "pre\n"), result


def test_a_syntax_error_is_a_run_error_not_an_install_error(capsule, wheelhouse, tmp_path):
    result = run(capsule, tmp_path, "import capsule_demo\ndef broken(:\n", "--wheels", wheelhouse)
    assert result["status"] == "run-error", result
    assert "SyntaxError" in result["error"]
    assert result["dependencies"] == []


def test_optional_imports_that_nobody_has_are_skipped(capsule, wheelhouse, tmp_path):
    code = ("try:\n    import no_such_dist_anywhere\nexcept ImportError:\n    fallback = True\n"
            "print('ran', fallback)")
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert (result["status"], result["stdout"]) == ("success", "ran True\n"), result


def test_imports_the_scan_cannot_see_are_installed_on_import(capsule, wheelhouse, tmp_path):
    code = "import importlib\nprint(importlib.import_module('capsule' + '_demo').VALUE)"
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert (result["status"], result["stdout"]) == ("success", "two\n"), result
    assert result["dependencies"] == ["capsule_demo==2.0"]


def test_the_environment_is_read_only_and_holds_only_what_was_asked(capsule, wheelhouse, tmp_path):
    code = (f"import os, capsule_demo\nprint(sorted(os.listdir({SITE!r})))\n"
            f"open({SITE!r} + '/capsule_demo/__init__.py', 'w')")
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert result["status"] == "run-error"
    assert result["stdout"] == "['capsule_demo', 'capsule_demo-2.0.dist-info']\n"
    assert "Read-only file system" in result["error"] or "OSError" in result["error"]


def test_environments_hold_hash_checked_bytecode(capsule, wheelhouse, tmp_path):
    code = ("import sys, demo_app, capsule_demo\n"
            "for name in ('demo_app', 'capsule_demo'):\n"
            "    data = open(sys.modules[name].__cached__, 'rb').read()\n"
            "    print(name, int.from_bytes(data[4:8], 'little'))")
    for attempt in range(2):  # built now, then from the cache
        result = run(capsule, tmp_path, "# /// script\n# dependencies = ['demo_app']\n# ///\n" + code,
                     "--wheels", wheelhouse)
        assert result["status"] == "success", result
        # flags 3: hash-based and checked against the source (PEP 552)
        assert result["stdout"] == "demo_app 3\ncapsule_demo 3\n"


def test_data_scripts_are_not_installed(capsule, wheelhouse, tmp_path):
    code = f"import os, with_data\nprint(sorted(os.listdir({SITE!r})))"
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert result["stdout"] == "['__pycache__', 'with_data-1.0.dist-info', 'with_data.py']\n", result


# --- what stays denied ---------------------------------------------------------------------

def test_without_a_source_nothing_is_installed(capsule, wheelhouse):
    result = capsule.json("import capsule_demo")
    assert result["status"] == "run-error"
    assert "ModuleNotFoundError" in result["error"]
    assert result["dependencies"] == []


def test_the_sandbox_cannot_see_the_sources(capsule, wheelhouse, tmp_path):
    code = (f"import os\nfor p in ({wheelhouse!r}, {DIST_PACKAGES!r}, {str(tmp_path / 'cache')!r}):\n"
            "    print(os.path.exists(p))")
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse, "--site-packages", DIST_PACKAGES)
    assert result["stdout"] == "False\nFalse\nFalse\n", result


# --- install errors: one line per package, and the code does not run -------------------------

@pytest.mark.parametrize("package, reason", [
    ("no_such_dist_anywhere", "not found in any package source"),
    ("native_only", "only platform-specific wheels"),
    ("corrupt_pkg", "not a valid wheel"),
    ("traversal_pkg", "unsafe wheel"),
    ("symlink_pkg", "symbolic link"),
    ("bomb_pkg", "zip bomb"),
    ("future_only", "requires Python >=3.13"),
])
def test_install_errors(capsule, wheelhouse, tmp_path, package, reason):
    result = run(capsule, tmp_path, f"print('the code ran')\nimport {package}", "--wheels", wheelhouse)
    assert result["status"] == "install-error", result
    assert result["stdout"] == ""
    lines = result["error"].splitlines()
    assert len(lines) == 1 and lines[0].startswith(package + ":") and reason in lines[0], lines


def test_a_conflict_is_an_install_error(capsule, wheelhouse, tmp_path):
    code = "# /// script\n# dependencies = [\"demo_app\", \"needs_new_demo\"]\n# ///\nprint('ran')"
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert result["status"] == "install-error", result
    assert "capsule-demo" in result["error"] and "conflict" in result["error"]
    assert result["stdout"] == ""


def test_each_failed_package_gets_its_own_line(capsule, wheelhouse, tmp_path):
    code = "import capsule_demo, no_such_one, native_only, no_such_two"
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert result["status"] == "install-error"
    lines = sorted(result["error"].splitlines())
    assert [line.split(":")[0] for line in lines] == ["native_only", "no_such_one", "no_such_two"]


def test_malformed_pep723_metadata_is_an_install_error(capsule, wheelhouse, tmp_path):
    code = "# /// script\n# dependencies = [\"a\"\n# ///\nprint('ran')"
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert result["status"] == "install-error"
    assert "PEP 723" in result["error"] and result["stdout"] == ""
    bad = run(capsule, tmp_path, "# /// script\n# dependencies = [\"x @ https://h/x.whl\"]\n# ///\n",
              "--wheels", wheelhouse)
    assert bad["status"] == "install-error" and "direct references" in bad["error"]


def test_python_version_of_pep723_is_checked(capsule, wheelhouse, tmp_path):
    code = "# /// script\n# requires-python = \">=3.12\"\n# ///\nprint('ran')"
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert result["status"] == "install-error" and "3.12" in result["error"], result


def test_bad_source_options_are_usage_errors(capsule, tmp_path):
    missing = capsule.run("--wheels", str(tmp_path / "nowhere"), code="pass")
    assert missing.returncode == 2 and b"not a directory" in missing.stderr
    ftp = capsule.run("--index-url", "ftp://example.com/simple", code="pass")
    assert ftp.returncode == 2 and b"http" in ftp.stderr


# --- an index on loopback --------------------------------------------------------------------

def test_an_index_installs_with_hashes_checked_and_caches(capsule, index, tmp_path):
    code = "import idx_pkg, idx_dep\nprint(idx_pkg.VALUE, idx_dep.VALUE)"
    before = len(index.downloads)
    result = run(capsule, tmp_path, code, "--index-url", index.url)
    assert result["status"] == "success", result
    assert result["stdout"] == "from the index dep\n"
    assert result["dependencies"] == ["idx_dep==0.5", "idx_pkg==1.0"]
    assert len(index.downloads) == before + 2
    # Same cache directory, another process: nothing is downloaded again.
    again = run(capsule, tmp_path, code, "--index-url", index.url)
    assert again["stdout"] == "from the index dep\n"
    assert len(index.downloads) == before + 2


def test_a_wrong_hash_from_the_index_is_an_install_error(capsule, index, tmp_path):
    result = run(capsule, tmp_path, "import bad_hash", "--index-url", index.url)
    assert result["status"] == "install-error"
    assert result["error"].startswith("bad_hash:") and "hash mismatch" in result["error"]


def test_sources_are_tried_in_order(capsule, index, wheelhouse, tmp_path):
    result = run(capsule, tmp_path, "import capsule_demo, idx_pkg\nprint(capsule_demo.VALUE)",
                 "--wheels", wheelhouse, "--index-url", index.url)
    assert result["status"] == "success", result
    assert "capsule_demo==2.0" in result["dependencies"] and "idx_pkg==1.0" in result["dependencies"]


def test_an_unreachable_index_is_an_install_error(capsule, tmp_path):
    result = run(capsule, tmp_path, "import anything_at_all",
                 "--index-url", "http://127.0.0.1:9/simple/")
    assert result["status"] == "install-error"
    assert result["error"].startswith("anything_at_all:") and "index" in result["error"]


# --- Debian's pure-Python packages from the host's dist-packages ------------------------------

def minimal_pdf(text):
    """A one-page PDF showing `text`, with a correct cross-reference table."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


@pytest.fixture
def dist_packages(capsule, tmp_path):
    def run_with(code, *args):
        return run(capsule, tmp_path, code, "--site-packages", DIST_PACKAGES, *args, timeout=300)
    return run_with


def test_debian_pypdf_reads_a_pdf(dist_packages, tmp_path):
    pdf = tmp_path / "hello.pdf"
    pdf.write_bytes(minimal_pdf("Hello from capsule"))
    code = ("import pypdf\nreader = pypdf.PdfReader('hello.pdf')\n"
            "print(len(reader.pages), reader.pages[0].extract_text().strip())")
    result = dist_packages(code, "--file", f"hello.pdf={pdf}")
    assert result["status"] == "success", result
    assert result["stdout"] == "1 Hello from capsule\n"
    assert result["dependencies"] == ["pypdf==3.4.1"]


def test_debian_openpyxl_writes_then_reads_a_workbook(dist_packages):
    code = ("import openpyxl\nbook = openpyxl.Workbook()\nsheet = book.active\n"
            "sheet.append(['city', 'people'])\nsheet.append(['Lyon', 522250])\n"
            "book.save('/output/cities.xlsx')\n"
            "again = openpyxl.load_workbook('/output/cities.xlsx')\n"
            "print([[c.value for c in row] for row in again.active.iter_rows()])")
    result = dist_packages(code)
    assert result["status"] == "success", result
    assert result["stdout"] == "[['city', 'people'], ['Lyon', 522250]]\n"
    # openpyxl writes with lxml (compiled into the guest: docs/extensions.md),
    # so it does not import et_xmlfile, its fallback writer.
    names = [d.split("==")[0] for d in result["dependencies"]]
    assert names == ["openpyxl"], result["dependencies"]
    assert [a["name"] for a in result["artifacts"]] == ["cities.xlsx"]


def test_debian_markdown_renders(dist_packages):
    result = dist_packages("import markdown\nprint(markdown.markdown('# Title\\n\\n*hi*'))")
    assert result["status"] == "success", result
    assert result["stdout"] == "<h1>Title</h1>\n<p><em>hi</em></p>\n"
    assert result["dependencies"] == ["Markdown==3.4.1"]


def test_debian_beautifulsoup_parses(dist_packages):
    code = ("from bs4 import BeautifulSoup\nsoup = BeautifulSoup('<p class=a>x</p><p>y</p>', 'html.parser')\n"
            "print([p.text for p in soup.find_all('p')], soup.select_one('p.a').text)")
    result = dist_packages(code)
    assert result["status"] == "success", result
    assert result["stdout"] == "['x', 'y'] x\n"
    assert "beautifulsoup4==4.11.2" in result["dependencies"]


def test_accelerators_are_left_out_and_said_so(dist_packages):
    result = dist_packages("import yaml\nprint(yaml.safe_dump({'a': 1}), yaml.__with_libyaml__)")
    assert result["status"] == "success", result
    assert result["stdout"] == "a: 1\n False\n"
    assert result["notes"] == ["PyYAML==6.0: installed without its compiled extension modules "
                               "(_yaml); its pure-Python code is used"]


def test_native_only_host_packages_are_refused(capsule, tmp_path):
    # A distribution whose only import name is an extension module: nothing
    # importable remains without it.
    site = tmp_path / "site"
    info = site / "fastonly-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fastonly\nVersion: 1.0\n")
    (site / "fastonly.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    (info / "RECORD").write_text("fastonly.cpython-311-x86_64-linux-gnu.so,,\n"
                                 "fastonly-1.0.dist-info/METADATA,,\n")
    (info / "top_level.txt").write_text("fastonly\n")
    result = capsule.json("import fastonly", "--site-packages", str(site))
    assert result["status"] == "install-error", result
    assert result["error"].startswith("fastonly:") and "native code only" in result["error"]


def test_distributions_built_on_native_code_are_refused(capsule, tmp_path):
    # Python glue over many extension modules (pycryptodome's shape): not an
    # optional accelerator, so not installed half-working.
    site = tmp_path / "site"
    info = site / "gluey-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gluey\nVersion: 1.0\n")
    (site / "gluey").mkdir()
    (site / "gluey" / "__init__.py").write_text("from . import _a\n")
    record = ["gluey/__init__.py,,", "gluey-1.0.dist-info/METADATA,,"]
    for name in "abcde":
        (site / "gluey" / f"_{name}.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
        record.append(f"gluey/_{name}.cpython-311-x86_64-linux-gnu.so,,")
    (info / "RECORD").write_text("\n".join(record) + "\n")
    result = capsule.json("import gluey", "--site-packages", str(site))
    assert result["status"] == "install-error", result
    assert result["error"].startswith("gluey:") and "built on native code" in result["error"]


# --- the guest's side of the channel is untrusted ------------------------------------------

def test_garbage_on_the_dependency_channel_is_refused(capsule, wheelhouse, tmp_path):
    code = ("import os, json\n"
            "def ask(data):\n"
            "    os.write(5, data)\n"
            "    out = b''\n"
            "    while chunk := os.read(5, 65536):\n"
            "        out += chunk\n"
            "    return json.loads(out)\n"
            "print(ask(b'not json')['ok'])\n"
            "print(ask(json.dumps({'imports': ['../../etc/passwd', 'x' * 5000, 7]}).encode()))\n"
            "import errno\n"
            "try:\n"
            "    os.write(5, b' ' * (2 << 20))\n"
            "except OSError as e:\n"
            "    print('refused', e.errno == errno.EFBIG)\n"
            "answer = ask(json.dumps({'requirements': ['capsule-demo==1.0']}).encode())\n"
            "print(answer['ok'], answer['path'])\n"
            "print(open(answer['path'] + '/capsule_demo/__init__.py').read().strip())")
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse)
    assert result["status"] == "success", result
    lines = result["stdout"].splitlines()
    assert lines[0] == "False"
    assert "not a valid distribution name" in lines[1] or "not found" in lines[1]
    assert lines[2:] == ["refused True", f"True {SITE}", "VALUE = 'one'"]


def test_the_channel_without_sources_installs_nothing(capsule):
    code = ("import os\nos.write(5, b'{\"requirements\": [\"anything\"]}')\n"
            "print(os.read(5, 1000))")
    result = capsule.json(code)
    assert result["status"] == "success", result
    assert b"no package sources" in eval(result["stdout"])
    assert result["dependencies"] == []


# --- the MCP server ----------------------------------------------------------------------

def test_mcp_reports_dependencies_progress_and_keeps_them_in_a_session(capsule, wheelhouse, tmp_path):
    from test_mcp import Stdio
    server = Stdio(capsule.binary, "--wheels", wheelhouse, "--package-cache", str(tmp_path / "cache"))
    try:
        tools = server.request("tools/list", id=9)["result"]["tools"]
        assert "PEP 723" in tools[0]["description"]
        server.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                     "params": {"name": "run_python_code", "_meta": {"progressToken": "p1"},
                                "arguments": {"python_code": "import capsule_demo\ncapsule_demo.VALUE"}}})
        notifications = []
        while True:
            message = json.loads(server.lines.get(timeout=120))
            if "method" not in message:
                break
            notifications.append(message)
        result = message["result"]
        assert result["structuredContent"]["dependencies"] == ["capsule_demo==2.0"]
        assert '<dependencies>["capsule_demo==2.0"]</dependencies>' in result["content"][0]["text"]
        progress = [n["params"].get("message", "") for n in notifications
                    if n["method"] == "notifications/progress"]
        assert any(m.startswith("resolving capsule_demo") for m in progress), progress

        failed = server.request("tools/call", {"name": "run_python_code",
                                               "arguments": {"python_code": "import native_only"}}, 2)
        assert failed["result"]["structuredContent"]["status"] == "install-error"
        assert "<status>install-error</status>" in failed["result"]["content"][0]["text"]

        # A session adds packages run after run; what it imported stays.
        session = {"session_id": "s1"}
        first = server.request("tools/call", {"name": "run_python_code", "arguments": {
            "python_code": "import capsule_demo", **session}}, 3)
        assert first["result"]["structuredContent"]["status"] == "success", first
        second = server.request("tools/call", {"name": "run_python_code", "arguments": {
            "python_code": "import extra_lib\n(capsule_demo.VALUE, extra_lib.VALUE)", **session}}, 4)
        structured = second["result"]["structuredContent"]
        assert structured["status"] == "success", second
        assert structured["dependencies"] == ["capsule_demo==2.0", "extra_lib==1.0"]
        assert json.loads(structured["return_value"]) == ["two", "extra"]
    finally:
        server.close()


# --- the CLI --------------------------------------------------------------------------------

def test_progress_goes_to_a_terminal_and_is_erased(capsule, wheelhouse, tmp_path):
    import select
    import subprocess
    master, slave = os.openpty()
    try:
        completed = subprocess.run(
            [str(capsule.binary), "run", "--package-cache", str(tmp_path / "cache"),
             "--wheels", wheelhouse, "-c", "import capsule_demo; print(capsule_demo.VALUE)"],
            stdout=subprocess.PIPE, stderr=slave, timeout=120,
            env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1"})
        os.close(slave)
        slave = None
        seen = b""
        while select.select([master], [], [], 1)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert completed.returncode == 0 and completed.stdout == b"two\n"
    assert b"capsule: resolving capsule_demo" in seen, seen
    assert seen.endswith(b"\r\x1b[K"), seen
    # Not a terminal: no progress at all.
    plain = capsule.run("--package-cache", str(tmp_path / "cache2"), "--wheels", wheelhouse,
                        code="import capsule_demo")
    assert plain.returncode == 0 and plain.stderr == b""


def test_sources_from_a_config_file(capsule, wheelhouse, tmp_path):
    config = tmp_path / "capsule.json"
    config.write_text(json.dumps({"wheels": [wheelhouse], "site_packages": [DIST_PACKAGES],
                                  "package_cache": str(tmp_path / "cache")}))
    result = capsule.json("import capsule_demo, markdown\nprint(capsule_demo.VALUE)",
                          "--config", str(config))
    assert result["status"] == "success", result
    assert result["dependencies"] == ["capsule_demo==2.0", "Markdown==3.4.1"]
    assert (tmp_path / "cache" / "environments").is_dir()
    config.write_text(json.dumps({"wheels": wheelhouse}))
    bad = capsule.run("--config", str(config), code="pass")
    assert bad.returncode != 0 and b"malformed" in bad.stderr


def test_the_programs_own_modules_are_not_packages(capsule, wheelhouse, tmp_path):
    helper = tmp_path / "helper.py"
    helper.write_text("VALUE = 'mine'\n")
    code = "import sys\nsys.path.insert(0, '.')\nimport helper\nprint(helper.VALUE)"
    result = run(capsule, tmp_path, code, "--wheels", wheelhouse, "--file", f"helper.py={helper}")
    assert (result["status"], result["stdout"]) == ("success", "mine\n"), result
    assert result["dependencies"] == []


@pytest.mark.parametrize("package", ["broken_html", "broken_json", "not_a_list", "binary_junk"])
def test_malformed_index_pages_are_install_errors(capsule, index, tmp_path, package):
    result = run(capsule, tmp_path, f"import {package}", "--index-url", index.url)
    assert result["status"] == "install-error", result
    assert result["error"].startswith(package + ":")
