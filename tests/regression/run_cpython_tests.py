#!/usr/bin/env python3
"""Runs a subset of CPython's own regression suite inside capsule.

Each test module runs in its own sandbox (`capsule run --json`), with
CPython's Lib/test mounted read-only from build/stdlib-tests.img at /tests.
This script only orchestrates on the host; all test code runs in the guest.

    run_cpython_tests.py --capsule build/capsule [--check] [--write-docs FILE] [module ...]

--check compares with tests/regression/baseline.json (minimum passes per
module) and exits non-zero on a regression, a module that stopped loading,
or a run that did not end normally (trap, crash, timeout).
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BASELINE = HERE / "baseline.json"
MARKER = "CAPSULE_COUNTS "

MODULES = [
    "test_json", "test_re", "test_math", "test_cmath", "test_datetime", "test_collections",
    "test_decimal", "test_fractions", "test_statistics", "test_unicode", "test_unicode_identifiers",
    "test_fstring", "test_string", "test_textwrap", "test_itertools", "test_functools",
    "test_operator", "test_contextlib", "test_dataclasses", "test_enum", "test_typing",
    "test_ast", "test_grammar", "test_exceptions", "test_traceback", "test_dict", "test_list",
    "test_set", "test_tuple", "test_int", "test_long", "test_float", "test_bytes", "test_struct",
    "test_base64", "test_binascii", "test_hashlib", "test_zlib", "test_gzip", "test_zipfile",
    "test_tarfile", "test_csv", "test_sqlite3", "test_pathlib", "test_glob", "test_shutil",
    "test_tempfile", "test_os", "test_io", "test_random", "test_heapq", "test_bisect",
    "test_difflib", "test_html", "test_htmlparser", "test_xml_etree", "test_tomllib",
    "test_calendar", "test_time", "test_uuid", "test_copy", "test_pickle", "test_unicodedata",
    "test_codecs", "test_email", "test_urlparse", "test_ipaddress", "test_argparse",
    "test_pprint", "test_secrets", "test_zoneinfo", "test_asyncio.test_tasks",
]

# Modules with a test_main() choose their own test classes (test_decimal
# runs its C and Python variants, never the abstract bases); for those we
# call test_main and capture what it hands to run_unittest.
GUEST_PROGRAM = r'''
import importlib, io, json, sys, unittest
sys.path.insert(0, "/tests")
name = "test.%(module)s"
loader = unittest.defaultTestLoader
runner = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0)
results = []

def run_unittest(*classes):
    suite = unittest.TestSuite()
    for item in classes:
        if isinstance(item, str):
            suite.addTest(loader.loadTestsFromModule(sys.modules[item]))
        elif isinstance(item, (unittest.TestSuite, unittest.TestCase)):
            suite.addTest(item)
        else:
            suite.addTest(loader.loadTestsFromTestCase(item))
    results.append(runner.run(suite))

try:
    module = importlib.import_module(name)
    if hasattr(module, "test_main") and not hasattr(module, "load_tests"):
        import test.support
        test.support.run_unittest = run_unittest
        module.run_unittest = run_unittest
        module.test_main()
    else:
        results.append(runner.run(loader.loadTestsFromName(name)))
except BaseException as exc:
    if not results:
        print("%(marker)s" + json.dumps({"import_error": (type(exc).__name__ + ": " + str(exc))[:300]}))
        raise SystemExit(0)
failed = [test.id().replace("test.", "", 1) for r in results for test, _ in r.failures + r.errors]
print("%(marker)s" + json.dumps({
    "run": sum(r.testsRun for r in results),
    "failures": sum(len(r.failures) for r in results),
    "errors": sum(len(r.errors) for r in results),
    "skipped": sum(len(r.skipped) for r in results),
    "expected_failures": sum(len(r.expectedFailures) for r in results),
    "unexpected_successes": sum(len(r.unexpectedSuccesses) for r in results),
    "failed_tests": failed[:40],
}))
'''


def run_module(capsule, image, module, timeout):
    code = GUEST_PROGRAM % {"module": module, "marker": MARKER}
    command = [capsule, "run", "--json", "--timeout", str(timeout), "--memory", "1G",
               "--max-output", "64M", "--image", f"{image}:/tests", "-c", code]
    started = time.monotonic()
    try:
        completed = subprocess.run(command, capture_output=True, timeout=timeout + 60, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"module": module, "status": "host-timeout", "seconds": timeout}
    seconds = time.monotonic() - started
    row = {"module": module, "seconds": round(seconds, 1)}
    try:
        result = json.loads(completed.stdout)
    except ValueError:
        row.update(status="no-result", detail=completed.stderr.decode(errors="replace")[-300:])
        return row
    row["status"] = result["status"]
    for line in result.get("stdout", "").splitlines():
        if line.startswith(MARKER):
            row.update(json.loads(line[len(MARKER):]))
    if "run" in row:
        row["passed"] = (row["run"] - row["failures"] - row["errors"] - row["skipped"]
                         - row["expected_failures"])
    elif "import_error" not in row:
        row["detail"] = (result.get("error") or "")[-300:]
    return row


def print_table(rows):
    header = f"{'module':28} {'run':>5} {'passed':>6} {'fail':>5} {'error':>5} {'skip':>5}  {'status':12} {'s':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        if "run" in row:
            print(f"{row['module']:28} {row['run']:5} {row['passed']:6} {row['failures']:5} "
                  f"{row['errors']:5} {row['skipped']:5}  {row['status']:12} {row['seconds']:6}")
        else:
            reason = row.get("import_error") or row.get("detail") or ""
            print(f"{row['module']:28} {'-':>5} {'-':>6} {'-':>5} {'-':>5} {'-':>5}  "
                  f"{row['status']:12} {row.get('seconds', '-'):>6}  {reason[:70]}")
    totals = summarize(rows)
    print("-" * len(header))
    print(f"{'total':28} {totals['run']:5} {totals['passed']:6} {totals['failures']:5} "
          f"{totals['errors']:5} {totals['skipped']:5}  {totals['modules_ran']}/{len(rows)} modules ran")


def summarize(rows):
    totals = {key: sum(row.get(key, 0) for row in rows)
              for key in ("run", "passed", "failures", "errors", "skipped")}
    totals["modules_ran"] = sum(1 for row in rows if "run" in row)
    return totals


def check(rows):
    baseline = json.loads(BASELINE.read_text())
    problems = []
    for row in rows:
        expected = baseline.get(row["module"])
        if row["status"] in ("trap", "crash", "timeout", "host-timeout", "no-result"):
            problems.append(f"{row['module']}: ended with {row['status']}")
        if expected is None:
            continue
        if "run" not in row:
            problems.append(f"{row['module']}: no longer loads ({row.get('import_error') or row.get('detail')})")
        elif row["passed"] < expected:
            problems.append(f"{row['module']}: {row['passed']} passed, baseline {expected}")
    return problems


def write_docs(path, rows, command):
    totals = summarize(rows)
    lines = [
        "# CPython's regression tests inside capsule",
        "",
        "A subset of CPython 3.11.2's `Lib/test` (Debian's source), each module run in its own",
        "sandbox with the tests mounted read-only. Produced by:",
        "",
        f"    {command}",
        "",
        f"on {datetime.date.today().isoformat()}, {os.cpu_count()} cores. "
        f"**{totals['passed']} of {totals['run']} tests passed**, {totals['failures']} failed, "
        f"{totals['errors']} errors, {totals['skipped']} skipped, in "
        f"{totals['modules_ran']} of {len(rows)} modules. `make test` checks the per-module pass",
        "counts against `tests/regression/baseline.json`.",
        "",
        "| module | run | passed | failed | errors | skipped | status |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        if "run" in row:
            lines.append(f"| {row['module']} | {row['run']} | {row['passed']} | {row['failures']} | "
                         f"{row['errors']} | {row['skipped']} | {row['status']} |")
        else:
            reason = (row.get("import_error") or row.get("detail") or "").replace("|", "/")
            lines.append(f"| {row['module']} | - | - | - | - | - | {row['status']}: {reason[:90]} |")
    lines += ["", "## Failing tests", ""]
    for row in rows:
        if row.get("failed_tests"):
            lines.append(f"- **{row['module']}**: " + ", ".join(f"`{t}`" for t in row["failed_tests"][:15])
                         + (" ..." if len(row["failed_tests"]) > 15 else ""))
    pathlib.Path(path).write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capsule", default=str(ROOT / "build" / "capsule"))
    parser.add_argument("--image", default=str(ROOT / "build" / "stdlib-tests.img"))
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--write-docs")
    parser.add_argument("--write-baseline", action="store_true",
                        help="record today's pass counts as the baseline")
    parser.add_argument("modules", nargs="*")
    args = parser.parse_args()
    modules = args.modules or MODULES

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda m: run_module(args.capsule, args.image, m, args.timeout), modules))
    print_table(rows)
    if args.write_docs:
        write_docs(args.write_docs, rows, " ".join(["python3", "tests/regression/run_cpython_tests.py"] + sys.argv[1:]))
    if args.write_baseline:
        BASELINE.write_text(json.dumps({row["module"]: row["passed"] for row in rows if "run" in row},
                                       indent=1, sort_keys=True) + "\n")
    totals = summarize(rows)
    problems = check(rows) if args.check else []
    for problem in problems:
        print("REGRESSION:", problem)
    failed = 1 if problems else 0
    print(f"CPython regression subset: {totals['passed']} of {totals['run']} tests passed in "
          f"{totals['modules_ran']} modules; {len(problems)} regressions against the baseline")
    return failed


if __name__ == "__main__":
    sys.exit(main())
