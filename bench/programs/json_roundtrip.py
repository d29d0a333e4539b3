# json.dumps / json.loads round trip of a deterministic ~1 MB document, 10 times.
import hashlib
import json
import time

ROUNDS = 10
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
         "iota", "kappa", "lambda", "mu", "Grüße", "naïve", "日本語", "emoji \u2603"]


def lcg(seed):
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        yield state >> 33


def build():
    rnd = lcg(12345)
    records = []
    for i in range(3300):
        r = [next(rnd) for _ in range(8)]
        records.append({
            "id": i,
            "name": "user-%05d %s" % (i, WORDS[r[0] % len(WORDS)]),
            "active": bool(r[1] & 1),
            "score": (r[2] % 1000000) / 997.0,
            "balance": -(r[3] % 100000) / 100.0,
            "parent": None if i % 7 == 0 else i // 2,
            "tags": [WORDS[(r[4] + k) % len(WORDS)] for k in range(r[4] % 5)],
            "position": {"x": r[5] % 4096, "y": r[6] % 4096,
                         "history": [(r[7] >> k) % 1000 for k in range(0, 30, 5)]},
            "note": "line with \"quotes\", a backslash \\ and a tab\t #%d" % r[7],
        })
    return {"version": 1, "kind": "bench", "records": records}


doc = build()
text = json.dumps(doc)
assert 900_000 <= len(text) <= 1_100_000, len(text)

t0 = time.perf_counter()
for _ in range(ROUNDS):
    s = json.dumps(doc)
    back = json.loads(s)
elapsed = time.perf_counter() - t0

assert s == text
assert back == doc
print("check json_len", len(text))
print("check json_sha256", hashlib.sha256(text.encode()).hexdigest())
print(repr(elapsed))
