#!/usr/bin/env python3
"""Core benchmark: the same Python programs run natively and inside capsule.

    python3 bench/bench.py --capsule build/capsule [--repeat N] [--markdown FILE]

Native is Debian's /usr/bin/python3.11 (CPython 3.11.2, the same version and
source as capsule's guest); capsule runs them through `capsule run -c CODE`.
Both run in this one invocation, on the same machine, interleaved.

Benchmarks:
- startup: wall time of a whole `-c pass` process, measured here around
  subprocess.run;
- the programs in bench/programs/: each times its own workload with
  time.perf_counter() (so process start-up is excluded), verifies its result,
  prints `check ...` lines (which must be identical natively and in capsule),
  optionally `part NAME SECONDS` lines, and the elapsed seconds as its last
  line.

Each figure is the median of --repeat runs (startup: --startup-runs runs);
ratio = capsule / native.  The compute benchmarks' ratios are summarised by
their geometric mean, against the target of at most 1.3x.

Only the standard library is used.  Any run that exits non-zero, prints no
timing, or disagrees with the other side's checks stops the benchmark with
an error.
"""
import argparse
import datetime
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

NATIVE_PYTHON = "/usr/bin/python3.11"
HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM_DIR = os.path.join(HERE, "programs")
COMPUTE_TARGET = 1.3
RUN_TIMEOUT = 300  # seconds, per process

# (name, kind, program file, description)
PROGRAMS = [
    ("fib", "compute", "fib.py", "fib(27), recursive"),
    ("loop-genexpr", "compute", "loop_gen.py", "sum(i*i for i in range(3_000_000))"),
    ("loop-for", "compute", "loop_for.py", "for i in range(3_000_000): total += i*i"),
    ("json", "compute", "json_roundtrip.py", "dumps + loads of a 1 MB document, 10 times"),
    ("regex", "compute", "regex.py", "3 findall + 3 sub over 1 MB of text"),
    ("imports", "import", "imports.py", "import re, json, decimal, datetime, pathlib"),
]


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- running

def run(argv, label, timeout=RUN_TIMEOUT):
    """Runs argv; returns stdout.  Raises BenchError unless it exits 0."""
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError("%s: no result after %d s" % (label, timeout))
    except OSError as exc:
        raise BenchError("%s: cannot run %s: %s" % (label, argv[0], exc))
    if proc.returncode != 0:
        raise BenchError("%s: exit status %d\n--- stdout (tail)\n%s\n--- stderr (tail)\n%s"
                         % (label, proc.returncode, _tail(proc.stdout), _tail(proc.stderr)))
    return proc.stdout.decode("utf-8", "replace")


def _tail(data, lines=25):
    text = data.decode("utf-8", "replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def parse_output(out, label):
    """A program's output: (seconds, checks, parts)."""
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        raise BenchError("%s: printed nothing" % label)
    try:
        seconds = float(lines[-1])
    except ValueError:
        raise BenchError("%s: last line is not the elapsed seconds: %r" % (label, lines[-1]))
    if not (0.0 < seconds < RUN_TIMEOUT):
        raise BenchError("%s: implausible elapsed time %r" % (label, seconds))
    checks = [line for line in lines[:-1] if line.startswith("check ")]
    parts = {}
    for line in lines[:-1]:
        if line.startswith("part "):
            _, name, value = line.split()
            parts[name] = float(value)
    if not checks:
        raise BenchError("%s: printed no `check` line" % label)
    return seconds, checks, parts


class Sides:
    def __init__(self, native, capsule):
        self.native = native
        self.capsule = capsule

    def command(self, side, code):
        if side == "native":
            # -I like the guest, which runs `python -I -u -c ...`.
            return [self.native, "-I", "-c", code]
        return [self.capsule, "run", "-c", code]


def interleaved(repeat):
    """(round, side) pairs, alternating which side goes first."""
    for i in range(repeat):
        order = ("native", "capsule") if i % 2 == 0 else ("capsule", "native")
        for side in order:
            yield i, side


def bench_startup(sides, runs):
    commands = {"native": [sides.native, "-c", "pass"],
                "capsule": [sides.capsule, "run", "-c", "pass"]}
    for side, argv in commands.items():  # warm the page cache, not measured
        run(argv, "startup (%s, warm-up)" % side)
    times = {"native": [], "capsule": []}
    for i, side in interleaved(runs):
        t0 = time.perf_counter()
        run(commands[side], "startup (%s, run %d)" % (side, i + 1))
        times[side].append(time.perf_counter() - t0)
    return times


def bench_program(sides, name, filename, repeat):
    path = os.path.join(PROGRAM_DIR, filename)
    with open(path, encoding="utf-8") as f:
        code = f.read()
    times = {"native": [], "capsule": []}
    parts = {"native": {}, "capsule": {}}
    reference = None
    for i, side in interleaved(repeat):
        label = "%s (%s, run %d of %d)" % (name, side, i + 1, repeat)
        out = run(sides.command(side, code), label)
        seconds, checks, run_parts = parse_output(out, label)
        if reference is None:
            reference = (side, checks)
        elif checks != reference[1]:
            raise BenchError("%s: checks differ from the %s run's:\n  %s\nvs\n  %s"
                             % (label, reference[0], "\n  ".join(checks),
                                "\n  ".join(reference[1])))
        times[side].append(seconds)
        for key, value in run_parts.items():
            parts[side].setdefault(key, []).append(value)
    return times, parts


# ---------------------------------------------------------------- facts

def machine_facts(sides):
    facts = []
    nproc = None
    try:
        nproc = run(["nproc"], "nproc", timeout=10).strip()
    except BenchError:
        pass
    facts.append(("nproc", nproc or str(os.cpu_count())))
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    facts.append(("CPU", model))
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    facts.append(("memory", "%.1f GiB" % (int(line.split()[1]) / 2**20)))
                    break
    except (OSError, ValueError, IndexError):
        pass
    facts.append(("kernel", "%s %s" % (platform.system(), platform.release())))
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            facts.append(("load average at start", " ".join(f.read().split()[:3])))
    except OSError:
        pass
    facts.append(("date", datetime.datetime.now(datetime.timezone.utc)
                  .strftime("%Y-%m-%d %H:%M UTC")))
    facts.append(("capsule", run([sides.capsule, "version"], "capsule version",
                                 timeout=30).strip()))
    facts.append(("native", "%s: %s" % (sides.native, run(
        [sides.native, "-c", "import sys; print(sys.version.replace(chr(10), ' '))"],
        "native version", timeout=30).strip())))
    commit = git_commit()
    if commit:
        facts.append(("project commit", commit))
    return facts


def git_commit():
    try:
        proc = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
        if proc.returncode != 0:
            return None
        commit = proc.stdout.decode().strip()
        dirty = subprocess.run(["git", "-C", HERE, "status", "--porcelain",
                                "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
        if dirty.returncode == 0 and dirty.stdout.strip():
            commit += " (with uncommitted changes)"
        return commit
    except (OSError, subprocess.SubprocessError):
        return None


def sanity_check(sides):
    """Both sides must be Python 3.11; capsule's must really be the wasi guest."""
    code = "import sys; print(sys.platform, '%d.%d' % sys.version_info[:2])"
    native = run(sides.command("native", code), "native sanity check").split()
    capsule = run(sides.command("capsule", code), "capsule sanity check").split()
    if native != ["linux", "3.11"]:
        raise BenchError("native interpreter %s reports %s, expected linux 3.11"
                         % (sides.native, " ".join(native)))
    if capsule != ["wasi", "3.11"]:
        raise BenchError("capsule guest reports %s, expected wasi 3.11" % " ".join(capsule))


# ---------------------------------------------------------------- report

class Row:
    def __init__(self, name, kind, description, native, capsule, runs, sub=False):
        self.name = name
        self.kind = kind
        self.description = description
        self.native = statistics.median(native)
        self.capsule = statistics.median(capsule)
        self.ratio = self.capsule / self.native
        self.runs = runs
        self.sub = sub


def fmt_time(seconds):
    ms = seconds * 1000.0
    if ms >= 100:
        return "%.0f ms" % ms
    if ms >= 10:
        return "%.1f ms" % ms
    return "%.2f ms" % ms


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summary(rows):
    compute = [r.ratio for r in rows if r.kind == "compute" and not r.sub]
    if not compute:
        return None, "no compute benchmarks run"
    gm = geomean(compute)
    verdict = "met" if gm <= COMPUTE_TARGET else "NOT met"
    return gm, ("compute geomean ratio: %.2f×  (compute target ≤ %.1f×: %s)"
                % (gm, COMPUTE_TARGET, verdict))


def text_table(rows):
    header = ("benchmark", "kind", "native", "capsule", "ratio")
    body = []
    for r in rows:
        name = ("  " + r.name) if r.sub else r.name
        body.append((name, r.kind, fmt_time(r.native), fmt_time(r.capsule),
                     "%.2f×" % r.ratio))
    widths = [max(len(row[i]) for row in [header] + body) for i in range(5)]
    lines = []
    for k, row in enumerate([header] + body):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [row[i].rjust(widths[i]) for i in range(2, 5)]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows, facts, command, args):
    gm, line = summary(rows)
    out = []
    out.append("# Core benchmark: capsule vs native CPython 3.11")
    out.append("")
    out.append("Generated by `bench/bench.py`; re-run it to update this file:")
    out.append("")
    out.append("```sh")
    out.append(command)
    out.append("```")
    out.append("")
    out.append("## Machine")
    out.append("")
    for key, value in facts:
        out.append("- %s: %s" % (key, value))
    out.append("")
    out.append("## Results")
    out.append("")
    out.append("Median of %d runs per side (startup: %d runs), ratio = capsule / native; "
               "lower is better." % (args.repeat, args.startup_runs))
    out.append("")
    out.append("| benchmark | what | kind | native | capsule | ratio |")
    out.append("|---|---|---|--:|--:|--:|")
    for r in rows:
        name = ("↳ " + r.name) if r.sub else "**%s**" % r.name
        out.append("| %s | %s | %s | %s | %s | %.2f× |" % (
            name, r.description, r.kind, fmt_time(r.native), fmt_time(r.capsule), r.ratio))
    out.append("")
    out.append("**%s**" % line)
    out.append("")
    out.append("## Method")
    out.append("")
    out.append("- Native is `%s`, run as `python3.11 -I -c PROGRAM`; capsule is "
               "`capsule run -c PROGRAM` (the guest interpreter runs with `-I -u`). "
               "Both sides are run in one invocation, interleaved, alternating "
               "which goes first." % NATIVE_PYTHON)
    out.append("- startup: wall time of `python3.11 -c pass` and `capsule run -c pass`, "
               "measured by the orchestrator around the whole process (after one "
               "unmeasured warm-up run each).")
    out.append("- All other rows: each program in `bench/programs/` times only its own "
               "workload with `time.perf_counter()`, so process start-up is excluded; "
               "it verifies its result and prints check values (result, counts, "
               "SHA-256 of outputs) that must be identical natively and in capsule.")
    out.append("- loop-genexpr and loop-for compute the same sum; their difference is "
               "the cost of resuming the generator.")
    out.append("- imports: capsule's guest runner has already imported `ast`, `json`, "
               "`re`, `traceback` and their dependencies before user code runs, so the "
               "program first imports the same set on both sides, then drops `json`, "
               "`re` and their submodules from `sys.modules` and times importing "
               "re, json, decimal, datetime, pathlib in that order (each includes what "
               "it imports that was not loaded yet). Natively `_decimal` is a shared "
               "library loaded with dlopen; in capsule it is built in.")
    out.append("- The geometric mean covers the compute rows only (%s)."
               % ", ".join(r.name for r in rows if r.kind == "compute" and not r.sub))
    out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capsule", required=True, help="path of the capsule binary")
    parser.add_argument("--native", default=NATIVE_PYTHON,
                        help="native interpreter (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs per side of each program; the median is reported "
                             "(default: %(default)s)")
    parser.add_argument("--startup-runs", type=int, default=20,
                        help="runs per side of the startup benchmark (default: %(default)s)")
    parser.add_argument("--only", default=None,
                        help="comma-separated subset of: startup,"
                             + ",".join(p[0] for p in PROGRAMS))
    parser.add_argument("--markdown", metavar="FILE",
                        help="also write the results as markdown to FILE")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.startup_runs < 1:
        parser.error("--repeat and --startup-runs must be at least 1")
    names = ["startup"] + [p[0] for p in PROGRAMS]
    selected = names if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in selected if n not in names]
    if unknown:
        parser.error("unknown benchmark(s): %s" % ", ".join(unknown))

    command = "python3 " + shlex.join(sys.argv if argv is None else [sys.argv[0]] + argv)
    capsule = os.path.abspath(args.capsule)
    if not (os.path.isfile(capsule) and os.access(capsule, os.X_OK)):
        parser.error("--capsule %s: not an executable file" % args.capsule)
    sides = Sides(args.native, capsule)

    started = time.perf_counter()
    try:
        sanity_check(sides)
        facts = machine_facts(sides)
        rows = []
        if "startup" in selected:
            progress("startup (%d runs per side)" % args.startup_runs)
            times = bench_startup(sides, args.startup_runs)
            rows.append(Row("startup", "startup", "whole process, `-c pass`",
                            times["native"], times["capsule"], args.startup_runs))
            progress_row(rows[-1])
        for name, kind, filename, description in PROGRAMS:
            if name not in selected:
                continue
            progress("%s (%d runs per side)" % (name, args.repeat))
            times, parts = bench_program(sides, name, filename, args.repeat)
            rows.append(Row(name, kind, description, times["native"], times["capsule"],
                            args.repeat))
            progress_row(rows[-1])
            for part in parts["native"]:
                label = part.replace("_", " ", 1)
                rows.append(Row(label, kind, "", parts["native"][part],
                                parts["capsule"][part], args.repeat, sub=True))
    except BenchError as exc:
        print("bench: FAILED: %s" % exc, file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started

    print("capsule core benchmark: %s" % command)
    for key, value in facts:
        print("  %-22s %s" % (key + ":", value))
    print()
    print("median of %d runs per side (startup: %d); ratio = capsule / native"
          % (args.repeat, args.startup_runs))
    print()
    print(text_table(rows))
    print()
    print(summary(rows)[1])
    print("(benchmark run took %.1f s)" % elapsed)
    if args.markdown:
        directory = os.path.dirname(os.path.abspath(args.markdown))
        os.makedirs(directory, exist_ok=True)
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown(rows, facts, command, args))
        print("wrote %s" % args.markdown)
    return 0


def progress(message):
    print("bench: %s ..." % message, file=sys.stderr, flush=True)


def progress_row(row):
    print("bench:   native %s, capsule %s, ratio %.2f×"
          % (fmt_time(row.native), fmt_time(row.capsule), row.ratio),
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
