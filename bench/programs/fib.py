# fib(27), naive recursion: function calls and small-int arithmetic.
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


t0 = time.perf_counter()
result = fib(27)
elapsed = time.perf_counter() - t0
assert result == 196418, result
print("check fib27", result)
print(repr(elapsed))
