"""Fixtures for the CLI integration tests.

Guest code in these tests is hostile on purpose (reading host files, spawning
shells...).  It must only ever run inside capsule, never under the host's
Python: the session refuses to start unless the sandbox reports that it is
the WASI guest.
"""
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"


def _binaries():
    found = [BUILD / "capsule"]
    if (BUILD / "capsule-asan").exists():
        found.append(BUILD / "capsule-asan")
    return found


class Capsule:
    def __init__(self, binary):
        self.binary = binary

    def run(self, *args, code=None, stdin=None, env=None, timeout=120):
        command = [str(self.binary), "run", *args]
        if code is not None:
            command += ["-c", code]
        environment = dict(os.environ)
        # ASan must not claim SIGSEGV-based traps as crashes; leaks are real.
        environment.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        if env:
            environment.update(env)
        return subprocess.run(command, input=stdin, capture_output=True, env=environment,
                              timeout=timeout, cwd=ROOT)

    def json(self, code, *args, **kwargs):
        completed = self.run("--json", *args, code=code, **kwargs)
        assert completed.stdout, completed.stderr
        result = json.loads(completed.stdout)
        result["_returncode"] = completed.returncode
        result["_host_stderr"] = completed.stderr.decode(errors="replace")
        return result


@pytest.fixture(autouse=True)
def own_session_store(tmp_path, monkeypatch):
    """Each test's servers open their default session store in its own
    directory: durable sessions outlive a server, so a session name reused
    by another test would otherwise continue that test's interpreter."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(params=_binaries(), ids=lambda p: p.name)
def binary(request):
    """Each capsule binary (release, and ASan when built), for tests that
    start it themselves (the MCP server)."""
    return request.param


@pytest.fixture(scope="session", params=_binaries(), ids=lambda p: p.name)
def capsule(request):
    instance = Capsule(request.param)
    probe = instance.json("import sys; sys.platform")
    if probe.get("return_value") != "'wasi'":
        pytest.exit("refusing to run hostile tests: the guest is not the WASI sandbox", 2)
    return instance
