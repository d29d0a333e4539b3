# A first program for capsule: it runs inside CPython 3.11 compiled to
# WebAssembly, with no access to the host's files, network or environment.
import json, platform, sys, zlib, sqlite3

print(f"Hello from Python {platform.python_version()} on {sys.platform}")
data = json.dumps({"squares": [n * n for n in range(10)]}).encode()
print(f"zlib round trip ok: {zlib.decompress(zlib.compress(data)) == data}")
db = sqlite3.connect(":memory:")
print("sqlite says:", db.execute("select sqlite_version(), 6 * 7").fetchone())
sum(n * n for n in range(1000))
