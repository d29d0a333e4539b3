# re.findall / re.sub over ~1 MB of deterministic text.
import hashlib
import re
import time

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
         "sandbox", "python", "wasm", "capsule", "benchmark", "regular",
         "expression", "Alice", "Bob", "Carol", "data", "native"]
HOSTS = ["example.com", "mail.example.org", "test.net", "corp.internal"]


def build(size):
    state = 987654321
    parts = []
    n = 0
    while n < size:
        state = (state * 1103515245 + 12345) % (1 << 31)
        kind = state % 20
        if kind == 0:
            piece = "%s.%s@%s" % (WORDS[state % 19], WORDS[(state >> 7) % 20].lower(),
                                  HOSTS[(state >> 3) % 4])
        elif kind < 4:
            piece = str(state % 100000)
        elif kind == 4:
            piece = "%d.%02d" % (state % 1000, (state >> 5) % 100)
        else:
            piece = WORDS[(state >> 4) % len(WORDS)]
        sep = "\n" if state % 13 == 0 else (", " if state % 7 == 0 else " ")
        parts.append(piece + sep)
        n += len(piece) + len(sep)
    return "".join(parts)


text = build(1_000_000)
assert 1_000_000 <= len(text) < 1_000_100, len(text)
WORD = re.compile(r"\b[A-Za-z]+\b")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")
SPACES = re.compile(r"\s+")
CAPITAL = re.compile(r"\b([A-Z])([a-z]+)\b")

t0 = time.perf_counter()
words = WORD.findall(text)
emails = EMAIL.findall(text)
numbers = NUMBER.findall(text)
squeezed = SPACES.sub(" ", text)
swapped = CAPITAL.sub(r"\2-\1", text)
masked = EMAIL.sub(lambda m: "<%d>" % len(m.group()), text)
elapsed = time.perf_counter() - t0

assert len(words) > 100_000 and len(emails) > 1_000 and len(numbers) > 10_000
assert "\n" not in squeezed and "Alice" not in swapped and "@" not in masked
digest = hashlib.sha256("\0".join([squeezed, swapped, masked]).encode()).hexdigest()
print("check counts", len(words), len(emails), len(numbers))
print("check sub_sha256", digest)
print(repr(elapsed))
