# sum() over a generator expression: loop + generator resume per item.
import time

N = 3_000_000


def work(n):
    return sum(i * i for i in range(n))


t0 = time.perf_counter()
result = work(N)
elapsed = time.perf_counter() - t0
assert result == (N - 1) * N * (2 * N - 1) // 6, result
print("check sum_sq", result)
print(repr(elapsed))
