# Import time of a few standard library modules, measured in-process.
#
# capsule's zygote has already imported the runner's warm set (ast, json,
# re, datetime, collections, ...) before user code runs; native python has
# not.  So that both sides start from the same state, this program first
# imports the same set, then drops json, re and datetime (and their
# submodules) from sys.modules so they really are imported again.  Each module is timed on its own, in the order below (re
# first: json imports it); a module's time includes whatever it imports that
# is not loaded yet.
import sys
import time

import ast, collections, datetime, functools, itertools, json, linecache, math, os, random, re, traceback, types  # noqa: E401,F401,E501  (runner's set)

MODULES = ["re", "json", "decimal", "datetime", "pathlib"]

for name in list(sys.modules):
    if name.split(".")[0] in ("json", "re", "datetime"):
        del sys.modules[name]
for name in MODULES:
    assert name not in sys.modules, name

total = 0.0
for name in MODULES:
    t0 = time.perf_counter()
    __import__(name)
    dt = time.perf_counter() - t0
    total += dt
    print("part import_%s %r" % (name, dt))

import decimal, datetime, pathlib  # noqa: E401
assert str(decimal.Decimal(1) / decimal.Decimal(8)) == "0.125"
assert datetime.date(2024, 2, 28) + datetime.timedelta(days=1) == datetime.date(2024, 2, 29)
assert pathlib.PurePosixPath("/a/b/c.txt").suffix == ".txt"
assert json.loads(json.dumps({"a": [1]})) == {"a": [1]} and re.sub("a+", "b", "caat") == "cbt"
print("check imports", " ".join(MODULES))
print(repr(total))
