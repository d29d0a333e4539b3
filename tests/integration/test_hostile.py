"""Hostile programs: each must end with a clear status, the host must
survive, and the next run must work.  The attacks run only inside capsule
(see conftest.py's guard)."""
import subprocess
import time

import pytest


def assert_next_run_works(capsule):
    assert capsule.json("6 * 7")["return_value"] == "42"


# 48M, not more: the sanitizer build grows linear memory by realloc, which
# ASan does by copying, so filling it is quadratic; at 128M it took 36 s on
# a machine where a page fault costs 12 µs and ran into the 30 s wall clock.
@pytest.mark.parametrize("code, args, status, message", [
    ("while True: pass", ["--timeout", "1"], "timeout", "wall-clock limit"),
    ("while True: pass", ["--cpu-time", "0.5"], "cpu-limit", "CPU time limit"),
    ("x = []\nwhile True: x.append(' ' * 10**6)", ["--memory", "48M"], "memory-limit", "MemoryError"),
    ("import os; os.urandom(10**9)", [], "memory-limit", "MemoryError"),
    ("while True: print('y' * 4096)", ["--max-output", "1M"], "output-limit", "output limit"),
    ("f = open('/tmp/fill', 'wb')\nwhile True: f.write(b'z' * 65536)", ["--disk", "4M"],
     "disk-limit", "No space left"),
])
def test_limits_end_the_run_with_a_distinct_status(capsule, code, args, status, message):
    result = capsule.json(code, *args)
    assert result["status"] == status, result
    assert message in (result["error"] or ""), result["error"]
    assert_next_run_works(capsule)


def test_timeout_kills_promptly(capsule):
    started = time.monotonic()
    result = capsule.json("import time\nwhile True: time.sleep(0.01)", "--timeout", "1")
    elapsed = time.monotonic() - started
    assert result["status"] == "timeout"
    # Generous bound: this checks that the kill happens, not how fast
    # (bench/ measures overshoot); start-up is included.
    assert elapsed < 5, elapsed


def test_sleeping_past_the_deadline_is_a_timeout(capsule):
    result = capsule.json("import time; time.sleep(3600)", "--timeout", "1")
    assert result["status"] == "timeout"


@pytest.mark.parametrize("code", [
    "import os\nwhile True: os.fork()",
    "import os\nfor _ in range(100): os.posix_spawn('/bin/sh', ['sh'], {})",
    "import subprocess\nwhile True: subprocess.Popen(['sh', '-c', ':(){ :|:& };:'])",
    "import multiprocessing\nmultiprocessing.Process(target=print).start()",
    "import threading\nwhile True: threading.Thread(target=lambda: None).start()",
])
def test_fork_bombs_fizzle(capsule, code):
    result = capsule.json(code, "--timeout", "10")
    assert result["status"] == "run-error", result
    assert_next_run_works(capsule)


def test_huge_source_code(capsule):
    # The sanitizer build grows guest memory by realloc (ASan copies each
    # time), so it gets the small program only.
    checked = "asan" in capsule.binary.name
    code = b"x = 1\n" * ((20 if checked else 170) << 10)  # 120 KiB or 1 MiB: runs
    completed = capsule.run("--json", "-", stdin=code, timeout=300)
    assert b'"status":"success"' in completed.stdout
    if not checked:
        code = b"x = 1\n" * (2 << 20)  # 12 MiB: compiling it needs more than 512 MiB
        completed = capsule.run("--json", "-", stdin=code, timeout=300)
        assert b'"status":"memory-limit"' in completed.stdout
    too_big = b"#" * ((64 << 20) + 1)
    completed = capsule.run("--json", "-", stdin=too_big, timeout=300)
    assert b'"status":"run-error"' in completed.stdout and b"too large" in completed.stdout


@pytest.mark.parametrize("code", [
    "import signal; signal.raise_signal(signal.SIGKILL)",
    "import signal; signal.raise_signal(signal.SIGSEGV)",
    "import signal; signal.raise_signal(signal.SIGTERM)",
    "import signal; signal.signal(signal.SIGALRM, print); signal.alarm(1)",
    "import os; os.abort()",
    "import os; os._exit(7)",
    "import faulthandler; faulthandler._sigsegv()",
    "import ctypes",
])
def test_signals_and_aborts_do_not_reach_the_host(capsule, code):
    result = capsule.json(code)
    assert result["status"] in ("run-error", "trap", "crash"), result
    assert result["error"]
    assert_next_run_works(capsule)


def test_closing_the_control_channel_is_reported(capsule):
    result = capsule.json("import os; os.close(4)")
    assert result["status"] in ("run-error", "crash"), result
    assert_next_run_works(capsule)


def test_forging_a_result_does_not_crash_the_host(capsule):
    result = capsule.json("import os; os.write(4, b'{\"status\": 5, \"error\": [1]}' * 1000)")
    assert result["status"] in ("run-error", "success"), result
    assert_next_run_works(capsule)


def test_check_command_passes(capsule):
    completed = subprocess.run([str(capsule.binary), "check"], capture_output=True, timeout=300)
    out = completed.stdout.decode()
    assert completed.returncode == 0, out
    for wall in ("host files", "network", "host environment", "processes", "one grant each",
                 "read-only mount"):
        assert f"{wall}" in out
    # Wall 5 grants exactly one host function: it works, another is refused.
    assert "granted function lookup_order(order_id=7)  ok" in out
    assert "function not granted: delete_order" in out
    assert out.count("holds") == 6
    assert "FAILED" not in out
    assert "0 failed" in out


def _worker_status(parent_pid):
    """The /proc status of each worker (a seccomp-filtered child) of
    `parent_pid`, as dicts."""
    import pathlib
    found = []
    for task in pathlib.Path(f"/proc/{parent_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                lines = pathlib.Path(f"/proc/{child}/status").read_text().splitlines()
            except FileNotFoundError:
                continue
            status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
            if status.get("Seccomp", "").strip() == "2":
                found.append(status)
    return found


def test_workers_hold_no_capabilities(capsule):
    # Run as root, a worker keeps uid 0 but drops every capability before
    # it opens its pagemap (hot_pages.h), so that descriptor shows it no
    # physical page numbers, and an escape from wasm would find no
    # privilege left besides the seccomp filter.
    process = subprocess.Popen([str(capsule.binary), "run", "--start-cache", "none", "-c",
                                "import time; time.sleep(3)"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        workers = []
        while not workers and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = _worker_status(process.pid)
        assert workers, "no worker found"
        for status in workers:
            assert int(status["CapEff"], 16) == 0, status["CapEff"]
            assert int(status["CapPrm"], 16) == 0, status["CapPrm"]
    finally:
        process.wait(timeout=60)
