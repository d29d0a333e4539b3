# The same sum as loop_gen.py as a plain for loop with integer adds, so the
# difference between the two is the generator's cost.
import time

N = 3_000_000


def work(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


t0 = time.perf_counter()
result = work(N)
elapsed = time.perf_counter() - t0
assert result == (N - 1) * N * (2 * N - 1) // 6, result
print("check sum_sq", result)
print(repr(elapsed))
