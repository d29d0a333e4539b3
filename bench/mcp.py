#!/usr/bin/env python3
"""Throughput and latency of run_python_code over Streamable HTTP on loopback,
and over stdio, in both protocol eras.

Starts `capsule serve --http 127.0.0.1:0`, then calls run_python_code with
`print(1)` from 1 and from 8 concurrent clients (each on its own keep-alive
connection, JSON responses) and prints requests/second, p50 and p99: as a
legacy client (initialize, Mcp-Session-Id) and as a 2026-07-28 one (per-request
_meta and Mcp-Method/Mcp-Name headers, no session).  Then the same call, one at
a time, over `capsule serve --stdio` in both eras.  For scale it also times
native `python3.11 -c 'print(1)'` process starts, the cost an agent pays when
it runs code in a fresh native interpreter.

    python3 bench/mcp.py [--capsule build/capsule] [--requests 400] [--workers 2]
"""
import argparse
import http.client
import json
import re
import statistics
import subprocess
import threading
import time

# Debian's interpreter: a pyenv shim first on PATH would add its own start-up.
NATIVE_PYTHON = "/usr/bin/python3.11"


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


STATELESS_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}


def call_message(request_id, stateless):
    params = {"name": "run_python_code", "arguments": {"python_code": "print(1)"}}
    if stateless:
        params["_meta"] = STATELESS_META
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


class Client:
    """One keep-alive connection; `session` None speaks 2026-07-28."""

    def __init__(self, port, session):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.session = session

    def call(self, request_id):
        body = json.dumps(call_message(request_id, self.session is None))
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        else:
            headers.update({"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call",
                            "Mcp-Name": "run_python_code"})
        self.connection.request("POST", "/mcp", body, headers)
        reply = json.loads(self.connection.getresponse().read())
        assert reply["result"]["structuredContent"]["output"] == "1", reply


def initialize(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/mcp", json.dumps({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "1"}}}),
        {"Content-Type": "application/json", "Accept": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.getheader("Mcp-Session-Id")


def measure(port, session, concurrency, requests):
    latencies = []
    lock = threading.Lock()
    per_client = requests // concurrency

    def worker():
        client = Client(port, session)
        client.call(0)  # connection set up outside the measurement
        mine = []
        for i in range(per_client):
            started = time.perf_counter()
            client.call(i + 1)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99)


def measure_stdio(binary, stateless, requests):
    """p50 and p99 of sequential calls over `capsule serve --stdio`."""
    server = subprocess.Popen([binary, "serve", "--stdio", "--workers", "1"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)

    def exchange(message):
        server.stdin.write(json.dumps(message).encode() + b"\n")
        server.stdin.flush()
        while True:
            reply = json.loads(server.stdout.readline())
            if "method" not in reply:
                return reply

    try:
        if not stateless:
            exchange({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                      "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                 "clientInfo": {"name": "bench", "version": "1"}}})
        exchange(call_message(0, stateless))
        latencies = []
        for i in range(requests):
            started = time.perf_counter()
            reply = exchange(call_message(i + 1, stateless))
            latencies.append(time.perf_counter() - started)
            assert reply["result"]["structuredContent"]["output"] == "1", reply
        return percentile(latencies, 0.5), percentile(latencies, 0.99)
    finally:
        server.stdin.close()
        server.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--capsule", default="build/capsule")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stdio-only", action="store_true",
                        help="only the sequential stdio calls of both eras (and a native start)")
    arguments = parser.parse_args()

    if arguments.stdio_only:
        native = []
        for _ in range(20):
            started = time.perf_counter()
            subprocess.run([NATIVE_PYTHON, "-c", "print(1)"], stdout=subprocess.DEVNULL, check=True)
            native.append(time.perf_counter() - started)
        print(f"native python3.11 -c 'print(1)' process: p50 {statistics.median(native) * 1000:.2f} ms")
        for era, stateless in (("2025-11-25", False), ("2026-07-28", True)):
            p50, p99 = measure_stdio(arguments.capsule, stateless, arguments.requests)
            print(f"stdio {era} sequential:                      p50 {p50 * 1000:6.2f} ms  "
                  f"p99 {p99 * 1000:6.2f} ms")
        return

    server = subprocess.Popen([arguments.capsule, "serve", "--http", "127.0.0.1:0", "--no-auth",
                               "--workers", str(arguments.workers), "--queue", "64"],
                              stderr=subprocess.PIPE)
    log = b""
    while b"listening on" not in log:
        line = server.stderr.readline()
        assert line, log
        log += line
    port = int(re.search(rb"127\.0\.0\.1:(\d+)", log).group(1))
    try:
        session = initialize(port)
        first_started = time.perf_counter()
        Client(port, session).call(1)
        first = time.perf_counter() - first_started
        native = []
        for _ in range(20):
            started = time.perf_counter()
            subprocess.run([NATIVE_PYTHON, "-c", "print(1)"], stdout=subprocess.DEVNULL, check=True)
            native.append(time.perf_counter() - started)
        native_p50 = statistics.median(native)
        print(f"run_python_code print(1) over HTTP, {arguments.workers} workers, "
              f"{arguments.requests} requests per level")
        print(f"first call after start-up: {first * 1000:.2f} ms")
        print(f"native python3.11 -c 'print(1)' process: p50 {native_p50 * 1000:.2f} ms")
        for era, era_session in (("2025-11-25", session), ("2026-07-28", None)):
            for concurrency in (1, 8):
                rate, p50, p99 = measure(port, era_session, concurrency, arguments.requests)
                print(f"HTTP  {era} concurrency {concurrency}: {rate:7.0f} requests/s  "
                      f"p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  "
                      f"(p50 = {p50 / native_p50:.2f}x a native python3.11 start)")
        for era, stateless in (("2025-11-25", False), ("2026-07-28", True)):
            p50, p99 = measure_stdio(arguments.capsule, stateless, arguments.requests)
            print(f"stdio {era} sequential:                      p50 {p50 * 1000:6.2f} ms  "
                  f"p99 {p99 * 1000:6.2f} ms")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
