"""The Python binding end to end: results, files, sessions, artifacts, errors,
asyncio and code_sandbox(), against the real library."""
import asyncio
import json
import pathlib
import subprocess
import time

import pytest

import capsule

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_result_has_the_fields_of_the_cli_json(sandbox):
    code = "import math\nprint('tau')\nmath.tau"
    result = sandbox.run(code)
    cli = ROOT / "build" / "capsule"
    if not cli.exists():
        pytest.skip("build/capsule is not built")
    printed = subprocess.run([str(cli), "run", "--json", "-c", code], capture_output=True,
                             check=True, timeout=60)
    assert result.to_dict() == json.loads(printed.stdout)
    assert result.ok and result.return_value == "6.283185307179586"
    assert result.stdout == "tau\n"


def test_uncaught_exception_is_a_result_not_an_exception(sandbox):
    result = sandbox.run("1 / 0")
    assert result.status == "run-error"
    assert result.exit_code == 1
    assert "ZeroDivisionError" in result.error
    assert 'File "main.py", line 1' in result.error


def test_files_are_given_by_value(sandbox):
    result = sandbox.run("print(open('data.csv').read(), open('/tmp/b.bin', 'rb').read())",
                         files={"data.csv": "x,y\n1,2", "/tmp/b.bin": b"\x00\xff"})
    assert result.stdout == "x,y\n1,2 b'\\x00\\xff'\n", result.error


def test_each_run_is_fresh_unless_a_session_is_named(sandbox):
    sandbox.run("x = 41")
    assert sandbox.run("x").status == "run-error"
    with sandbox.session() as session:
        assert session.run("x = 41\nimport json").ok
        assert session.run("x + 1").return_value == "42"
        name = session.name
    # Closed with the block: the id names nothing any more.
    with pytest.raises(capsule.InvalidArgumentError):
        sandbox.close_session(name)


def test_a_start_cache_is_written_once_and_then_used(tmp_path):
    """The str hash secret is drawn at initialisation: two sandboxes
    started from one start image share it, which is how its use shows."""
    probe = "hash('capsule start image probe')"
    hashes = []
    for _ in range(2):
        with capsule.Sandbox(pool_size=0, start_cache=str(tmp_path)) as sandbox:
            hashes.append(sandbox.run(probe).return_value)
    assert len([p for p in tmp_path.iterdir() if p.name.endswith(".img")]) == 1
    assert hashes[0] == hashes[1]
    with capsule.Sandbox(pool_size=0) as sandbox:  # none: its own secret
        assert sandbox.run(probe).return_value != hashes[0]
    with pytest.raises(capsule.InvalidArgumentError):
        capsule.Sandbox(start_cache="relative/path")


def test_artifacts_come_back_as_bytes(sandbox):
    payload = bytes(range(256)) * 4
    result = sandbox.run(f"open('/output/blob.bin', 'wb').write({payload!r})\n"
                         "open('/output/table.csv', 'w').write('a,b\\n')")
    assert result.ok, result.error
    artifacts = {a.name: a for a in result.artifacts}
    assert artifacts["blob.bin"].data == payload
    assert artifacts["blob.bin"].size == 1024
    assert artifacts["table.csv"].media_type == "text/csv"
    assert result.to_dict()["artifacts"][0].keys() == {"name", "media_type", "size"}


def test_limits_stop_the_run(sandbox):
    started = time.monotonic()
    result = sandbox.run("while True: pass", timeout=1)
    assert result.status == "timeout"
    assert time.monotonic() - started < 10
    assert sandbox.run("[0] * (64 << 20)", memory=32 << 20).status == "memory-limit"


def test_globals_and_streamed_output(sandbox):
    seen = []
    result = sandbox.run("import sys\nprint(name)\nprint('oops', file=sys.stderr)\ncount * 2",
                         globals={"name": "ada", "count": 21},
                         on_output=lambda stream, data: seen.append((stream, data)))
    assert result.return_value == "42"
    assert b"".join(data for stream, data in seen if stream == "stdout") == b"ada\n"
    assert b"".join(data for stream, data in seen if stream == "stderr") == b"oops\n"
    assert result.stdout == "ada\n" and result.stderr == "oops\n"


def test_a_failing_callback_is_raised_after_the_run(sandbox):
    def broken(stream, data):
        raise KeyError("from the callback")

    with pytest.raises(KeyError):
        sandbox.run("print(1)", on_output=broken)
    assert sandbox.run("2").return_value == "2"


def test_api_errors_are_exceptions():
    with pytest.raises(capsule.HostIOError) as caught:
        capsule.Sandbox(stdlib="/nonexistent/stdlib.img")
    assert "/nonexistent/stdlib.img" in str(caught.value)
    assert caught.value.code == 3
    with pytest.raises(capsule.InvalidArgumentError):
        capsule.Sandbox(pool_size=-1)
    with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError
        capsule.Sandbox(pool_size=10_000)
    closed = capsule.Sandbox(pool_size=0)
    closed.close()
    with pytest.raises(capsule.InvalidArgumentError):
        closed.run("1")


def test_asyncio_loop_keeps_running_during_a_run(sandbox):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        result = await sandbox.run_async("import time\nend = time.monotonic() + 1\n"
                                         "while time.monotonic() < end: pass\n'done'")
        elapsed = time.monotonic() - started
        task.cancel()
        return result, ticks, elapsed

    result, ticks, elapsed = asyncio.run(main())
    assert result.return_value == "'done'"
    assert elapsed >= 0.9
    # A blocked loop would tick once or twice; a free one ~every 10 ms.
    assert ticks > 30


def test_cancelling_the_task_kills_the_run(sandbox):
    async def main():
        task = asyncio.create_task(sandbox.run_async("while True: pass", timeout=20))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert asyncio.run(main()) < 5
    assert sandbox.run("1 + 1").return_value == "2"


def test_code_sandbox_has_mcp_run_python_shape():
    logs = []

    async def main():
        async with capsule.code_sandbox(log_handler=lambda level, message: logs.append((level, message)),
                                        pool_size=1) as box:
            first = await box.eval("print('hi')\nprint('there')\n{'a': [1, 2]}")
            failed = await box.eval("raise ValueError('bad')")
            with_globals = await box.eval("x * 2", globals={"x": 21})
            return first, failed, with_globals

    first, failed, with_globals = asyncio.run(main())
    assert first == {"status": "success", "output": ["hi", "there"], "return_value": {"a": [1, 2]}}
    assert failed["status"] == "run-error" and "ValueError: bad" in failed["error"]
    assert failed["output"] == [] and "return_value" not in failed
    assert with_globals["return_value"] == 42
    # Whole lines, as mcp-run-python logs print() calls.
    assert logs[:2] == [("info", "hi"), ("info", "there")]


def test_code_sandbox_installs_only_the_dependencies_named():
    async def main():
        async with capsule.code_sandbox(dependencies=["markdown"], pool_size=0,
                                        site_packages=["/usr/lib/python3/dist-packages"]) as box:
            named = await box.eval("import markdown\nmarkdown.markdown('*hi*')")
            other = await box.eval("import bs4")
            return named, other

    named, other = asyncio.run(main())
    assert named["status"] == "success", named
    assert named["return_value"] == "<p><em>hi</em></p>"
    # bs4 is on the host too, but not in the list: the PEP 723 block decides.
    assert other["status"] == "run-error" and "bs4" in other["error"]


def test_the_package_is_typed():
    package = pathlib.Path(capsule.__file__).parent
    assert (package / "py.typed").exists()
    checked = subprocess.run(["/usr/bin/python3", "-m", "mypy", "--strict", "--no-incremental", str(package)],
                             capture_output=True, text=True, timeout=300)
    if "No module named mypy" in checked.stderr:
        pytest.skip("mypy is not installed (Debian: python3-mypy)")
    assert checked.returncode == 0, checked.stdout


def test_a_store_makes_sessions_outlive_the_sandbox(tmp_path):
    store = f"sqlite:{tmp_path / 'sessions.db'}"
    with capsule.Sandbox(pool_size=0, store=store) as first:
        assert first.run("x = 41", session="kept").ok
        assert first.run("n = 1\nprint('ran')", session="kept", idempotency_key="k").stdout == "ran\n"
    with capsule.Sandbox(pool_size=0, store=store, store_quota=1 << 30) as second:
        assert second.run("x + n", session="kept").return_value == "42"
        again = second.run("n = 1\nprint('ran')", session="kept", idempotency_key="k")
        assert again.stdout == "ran\n" and any("replayed" in note for note in again.notes)


def test_a_session_ttl_expires_parked_sessions(tmp_path):
    store = f"sqlite:{tmp_path / 'sessions.db'}"
    with capsule.Sandbox(pool_size=0, store=store, session_ttl=1) as first:
        assert first.run("x = 41", session="brief").ok
    time.sleep(1.2)
    with capsule.Sandbox(pool_size=0, store=store, session_ttl=1) as second:
        gone = second.run("x", session="brief")
        assert gone.status == "session-error" and "expired" in gone.error
    with pytest.raises(capsule.InvalidArgumentError, match="session TTL"):
        capsule.Sandbox(pool_size=0, store=store, session_ttl=-1)


def test_ctypes_structures_match_the_header(tmp_path):
    # The binding mirrors cap_limits and cap_run_options by hand: a field
    # added to the header and not here shifts every field after it.
    import ctypes
    from capsule import _native
    source = tmp_path / "sizes.c"
    source.write_text('#include "capsule.h"\n#include <stddef.h>\n#include <stdio.h>\n'
                      'int main(void) { printf("%zu %zu %zu\\n", sizeof(cap_limits), '
                      'sizeof(cap_run_options), offsetof(cap_run_options, files)); return 0; }\n')
    subprocess.run(["gcc", "-I", str(ROOT / "include"), str(source), "-o", str(tmp_path / "sizes")],
                   check=True)
    sizes = subprocess.run([str(tmp_path / "sizes")], capture_output=True, text=True,
                           check=True).stdout.split()
    assert [int(n) for n in sizes] == [ctypes.sizeof(_native.Limits),
                                       ctypes.sizeof(_native.RunOptions),
                                       _native.RunOptions.files.offset]
