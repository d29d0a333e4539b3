#!/usr/bin/env python3
"""Durable jobs (docs/scale-out.md): how many trivial jobs capsule finishes
per second, and how long a job waits from its submission to its end.

Prints, in one run on this machine (submitting and running at once, then
draining a queue submitted first, which is the runners' own rate):
- jobs/s for N trivial jobs (`1`) on SQLite with 1, 4 and 8 runner threads
  (--runners; the default of `capsule serve` is twice the cores);
- with PostgreSQL (when CAPSULE_TEST_POSTGRES names a server, as
  tests/store/with-postgres.sh sets it): the same on 1 node, and on 3 nodes
  (3 `capsule serve` processes on one database, as many runners each);
- the p50 and p99 of submit-to-end (a job's updated_at minus created_at);
- the p50 and p99 of the claim latency: how long a job waited, due, for a
  runner (its claim_wait_ms, kept by the store at each claim; the same
  waits make /metrics' capsule_job_claim_latency_seconds histogram).

Run: make bench-jobs   (or python3 bench/jobs.py --capsule build/capsule)
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid


class Server:
    def __init__(self, capsule, *args):
        self.process = subprocess.Popen([capsule, "serve", "--stdio", "--workers", "1", *args],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        self.next_id = 0

    def tool(self, name, **arguments):
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                   "params": {"name": name, "arguments": arguments}}
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()
        while True:
            reply = json.loads(self.process.stdout.readline())
            if reply.get("id") == self.next_id:
                result = reply["result"]
                assert not result.get("isError"), result
                return result["structuredContent"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def percentiles(values):
    values = sorted(values)
    return statistics.median(values), values[min(len(values) - 1, int(len(values) * 0.99))]


def measure(capsule, store, jobs, runners, nodes):
    """Submits `jobs` trivial jobs through the first node, then polls until
    all have succeeded; returns (jobs/s, submit-to-end p50, p99, claim
    latency p50, p99) in s."""
    servers = [Server(capsule, "--store", store, "--job-runners", str(runners),
                      "--job-poll", "0.05") for _ in range(nodes)]
    try:
        servers[0].tool("list_jobs")  # the server is up
        for server in servers[1:]:
            server.tool("list_jobs")
        started = time.perf_counter()
        queue = uuid.uuid4().hex[:12]  # this measurement's jobs only
        for _ in range(jobs):
            servers[0].tool("submit_job", code="1", queue=queue)
        # Polled cheaply (one row each): the poll shares the cores measured.
        while (servers[0].tool("list_jobs", status="queued", limit=1)["jobs"]
               or servers[0].tool("list_jobs", status="running", limit=1)["jobs"]):
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        listed = servers[0].tool("list_jobs", status="succeeded", limit=1000)["jobs"]
        mine = [job for job in listed if job["queue"] == queue]
        assert len(mine) == jobs, (len(mine), jobs)
        ends = percentiles((job["updated_at_ms"] - job["created_at_ms"]) / 1000 for job in mine)
        # list_jobs does not read claim_wait_ms: get_job does.
        claims = percentiles(servers[0].tool("get_job", job_id=job["job_id"])["claim_wait_ms"]
                             / 1000 for job in mine)
        return (jobs / elapsed, *ends, *claims)
    finally:
        for server in servers:
            server.close()


def drain(capsule, store, jobs, runners, nodes):
    """The runners' own rate, without the submissions: `jobs` trivial jobs
    are submitted by a node without runners, which then stops; `nodes`
    nodes with `runners` runners each then drain the queue.  Measured from
    the store's times: from the first claim (run_after + claim_wait_ms) to
    the last end (updated_at), so the nodes' start-up is not counted.
    Returns (jobs/s, claim latency p50, p99) in s."""
    submitter = Server(capsule, "--store", store, "--job-runners", "0")
    try:
        queue = uuid.uuid4().hex[:12]
        ids = [submitter.tool("submit_job", code="1", queue=queue)["job_id"]
               for _ in range(jobs)]
    finally:
        submitter.close()
    servers = [Server(capsule, "--store", store, "--job-runners", str(runners),
                      "--job-poll", "0.05") for _ in range(nodes)]
    try:
        # Polled cheaply (one row each, four times a second): the poll runs
        # on the cores being measured and takes the store's lock; the rate
        # comes from the store's times, not from when the poll noticed.
        while (servers[0].tool("list_jobs", status="queued", limit=1)["jobs"]
               or servers[0].tool("list_jobs", status="running", limit=1)["jobs"]):
            time.sleep(0.25)
        done = [servers[0].tool("get_job", job_id=id) for id in ids]
        assert all(job["status"] == "succeeded" for job in done), done
    finally:
        for server in servers:
            server.close()
    first = min(job["run_after_ms"] + job["claim_wait_ms"] for job in done)
    last = max(job["updated_at_ms"] for job in done)
    return (jobs / max(last - first, 1) * 1000,
            *percentiles(job["claim_wait_ms"] / 1000 for job in done))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--capsule", default="build/capsule")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--drain-jobs", type=int, default=500)
    parser.add_argument("--runners", default="1,4,8",
                        help="runner threads per node to measure, comma-separated")
    parser.add_argument("--only", choices=("drain", "submit"),
                        help="measure only draining, or only submit+run")
    options = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="capsule-bench-jobs-")
    runner_counts = [int(count) for count in options.runners.split(",")]
    rows = []
    drains = []
    try:
        for runners in runner_counts if options.only != "submit" else ():
            store = f"sqlite:{os.path.join(directory, f'drain-{runners}.db')}"
            drains.append((f"SQLite, 1 node, {runners} runner(s)",
                           drain(options.capsule, store, options.drain_jobs, runners, 1)))
        if os.environ.get("CAPSULE_TEST_POSTGRES") and options.only != "submit":
            for runners in runner_counts:
                for nodes in (1, 3):
                    drains.append((f"PostgreSQL, {nodes} node(s), {runners} runner(s) each",
                                   drain(options.capsule, os.environ["CAPSULE_TEST_POSTGRES"],
                                         options.drain_jobs, runners, nodes)))
        for runners in runner_counts if options.only != "drain" else ():
            store = f"sqlite:{os.path.join(directory, f'jobs-{runners}.db')}"
            rows.append((f"SQLite, 1 node, {runners} runner(s)",
                         measure(options.capsule, store, options.jobs, runners, 1)))
        postgres = os.environ.get("CAPSULE_TEST_POSTGRES")
        if postgres and options.only != "drain":
            for runners in runner_counts:
                rows.append((f"PostgreSQL, 1 node, {runners} runner(s)",
                             measure(options.capsule, postgres, options.jobs, runners, 1)))
                rows.append((f"PostgreSQL, 3 nodes, {runners} runner(s) each",
                             measure(options.capsule, postgres, options.jobs, runners, 3)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"durable jobs: {options.jobs} trivial jobs (`1`) each, this machine, one run")
    print(f"{'setup':<36} {'jobs/s':>8} {'submit-to-end p50':>18} {'p99':>9}"
          f" {'claim latency p50':>18} {'p99':>9}")
    for label, (rate, p50, p99, claim50, claim99) in rows:
        print(f"{label:<36} {rate:>8.0f} {p50 * 1000:>15.0f} ms {p99 * 1000:>6.0f} ms"
              f" {claim50 * 1000:>15.0f} ms {claim99 * 1000:>6.0f} ms")
    print()
    print(f"draining: {options.drain_jobs} trivial jobs submitted first, then run (runners' rate,"
          " first claim to last end)")
    print(f"{'setup':<40} {'jobs/s':>8} {'claim latency p50':>18} {'p99':>9}")
    for label, (rate, p50, p99) in drains:
        print(f"{label:<40} {rate:>8.0f} {p50 * 1000:>15.0f} ms {p99 * 1000:>6.0f} ms")
    if not os.environ.get("CAPSULE_TEST_POSTGRES"):
        print("(PostgreSQL rows: run under tests/store/with-postgres.sh)")


if __name__ == "__main__":
    main()
