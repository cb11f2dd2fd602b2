"""Measure the cost of one rate limit check, in memory and in the Redis on 127.0.0.1:6379.

Run: .venv/bin/python benchmarks/ratelimit.py [--checks N]

Each check is one ``RateLimiter.hit`` of a fresh identity against one limit, as a request pays
for its address counter (an authenticated request pays twice: address, then user or token).
The limit is high enough that no check is refused. Each figure is the best of three rounds. The
Redis keys are removed afterwards by their prefix.
"""

import argparse
import os
import secrets
import time

import redis
from limits import parse_many

from llero.web.ratelimit import Counter, RateLimiter, RateLimitPolicy, RouteGroup

ROUNDS = 3
REDIS_URL = "redis://127.0.0.1:6379/0"


def measure(storage_uri: str, checks: int, prefix: str) -> float:
    """Return the best mean time of one check in microseconds."""
    limit = tuple(parse_many(f"{checks * ROUNDS + 1}/hour"))
    policy = RateLimitPolicy(per_address=limit, groups=dict.fromkeys(RouteGroup, limit))
    limiter = RateLimiter(storage_uri, policy, key_prefix=prefix)
    best = float("inf")
    for round_number in range(ROUNDS):
        counters = [
            Counter(RouteGroup.READ, "address", f"198.51.100.{round_number}.{index % 250}")
            for index in range(checks)
        ]
        start = time.perf_counter()
        for counter in counters:
            limiter.hit(counter, limit)
        best = min(best, (time.perf_counter() - start) / checks)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=5000, help="checks per round")
    arguments = parser.parse_args()

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load}; best of {ROUNDS} rounds")
    prefix = f"llero-bench-{secrets.token_hex(4)}"
    try:
        for name, uri in (("memory", "memory://"), ("redis", REDIS_URL)):
            print(f"  {name:<8} {measure(uri, arguments.checks, prefix):>8.1f} µs per check")
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"*{prefix}*"):
            client.delete(key)
        client.close()


if __name__ == "__main__":
    main()
