#!/usr/bin/env python3
"""What installing packages costs: Debian's python3-markdown imported and used
natively by python3.11, and by capsule with --site-packages, cold (empty
package cache), warm (the image cached on disk, a new process) and in a
server (the environment remembered: the request is a memory lookup).

Usage: python3 bench/dependencies.py [--runs N]
Prints milliseconds (median) and the ratio to native python3.11."""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CAPSULE = str(ROOT / "build" / "capsule")
SITE = "/usr/lib/python3/dist-packages"
CODE = "import markdown\nmarkdown.markdown('*x*')"


def timed(command):
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        sys.exit(f"failed: {command}: {completed.stderr.decode(errors='replace')}")
    return elapsed * 1000


def median(command, runs, before=None):
    samples = []
    for _ in range(runs):
        if before:
            before()
        samples.append(timed(command))
    return statistics.median(samples)


def server_calls(runs, code, *args):
    """Median latency of tools/call over stdio to one warm server."""
    server = subprocess.Popen([CAPSULE, "serve", "--stdio", *args], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    samples = []
    for i in range(runs + 3):
        message = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                   "params": {"name": "run_python_code", "arguments": {"python_code": code}}}
        start = time.perf_counter()
        server.stdin.write(json.dumps(message).encode() + b"\n")
        server.stdin.flush()
        while True:
            reply = json.loads(server.stdout.readline())
            if reply.get("id") == i:
                break
        if reply["result"]["structuredContent"]["status"] != "success":
            sys.exit(f"failed: {reply}")
        if i >= 3:  # the first calls fill the pool and the memo
            samples.append((time.perf_counter() - start) * 1000)
    server.stdin.close()
    server.wait()
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    # Debian's interpreter: it sees dist-packages, as capsule is told to.
    python = "/usr/bin/python3.11" if os.path.exists("/usr/bin/python3.11") else shutil.which("python3.11")
    if not python:
        sys.exit("python3.11 is needed for the baseline")
    cache = tempfile.mkdtemp(prefix="capsule-bench-")
    try:
        native = median([python, "-c", CODE], args.runs)
        run = [CAPSULE, "run", "--site-packages", SITE, "--package-cache", cache, "-c", CODE]
        cold = median(run, args.runs, before=lambda: shutil.rmtree(cache, ignore_errors=True))
        warm = median(run, args.runs)
        bare = median([CAPSULE, "run", "-c", "pass"], args.runs)
        served = server_calls(args.runs, CODE, "--site-packages", SITE, "--package-cache", cache)
        served_bare = server_calls(args.runs, "pass")
        # The environment asked for but not imported: the scan, the request,
        # the remembered answer and the mount, without compiling markdown.
        declared = server_calls(args.runs, "# /// script\n# dependencies = ['markdown']\n# ///\npass",
                                "--site-packages", SITE, "--package-cache", cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    rows = [("python3.11 -c (native, import markdown)", native),
            ("capsule run, cold cache (resolve, copy, image)", cold),
            ("capsule run, image cached on disk", warm),
            ("capsule run -c pass (no packages), for scale", bare),
            ("capsule serve: tools/call with markdown", served),
            ("capsule serve: tools/call 'pass', for scale", served_bare),
            ("capsule serve: markdown installed, not imported", declared)]
    print(f"{'':50} {'ms':>8} {'x native':>9}")
    for name, value in rows:
        print(f"{name:50} {value:8.2f} {value / native:9.2f}")


if __name__ == "__main__":
    main()
