#!/usr/bin/env python3
"""Runs a subset of CPython's own regression suite inside capsule.

    run_cpython_tests.py --capsule build/capsule [--check] [--write-docs FILE]
                         [--write-baseline] [--jobs N] [--timeout S] [module ...]

Each test module runs in its own sandbox (`capsule run --json`), with
CPython's Lib/test (from build/stdlib-tests.img) mounted read-only at /tests.
This script is stdlib-only and runs on the host only to orchestrate: every
line of test code runs in the guest.  Inside, plain unittest loads
`test.<module>` and a small result class counts what happened; the guest
prints one line `CAPSULE_COUNTS {json}` that this script reads.

--check compares with tests/regression/baseline.json and exits 1 if a
module passes fewer tests than its recorded minimum, if a module that loaded
before no longer loads, or if any run ended abnormally (trap, crash,
timeout, a resource limit, no result).  --write-baseline records this run's
counts as the new minimums (modules named in SLACK get a margin).
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import pathlib
import platform
import re
import shlex
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BASELINE = HERE / "baseline.json"
MARKER = "CAPSULE_COUNTS "

# The default subset, roughly by theme.  Left out on purpose (each was tried):
#   test_zipfile64   23 s for 4 tests, two of which need a >256 MiB scratch disk
#   test_threading, test_queue, test_subprocess, test_socket, test_select,
#   test_signal, test_concurrent_futures, test_mailbox, test_urllib*:
#                    skip themselves as a whole in WASI (no threads, processes,
#                    sockets, signals, gethostname)
MODULES = [
    # numbers, text, data structures
    "test_math", "test_cmath", "test_int", "test_long", "test_float", "test_complex",
    "test_decimal", "test_fractions", "test_statistics", "test_random", "test_bool",
    "test_unicode", "test_unicode_identifiers", "test_unicodedata", "test_fstring", "test_string",
    "test_string_literals", "test_format", "test_textwrap", "test_re", "test_codecs",
    "test_codeccallbacks", "test_multibytecodec", "test_bytes", "test_struct", "test_array",
    "test_memoryview", "test_binascii", "test_base64", "test_quopri",
    "test_dict", "test_dictviews", "test_list", "test_tuple", "test_set", "test_deque",
    "test_ordered_dict", "test_defaultdict", "test_collections", "test_heapq", "test_bisect",
    "test_sort", "test_range", "test_slice", "test_enumerate", "test_iter",
    # language
    "test_grammar", "test_syntax", "test_ast", "test_compile", "test_dis", "test_code",
    "test_exceptions", "test_exception_group", "test_except_star", "test_traceback",
    "test_class", "test_descr", "test_types", "test_scope", "test_generators",
    "test_coroutines", "test_asyncgen", "test_with", "test_patma", "test_unpack",
    "test_keywordonlyarg", "test_positional_only_arg", "test_named_expressions",
    "test_super", "test_property", "test_raise", "test_opcodes", "test_peepholer",
    "test_unparse", "test_tokenize", "test_keyword", "test_symtable", "test_marshal",
    "test_gc", "test_weakref", "test_sys", "test_builtin",
    # functional and object tools
    "test_itertools", "test_functools", "test_operator", "test_contextlib",
    "test_contextlib_async", "test_dataclasses", "test_enum", "test_typing", "test_abc",
    "test_inspect", "test_copy", "test_pickle", "test_copyreg", "test_reprlib", "test_pprint",
    "test_graphlib",
    # files, paths, archives, storage
    "test_os", "test_posix", "test_posixpath", "test_genericpath", "test_stat", "test_pathlib",
    "test_glob", "test_fnmatch", "test_shutil", "test_tempfile", "test_io", "test_fileio",
    "test_memoryio", "test_fileinput", "test_filecmp", "test_linecache", "test_zlib",
    "test_gzip", "test_bz2", "test_lzma", "test_zipfile", "test_zipimport", "test_tarfile",
    "test_csv", "test_sqlite3",
    "test_dbm_dumb", "test_shelve", "test_plistlib", "test_importlib", "test_import",
    "test_compileall", "test_py_compile", "test_runpy",
    # formats, protocols without the network
    "test_json", "test_tomllib", "test_html", "test_htmlparser", "test_xml_etree",
    "test_xml_etree_c", "test_minidom", "test_pyexpat", "test_sax", "test_email",
    "test_urlparse", "test_ipaddress", "test_uuid", "test_hashlib", "test_hmac", "test_secrets",
    "test_difflib", "test_configparser", "test_argparse", "test_optparse", "test_getopt",
    "test_shlex", "test_gettext", "test_logging",
    # the standard library's own tools
    "test_unittest", "test_lib2to3",
    # time
    "test_datetime", "test_time", "test_calendar", "test_strftime", "test_strptime",
    "test_zoneinfo", "test_sched",
    # asyncio: the package refuses to load without sockets; these submodules
    # need no sockets and no threads (see SOCKET_GATE_BYPASS)
    "test_asyncio.test_tasks", "test_asyncio.test_futures", "test_asyncio.test_futures2",
    "test_asyncio.test_locks", "test_asyncio.test_queues", "test_asyncio.test_timeouts",
    "test_asyncio.test_taskgroups", "test_asyncio.test_runners", "test_asyncio.test_waitfor",
    "test_asyncio.test_pep492", "test_asyncio.test_context", "test_asyncio.test_transports",
    "test_asyncio.test_protocols",
]

# Modules that call test.support.requires_working_socket(module=True) only
# because asyncio's event loop needs a socketpair on other WASI hosts; in
# capsule the event loop works, so for these the module-wide gate is
# lifted (per-test socket requirements still skip).
SOCKET_GATE_BYPASS = ("test_asyncio", "test_asyncgen", "test_contextlib_async")

# Pass counts that vary a little from run to run (timing, memory, hash
# seeds): the baseline minimum is the measured count minus this slack.
SLACK = {"test_time": 2, "test_asyncio.test_tasks": 3, "test_asyncio.test_waitfor": 2,
         "test_asyncio.test_timeouts": 2, "test_sched": 2, "test_gc": 2, "test_weakref": 2}

# Explanations for the docs, matched (re.search) against "module.Class.test"
# ids of failing tests and against the reasons modules did not load.  The
# first match wins; a failure matching none is listed as unexplained.
KNOWN = [
    (r"_testcapi|_testinternalcapi|MethInstance",
     "**`_testcapi` / `_testinternalcapi` are not in the guest** (CPython is configured with "
     "`--disable-test-modules`). Tests that import them without a skip guard error out, and "
     "six submodules of `test_sqlite3` cannot load (`test_call` is not in the subset "
     "for the same reason). Not a capsule bug; building the guest with the test modules would turn "
     "these into passes."),
    (r"ASTValidatorTests\.test_stdlib_validates|test_importlib\.frozen\.",
     "**Layout of this harness**: the tests are mounted at `/tests`, not inside the stdlib "
     "directory. `test_ast.test_stdlib_validates` looks for `test/test_grammar.py` next to "
     "`ast.__file__`, and `test_importlib.frozen` expects `__hello__.py` / `__phello__` in "
     "the directory above `test/`."),
    (r"Read-only file system",
     "**Read-only directories on `sys.path`**: `test.support.import_helper.forget()` deletes "
     "stale `.pyc` files in every `sys.path` entry and only ignores `ENOENT`; the stdlib and "
     "`/tests` are read-only images, where `unlink` of a missing file gives `EROFS` (as Linux "
     "does on a read-only mount). Affects `test_import` and `test_runpy`."),
    (r"(?i)test_os\.UtimeTests|test_add_file_before_1980|pathlike_name|utime",
     "**Times**: `os.utime` is stored (atime and mtime; ctime is reported equal to mtime, "
     "and there are no nanosecond-exact ctime updates). What still differs is listed "
     "here."),
    (r"test_copyfile_nonexistent_dir",
     "**Trailing slash dropped by capsule's path normalisation** (`vfs_normalize`): "
     "`open('dir/missing/', 'w')` creates a regular file `missing` instead of failing with "
     "`EISDIR`, and `stat('file/')` succeeds instead of `ENOTDIR`. shutil.copyfile relies on "
     "the `EISDIR` to report a missing destination directory."),
    (r"(?i)hardlink|link_to|symlink|os\.link",
     "**Links are refused by design**: `path_link` and `path_symlink` return `EPERM` "
     "(a hard link could make one file appear under two mounts' rules; symbolic links would "
     "make lexical `..` unsound). Most link tests skip; these expect the link to succeed. "
     "`compileall`'s `hardlink_dupes` even loses the duplicate `.pyc` (it unlinks, then "
     "`os.link` fails)."),
    (r"large_file|zipfile64|No space left",
     "**Scratch-disk quota**: the in-memory file system holds 256 MiB by default and has no "
     "sparse files, so `test_large_file_ops` (a write at a 2 GiB offset) gets `ENOSPC`."),
    (r"Errno 58\] Not supported",
     "**asyncio's stock event loop needs `socket.socketpair()`**, which WASI lacks. capsule's "
     "guest runner installs its own event-loop *policy* whose loop has no self-pipe, but "
     "these tests call `asyncio.set_event_loop_policy(None)` after their first test, which "
     "brings back the stock loop; every later `asyncio.run()` then fails with `ENOTSUP`."),
    (r"(?i)thread", "**No threads in WASI preview1**: `_thread.start_new_thread` raises "
     "`RuntimeError`; asyncio's `run_coroutine_threadsafe` and `wrap_future` tests need one."),
    (r"subprocess|spawn|fork|waitpid", "**No processes in WASI**: no `fork`, `exec`, `waitpid`."),
    (r"socket|gethostname", "**No sockets**: capsule's guest has no network at all."),
    (r"_lzma|_bz2|lzma|bz2",
     "**`_lzma` and `_bz2` are not in the guest build** (only zlib is); `test_zoneinfo` "
     "needs lzma for its test data."),
]


# The guest program.  %(module)s and %(options)s are filled in by run_module.
GUEST_PROGRAM = r'''
import collections, importlib, io, json, sys, traceback, unittest
sys.path.insert(0, "/tests")
# Package tests shipped beside Lib/test in the tests image (unittest.test,
# lib2to3.tests): stdlib.img leaves every package's tests out.  A finder,
# not __path__, because test_lib2to3 re-imports lib2to3 fresh.
import importlib.machinery
class PackageTests:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        package, _, rest = name.partition(".")
        if package in ("unittest", "lib2to3") and rest in ("test", "tests"):
            return importlib.machinery.PathFinder.find_spec(name, ["/tests/" + package])
        return None
sys.meta_path.append(PackageTests)
OPTIONS = %(options)s
NAME = "test." + OPTIONS["module"]
MARKER = "%(marker)s"

import test.support
if OPTIONS["socket_bypass"]:
    _requires_working_socket = test.support.requires_working_socket
    def requires_working_socket(*, module=False):
        if not module:
            return _requires_working_socket(module=module)
    test.support.requires_working_socket = requires_working_socket
try:
    import _testinternalcapi
except ImportError:
    # test.support asks _testinternalcapi whether code objects carry column
    # positions, and raises SkipTest at import time without it (taking all
    # of test_traceback, test_compile, test_dis, ... with it).  Ask the
    # interpreter directly instead.
    def has_no_debug_ranges():
        code = compile("x", "<probe>", "eval")
        return all(p[2] is None for p in code.co_positions())
    test.support.has_no_debug_ranges = has_no_debug_ranges

def last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return (lines[-1].strip() if lines else "")[:240]

class Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = 0
        self.problems = {}    # test id -> [kind, message]
    def _note(self, test, kind, err):
        tid = test.id() if hasattr(test, "id") else str(test)
        if tid.startswith("test."):
            tid = tid[5:]
        if isinstance(err, tuple):
            # "Type: first line of the message": assertion messages with a
            # diff would otherwise end in a line of the diff.
            lines = str(err[1]).strip().splitlines()
            if tid.startswith("unittest.loader._FailedTest."):
                # A submodule that failed to load: its own traceback is the
                # message, and the last line says why.
                tid = tid.split("_FailedTest.", 1)[1].replace("test.", "", 1) + " (load)"
                text = lines[-1].strip() if lines else err[0].__name__
            else:
                text = err[0].__name__ + (": " + lines[0] if lines else "")
        else:
            text = str(err)
        if tid not in self.problems or self.problems[tid][0] == "error" and kind == "failure":
            self.problems[tid] = [kind, last_line(text)]
    def addSuccess(self, test):
        super().addSuccess(test); self.passed += 1
    def addFailure(self, test, err):
        super().addFailure(test, err); self._note(test, "failure", err)
    def addError(self, test, err):
        super().addError(test, err); self._note(test, "error", err)
    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test); self._note(test, "unexpected-success", "")
    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "failure" if issubclass(err[0], test.failureException) else "error"
            self._note(test, kind, err)

runner = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0, resultclass=Result)
loader = unittest.defaultTestLoader
results = []

def run_unittest(*classes):
    """Stand-in for test.support.run_unittest, for modules whose test_main()
    picks the classes to run (test_decimal runs its C and Python variants)."""
    suite = unittest.TestSuite()
    for item in classes:
        if isinstance(item, str):
            suite.addTest(loader.loadTestsFromModule(sys.modules[item]))
        elif isinstance(item, (unittest.TestSuite, unittest.TestCase)):
            suite.addTest(item)
        else:
            suite.addTest(loader.loadTestsFromTestCase(item))
    results.append(runner.run(suite))

def report(data):
    out = sys.__stdout__
    out.write("\n" + MARKER + json.dumps(data) + "\n")
    out.flush()

try:
    module = importlib.import_module(NAME)
except unittest.SkipTest as exc:
    report({"load": "module-skip", "reason": str(exc)[:300]})
    raise SystemExit(0)
except BaseException as exc:
    report({"load": "import-error",
            "reason": last_line("".join(traceback.format_exception_only(type(exc), exc)))})
    raise SystemExit(0)

try:
    if hasattr(module, "test_main") and not hasattr(module, "load_tests"):
        test.support.run_unittest = run_unittest
        module.run_unittest = run_unittest
        module.test_main()
    else:
        results.append(runner.run(loader.loadTestsFromName(NAME)))
except unittest.SkipTest as exc:
    if not results:
        report({"load": "module-skip", "reason": str(exc)[:300]})
        raise SystemExit(0)
except BaseException as exc:
    if not results:
        report({"load": "import-error",
                "reason": last_line("".join(traceback.format_exception_only(type(exc), exc)))})
        raise SystemExit(0)

problems = {}
for r in results:
    problems.update(r.problems)
kinds = [kind for kind, _ in problems.values()]
report({
    "load": "ok",
    "run": sum(r.testsRun for r in results),
    "passed": sum(r.passed for r in results),
    "failures": kinds.count("failure") + kinds.count("unexpected-success"),
    "errors": kinds.count("error"),
    "skipped": sum(len(r.skipped) for r in results),
    "expected_failures": sum(len(r.expectedFailures) for r in results),
    "skip_reasons": collections.Counter(str(reason)[:120] for r in results
                                        for _, reason in r.skipped).most_common(8),
    "problems": sorted(([tid] + v for tid, v in problems.items()))[:80],
})
'''

ABNORMAL = {"trap", "crash", "timeout", "cpu-limit", "memory-limit", "output-limit",
            "disk-limit", "session-error", "host-timeout", "no-result", "run-error"}


def run_module(capsule, image, module, timeout):
    options = {"module": module,
               "socket_bypass": module.split(".")[0] in SOCKET_GATE_BYPASS}
    code = GUEST_PROGRAM % {"options": repr(options), "marker": MARKER}
    command = [capsule, "run", "--json", "--timeout", str(timeout), "--memory", "1G",
               "--max-output", "64M", "--image", f"{image}:/tests", "-c", code]
    row = {"module": module}
    started = time.monotonic()
    try:
        completed = subprocess.run(command, capture_output=True, timeout=timeout + 60, cwd=ROOT)
    except subprocess.TimeoutExpired:
        row.update(status="host-timeout", seconds=float(timeout + 60),
                   reason=f"no answer from capsule after {timeout + 60} s")
        return row
    row["seconds"] = round(time.monotonic() - started, 1)
    try:
        result = json.loads(completed.stdout)
    except ValueError:
        row.update(status="no-result",
                   reason=(completed.stderr.decode(errors="replace").strip() or
                           f"capsule exited {completed.returncode}, no JSON")[-300:])
        return row
    counts = None
    for line in (result.get("stdout") or "").splitlines():
        if line.startswith(MARKER):
            counts = json.loads(line[len(MARKER):])
    if counts is None:
        # The guest never reported: a limit, a trap, or an exception that
        # escaped the harness.  capsule's status says which.
        status = result.get("status", "no-result")
        row.update(status=status if status != "success" else "no-result",
                   reason=((result.get("error") or "").strip().splitlines() or [""])[-1][:300])
        return row
    load = counts.pop("load")
    if load != "ok":
        row.update(status=load, reason=counts.get("reason", ""))
        return row
    row.update(counts)
    if result.get("status") != "success":
        # Counts were printed, but the process then ended badly.
        row["status"] = result.get("status")
        row["reason"] = ((result.get("error") or "").strip().splitlines() or [""])[-1][:300]
    else:
        row["status"] = "ok" if row["failures"] + row["errors"] == 0 else "FAIL"
    return row


def loaded(row):
    return "run" in row


def summarize(rows):
    totals = {key: sum(row.get(key, 0) for row in rows)
              for key in ("run", "passed", "failures", "errors", "skipped", "expected_failures")}
    totals["modules"] = len(rows)
    totals["loaded"] = sum(1 for row in rows if loaded(row))
    totals["seconds"] = round(sum(row.get("seconds", 0) for row in rows), 1)
    return totals


COLUMNS = ("module", "run", "passed", "failed", "errors", "skipped", "status", "seconds")


def table_cells(row):
    if loaded(row):
        return [row["module"], row["run"], row["passed"], row["failures"], row["errors"],
                row["skipped"], row["status"], row.get("seconds", "-")]
    return [row["module"], "-", "-", "-", "-", "-", row["status"], row.get("seconds", "-")]


def print_table(rows, wall):
    widths = (36, 6, 6, 6, 6, 7, 12, 7)
    def fmt(cells):
        out = []
        for i, (cell, width) in enumerate(zip(cells, widths)):
            out.append(f"{cell!s:<{width}}" if i in (0, 6) else f"{cell!s:>{width}}")
        return " ".join(out)
    header = fmt(COLUMNS)
    print(header)
    print("-" * len(header))
    for row in rows:
        line = fmt(table_cells(row))
        if not loaded(row) or row["status"] in ABNORMAL:
            line += "  " + (row.get("reason") or "")[:80]
        print(line)
    totals = summarize(rows)
    print("-" * len(header))
    print(fmt(["total", totals["run"], totals["passed"], totals["failures"], totals["errors"],
               totals["skipped"], f"{totals['loaded']}/{totals['modules']} ran",
               totals["seconds"]]))
    print(f"wall clock {wall:.1f} s")


def read_baseline(path):
    path = pathlib.Path(path)
    if not path.exists():
        return {"min_passed": {}, "imports": []}
    return json.loads(path.read_text())


def check(rows, baseline):
    """Problems that make --check fail; an empty list means no regression."""
    minimums = baseline.get("min_passed", {})
    must_load = set(baseline.get("imports", []))
    problems = []
    for row in rows:
        module = row["module"]
        if row["status"] in ABNORMAL:
            problems.append(f"{module}: run ended with '{row['status']}': {row.get('reason', '')}")
        if module in must_load and not loaded(row):
            if row["status"] not in ABNORMAL:
                problems.append(f"{module}: loaded before, now {row['status']}: "
                                f"{row.get('reason', '')}")
        elif loaded(row) and module in minimums and row["passed"] < minimums[module]:
            problems.append(f"{module}: {row['passed']} passed, baseline minimum "
                            f"{minimums[module]}")
    return problems


def notes(rows, baseline):
    """Not failures, but worth a look: modules without a baseline entry, and
    modules that now pass more than their minimum (time to raise it)."""
    minimums = baseline.get("min_passed", {})
    out = []
    for row in rows:
        if not loaded(row) or row["status"] in ABNORMAL:
            continue
        if row["module"] not in minimums:
            out.append(f"{row['module']}: not in the baseline ({row['passed']} passed)")
        elif row["passed"] > minimums[row["module"]] + SLACK.get(row["module"], 0):
            out.append(f"{row['module']}: {row['passed']} passed, baseline minimum "
                       f"{minimums[row['module']]} (improved; --write-baseline to record)")
    return out


def new_baseline(rows, old):
    minimums = dict(old.get("min_passed", {}))
    imports = set(old.get("imports", []))
    for row in rows:
        module = row["module"]
        if loaded(row) and row["status"] not in ABNORMAL:
            minimums[module] = max(0, row["passed"] - SLACK.get(module, 0))
            imports.add(module)
        else:
            minimums.pop(module, None)
            imports.discard(module)
    return {
        "comment": "Written by run_cpython_tests.py --write-baseline. min_passed: the fewest "
                   "tests each module must pass; imports: modules that must load.",
        "min_passed": dict(sorted(minimums.items())),
        "imports": sorted(imports),
    }


def explain(text):
    for index, (pattern, why) in enumerate(KNOWN):
        if re.search(pattern, text):
            return index
    return None


def write_docs(path, rows, command, wall, jobs):
    totals = summarize(rows)
    lines = [
        "# CPython's regression tests inside capsule",
        "",
        "A subset of CPython 3.11.2's own `Lib/test` (Debian's source) run inside the sandbox: "
        "each test module in its own `capsule run`, with the tests mounted read-only from "
        "`build/stdlib-tests.img` at `/tests` and loaded with plain `unittest`. "
        "`make regression-test` (also part of `make test`) checks the result against "
        "`tests/regression/baseline.json`: a module passing fewer tests than its minimum, a "
        "module that no longer loads, or any trap, crash or timeout fails the build.",
        "",
        "Produced by:",
        "",
        f"    {command}",
        "",
        f"on {datetime.date.today().isoformat()}, {os.cpu_count()} cores "
        f"({platform.machine()}), {jobs} modules at a time, {wall:.0f} s wall clock.",
        "",
        f"**{totals['passed']} of {totals['run']} tests passed**; {totals['failures']} failed, "
        f"{totals['errors']} errors, {totals['skipped']} skipped, "
        f"{totals['expected_failures']} expected failures; {totals['loaded']} of "
        f"{totals['modules']} modules loaded.",
        "",
        "`failed` and `errors` count tests (a test with several failing subtests counts once); "
        "`passed` counts tests that ran to success. `seconds` is the whole sandbox run, "
        "including start-up and import.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|--:|--:|--:|--:|--:|---|--:|",
    ]
    for row in rows:
        cells = [str(c) for c in table_cells(row)]
        if not loaded(row):
            cells[6] += ": " + (row.get("reason") or "").replace("|", "/")[:90]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| **total** | {run} | {passed} | {failures} | {errors} | {skipped} | "
                 "{loaded}/{modules} loaded | {seconds} |".format(**totals))

    # Group every failing test and every module that did not load by its
    # explanation.
    groups = {}
    for row in rows:
        if not loaded(row):
            text = f"{row['module']}: {row.get('reason', '')}"
            groups.setdefault(explain(text), []).append(
                f"`{row['module']}` ({row['status']}: {row.get('reason', '')[:100]})")
            continue
        for test_id, kind, message in row.get("problems", []):
            group = explain(f"{test_id} {message}")
            groups.setdefault(group, []).append(f"`{test_id}` ({kind}: {message[:100]})")
    lines += ["", "## Known failures and why", ""]
    if not groups:
        lines.append("None: every test that ran passed or was skipped.")
    for index in sorted(groups, key=lambda i: (i is None, i if i is not None else 0)):
        items = groups[index]
        why = KNOWN[index][1] if index is not None else "**Not yet explained.**"
        lines.append(f"- {why}")
        for item in items[:12]:
            lines.append(f"  - {item}")
        if len(items) > 12:
            lines.append(f"  - ... and {len(items) - 12} more")
    reasons = {}
    for row in rows:
        for reason, count in row.get("skip_reasons", []):
            reason = re.sub(r"\s+", " ", reason)
            reasons[reason] = reasons.get(reason, 0) + count
    lines += [
        "",
        "## Skips",
        "",
        "Skipped tests skip themselves: CPython's `test.support` knows `sys.platform == "
        "\"wasi\"` and that WASI preview1 has no subprocesses, threads, signals, sockets, "
        "`fork`, users and groups, `chmod`, or (in capsule) links; others need `_testcapi`, "
        "`bz2`/`lzma`, or are for Windows/macOS. The most common reasons given (counted over "
        "each module's eight most common):",
        "",
        "| tests | reason |",
        "|--:|---|",
    ]
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:20]:
        lines.append(f"| {count} | {reason.replace('|', '/')} |")
    lines += [
        "",
        "Left out of the subset: `test_zipfile64` (23 s for 4 tests, two of which need a "
        "larger scratch disk); `test_threading`, `test_queue`, `test_subprocess`, "
        "`test_socket`, `test_select`, `test_signal`, `test_concurrent_futures`, "
        "`test_mailbox`, `test_urllib*` (skip themselves as a whole in WASI); `test_bz2`, "
        "`test_lzma` (modules not built); `test_unittest` (`unittest.test` is not in the stdlib "
        "image). No module was dropped for being slow: the slowest takes about 20 s.",
        "",
        "## How the harness adapts the tests",
        "",
        "- `test.support.has_no_debug_ranges()` asks `_testinternalcapi`, which is not "
        "built; the harness answers from `compile(...).co_positions()` instead, otherwise "
        "`test_traceback`, `test_compile`, `test_dis`, `test_code` and `test_marshal` skip "
        "themselves entirely at import.",
        "- `test_asyncio`, `test_asyncgen` and `test_contextlib_async` gate the whole module on "
        "`requires_working_socket(module=True)` because asyncio's event loop needs a socket "
        "pair on other WASI runtimes; it works in capsule, so that module-wide gate is lifted "
        "(tests that really need sockets still skip or fail). Only asyncio submodules that need "
        "neither sockets nor threads are in the subset.",
        "- Modules whose `test_main()` chooses the test classes (e.g. `test_decimal`) are run "
        "through it, with `run_unittest` replaced to count results.",
    ]
    pathlib.Path(path).write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capsule", default=str(ROOT / "build" / "capsule"))
    parser.add_argument("--image", default=str(ROOT / "build" / "stdlib-tests.img"))
    parser.add_argument("--timeout", type=int, default=600,
                        help="seconds per module (sandbox limit; the host waits 60 s more)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 on a regression against baseline.json")
    parser.add_argument("--write-docs", metavar="PATH")
    parser.add_argument("--write-baseline", action="store_true",
                        help="record this run's pass counts as the baseline")
    parser.add_argument("--baseline", default=str(BASELINE), metavar="PATH",
                        help="baseline file (default: tests/regression/baseline.json)")
    parser.add_argument("--json", metavar="PATH", help="also write all rows as JSON")
    parser.add_argument("--failures", action="store_true",
                        help="list every failing test with the last line of its traceback")
    parser.add_argument("modules", nargs="*", help="e.g. test_re test_asyncio.test_locks")
    args = parser.parse_args()
    modules = [m[5:] if m.startswith("test.") else m for m in args.modules] or MODULES
    for path in (args.capsule, args.image):
        if not os.path.exists(path):
            parser.error(f"{path} does not exist (run make first)")

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda m: run_module(args.capsule, args.image, m, args.timeout),
                             modules))
    wall = time.monotonic() - started
    print_table(rows, wall)
    if args.failures:
        for row in rows:
            for test_id, kind, message in row.get("problems", []):
                print(f"{kind:18} {test_id}: {message}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    if args.write_docs:
        command = " ".join(["python3", "tests/regression/run_cpython_tests.py"] +
                           [shlex.quote(a) for a in sys.argv[1:]])
        write_docs(args.write_docs, rows, command, wall, args.jobs)
    baseline = read_baseline(args.baseline)
    if args.write_baseline:
        # The default subset rewrites the file; named modules update their entries.
        baseline = new_baseline(rows, baseline if args.modules else {})
        pathlib.Path(args.baseline).write_text(json.dumps(baseline, indent=1) + "\n")
    totals = summarize(rows)
    problems = check(rows, baseline) if args.check else []
    if args.check:
        for note in notes(rows, baseline):
            print("note:", note)
    for problem in problems:
        print("REGRESSION:", problem)
    print(f"CPython regression subset: {totals['passed']} of {totals['run']} tests passed, "
          f"{totals['loaded']}/{totals['modules']} modules loaded"
          + (f"; {len(problems)} regressions against the baseline" if args.check else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
