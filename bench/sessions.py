#!/usr/bin/env python3
"""Durable sessions (docs/sessions.md): what a call of a durable session
costs, what it stores, how long a restore takes, against native Python.

Prints, in one run on this machine:
- the latency of a session call with the store (snapshot committed before
  the result) and without it (--no-store), p50 over N calls, for a small
  session (x = 1) and one holding a 20 MB heap (a list of 1M ints, json, re
  and datetime imported);
- the bytes the store gained for each session's first snapshot and per
  later call (compressed, content-addressed: unchanged pages cost nothing);
- the first call after a server restart (the restore) against a call to a
  live session: restored from the node's page file, and from the store
  alone (as on another node: the page files removed first);
- `capsule run -c pass` against `python3.11 -c pass`;
- with a PostgreSQL server (CAPSULE_TEST_POSTGRES: `make bench-sessions`
  runs under tests/store/with-postgres.sh), how long a dead node's session
  takes to resume on another node: the owner is `kill -9`ed, and the time
  runs until the call on another node returns, printed next to the lease
  (docs/scale-out.md: the target is lease + 1 s); and how long a live
  node's session takes to move to another node (asked to park).

Run: make bench-sessions   (or python3 bench/sessions.py --capsule build/capsule)
"""
import argparse
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time


class Server:
    def __init__(self, capsule, *args):
        self.process = subprocess.Popen([capsule, "serve", "--stdio", *args],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        self.next_id = 0

    def call(self, code, session):
        self.next_id += 1
        arguments = {"python_code": code}
        if session:
            arguments["session_id"] = session
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                   "params": {"name": "run_python_code", "arguments": arguments}}
        started = time.perf_counter()
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()
        while True:
            reply = json.loads(self.process.stdout.readline())
            if reply.get("id") == self.next_id:
                elapsed = time.perf_counter() - started
                content = reply["result"]["structuredContent"]
                assert content["capsule_status"] == "success", content
                return elapsed, content

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


class HttpServer:
    """capsule serve --http on a free loopback port, with a token: its
    /metrics give the server's own time for each restore."""

    def __init__(self, capsule, *args):
        environment = dict(os.environ, CAPSULE_TOKEN="bench-token")
        self.process = subprocess.Popen([capsule, "serve", "--http", "127.0.0.1:0", *args],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        env=environment)
        log = b""
        while b"listening on" not in log:
            line = self.process.stderr.readline()
            assert line, log
            log += line
        self.port = int(log.split(b"127.0.0.1:")[1].split(b"/")[0])
        self.next_id = 0

    def request(self, method, path, body=None):
        """MCP 2026-07-28 (stateless): the session belongs to the token,
        whichever server process answers."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Authorization": "Bearer bench-token", "Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream",
                   "MCP-Protocol-Version": "2026-07-28"}
        if body:
            headers["Mcp-Method"] = body["method"]
            headers["Mcp-Name"] = body["params"]["name"]
            body["params"]["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}}
        connection.request(method, path, json.dumps(body).encode() if body else None, headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        assert response.status == 200, payload
        return payload

    def call(self, code, session):
        self.next_id += 1
        payload = self.request("POST", "/mcp", {
            "jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
            "params": {"name": "run_python_code",
                       "arguments": {"python_code": code, "session_id": session}}})
        assert b'"capsule_status":"success"' in payload, payload

    def restore_seconds(self, source):
        """The restores this server made from `source` and their seconds."""
        text = self.request("GET", "/metrics").decode()
        count = seconds = 0.0
        for line in text.splitlines():
            if line.startswith(f'capsule_session_restores_total{{source="{source}"}}'):
                count = float(line.split()[-1])
            if line.startswith(f'capsule_session_restore_seconds_total{{source="{source}"}}'):
                seconds = float(line.split()[-1])
        return count, seconds

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=60)


def restore_times(capsule, directory, setup, rounds):
    """The server's own time for a restore of a session set up by `setup`
    (the /metrics counters, docs/sessions.md), from the node's page file
    and from the store alone: p50 of `rounds` each, in seconds."""
    database = os.path.join(directory, "restore.db")
    store = ["--store", f"sqlite:{database}", "--job-runners", "0"]
    server = HttpServer(capsule, *store)
    server.call(setup, "r")
    server.close()
    times = {"page_file": [], "store": []}
    for source, samples in times.items():
        for _ in range(rounds):
            if source == "store":
                forget_page_files(database)
            server = HttpServer(capsule, *store)
            server.call("0", "r")
            count, seconds = server.restore_seconds(source)
            server.close()
            assert count == 1, (source, count)
            samples.append(seconds)
    for name in os.listdir(directory):
        if name.startswith("restore.db"):
            path = os.path.join(directory, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    return {source: p50(samples) for source, samples in times.items()}


def stored_bytes(database):
    connection = sqlite3.connect(database)
    try:
        return connection.execute("SELECT blob_bytes FROM usage").fetchone()[0]
    finally:
        connection.close()


def forget_page_files(database):
    """Removes the node's page files of the store `database`: the next
    restore reads the store."""
    directory = database + "-pages"
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if name != "lock":
            os.unlink(os.path.join(directory, name))


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


def p50(samples):
    return statistics.median(samples)


SESSIONS = {
    "small (x = 1)": ("x = 1", "x += 1"),
    "20 MB heap": ("import json, re, datetime\nbig = list(range(1_000_000))", "big[0] += 1"),
}


def resume_after_a_dead_node(capsule, url, lease, rounds):
    """Seconds from `kill -9` of a session's owner to the return of its next
    call on another node, and from a call on a live node to its return
    there (the owner asked to park), `rounds` times each."""
    dead, moved = [], []
    args = ["--store", url, "--store-lease", str(lease)]
    other = Server(capsule, *args)
    other.call("0", None)  # up and warm
    for i in range(rounds):
        session = f"bench-{os.getpid()}-{i}"
        owner = Server(capsule, *args)
        owner.call("x = 1", session)
        moved.append(other.call("x += 1", session)[0])  # owner alive: asked to park
        owner.call("x += 1", session)  # back to the owner
        time.sleep(lease / 3)  # mid-lease: the owner renewed a moment ago at most
        owner.process.kill()
        started = time.perf_counter()
        owner.process.wait(timeout=30)
        elapsed, content = other.call("x", session)
        dead.append(time.perf_counter() - started)
        assert content["return_value"] == "3", content
    other.close()
    return dead, moved


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--capsule", default="build/capsule")
    parser.add_argument("--calls", type=int, default=20)
    options = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="capsule-bench-sessions-")
    database = os.path.join(directory, "sessions.db")
    try:
        print(f"durable sessions, {options.calls} calls each, p50 (this machine, one run)")
        print(f"{'session':<16} {'call, no store':>15} {'call, store':>12} {'1st snapshot':>13} "
              f"{'per call':>10} {'live call':>10} {'restore call':>13} {'from store':>13}")
        restore_added = []
        for name, (setup, step) in SESSIONS.items():
            plain = Server(options.capsule, "--no-store")
            plain.call(setup, "s")
            without = p50([plain.call(step, "s")[0] for _ in range(options.calls)])
            plain.close()

            durable = Server(options.capsule, "--store", f"sqlite:{database}")
            session = name.split()[0]
            before = stored_bytes(database) if os.path.exists(database) else 0
            durable.call(setup, session)
            first = stored_bytes(database) - before
            durable.call(step, session)  # settles pages touched once
            before_calls = stored_bytes(database)
            with_store = p50([durable.call(step, session)[0] for _ in range(options.calls)])
            per_call = (stored_bytes(database) - before_calls) / options.calls
            live = p50([durable.call("0", session)[0] for _ in range(5)])
            durable.close()

            # A new server each time: the session is parked.  First with the
            # node's page file (docs/sessions.md), then without it: a restore
            # from the store alone, as on another node.
            # What the restore adds: the first call less the next one (both
            # run "0" and commit), so the restore and the first touches of
            # the restored memory.
            restores = {"page file": [], "store": []}
            added = {"page file": [], "store": []}
            for source, samples in restores.items():
                for _ in range(3):
                    if source == "store":
                        forget_page_files(database)
                    again = Server(options.capsule, "--store", f"sqlite:{database}")
                    again.call("0", None)  # the server is up and its sandboxes warm
                    samples.append(again.call("0", session)[0])
                    added[source].append(samples[-1] - again.call("0", session)[0])
                    again.close()
            print(f"{name:<16} {ms(without):>15} {ms(with_store):>12} "
                  f"{first / 1024:>10.0f} KiB {per_call / 1024:>6.0f} KiB {ms(live):>10} "
                  f"{ms(p50(restores['page file'])):>13} {ms(p50(restores['store'])):>13}")
            restore_added.append((name, added))

        print()
        print("the restore alone (the server's /metrics), p50 of 5; and what it adds to its "
              "call (restore call less the call after it), p50 of 3:")
        for name, added in restore_added:
            alone = restore_times(options.capsule, directory, SESSIONS[name][0], 5)
            print(f"  {name:<16} from the page file {ms(alone['page_file'])} "
                  f"(adds {ms(p50(added['page file']))}), from the store "
                  f"{ms(alone['store'])} (adds {ms(p50(added['store']))})")

        # Debian's interpreter, not a shim that may stand first on PATH (pyenv).
        native = next(p for p in ("/usr/bin/python3.11", shutil.which("python3.11"),
                                  shutil.which("python3")) if p and os.path.exists(p))
        runs = {"capsule run -c pass": [options.capsule, "run", "-c", "pass"],
                f"{os.path.basename(native)} -c pass": [native, "-c", "pass"]}
        print()
        for label, command in runs.items():
            samples = []
            for _ in range(10):
                started = time.perf_counter()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                samples.append(time.perf_counter() - started)
            print(f"{label:<28} p50 {ms(p50(samples))}")

        url = os.environ.get("CAPSULE_TEST_POSTGRES")
        print()
        if not url:
            print("moving sessions between nodes: not run (no CAPSULE_TEST_POSTGRES; "
                  "make bench-sessions starts a server)")
        else:
            lease = 2.0
            dead, moved = resume_after_a_dead_node(options.capsule, url, lease, 5)
            print(f"PostgreSQL, 2 nodes, lease {lease:g} s, 5 rounds:")
            print(f"  dead owner (kill -9) -> call returns on another node: "
                  f"p50 {p50(dead):.2f} s, max {max(dead):.2f} s (target: lease + 1 s = "
                  f"{lease + 1:g} s)")
            print(f"  live owner asked to park -> call returns on another node: "
                  f"p50 {ms(p50(moved))}, max {ms(max(moved))}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
