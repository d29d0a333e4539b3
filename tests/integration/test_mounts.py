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
