"""Measure how many access tokens per second one process signs and verifies, EdDSA and HS256.

Run: .venv/bin/python benchmarks/identity_tokens.py [--iterations N]

Each rate is the best of three rounds of N operations through AccessTokenService, so it includes
Llero's header and claim checks, not only the signature. Verification uses one token per round,
and a per-user not-before lookup that returns None, as a request with no revocation would.
"""

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from llero.config.keyfiles import create_key_files
from llero.identity.opaque import issue_personal_api_token, parse_personal_api_token
from llero.identity.tokens import (
    AccessTokenService,
    HmacTokenKey,
    TokenPolicy,
    load_signing_key_ring,
)

ROUNDS = 3


def best_rate(operation: Callable[[], object], iterations: int) -> float:
    """Return the highest operations per second over ROUNDS rounds of ``iterations`` calls."""
    best = 0.0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(iterations):
            operation()
        elapsed = time.perf_counter() - start
        best = max(best, iterations / elapsed)
    return best


def measure_service(name: str, service: AccessTokenService, iterations: int) -> None:
    token = service.issue_access_token(subject="user-1", role="member").token.reveal()
    assert service.verify_access_token(token).subject == "user-1"

    sign = best_rate(
        lambda: service.issue_access_token(subject="user-1", role="member"), iterations
    )
    verify = best_rate(
        lambda: service.verify_access_token(token, not_before_for=lambda subject: None), iterations
    )
    print(f"{name:<8} sign {sign:>10,.0f}/s   verify {verify:>10,.0f}/s")


def measure_api_token_parse(iterations: int) -> None:
    token = issue_personal_api_token().token.reveal()
    parse = best_rate(lambda: parse_personal_api_token(token), iterations)
    print(
        f"{'PAT':<8} issue {best_rate(issue_personal_api_token, iterations):>9,.0f}/s   "
        f"parse  {parse:>10,.0f}/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000, help="operations per round")
    arguments = parser.parse_args()

    policy = TokenPolicy(issuer="https://llero.example.com", audience="llero-api")
    with tempfile.TemporaryDirectory() as directory:
        keys_dir = Path(directory) / "keys"
        create_key_files(keys_dir)
        eddsa = AccessTokenService(policy, load_signing_key_ring(keys_dir))
    hs256 = AccessTokenService(policy, HmacTokenKey(os.urandom(32)))

    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{arguments.iterations} operations per round, best of {ROUNDS}, one thread"
    )
    measure_service("EdDSA", eddsa, arguments.iterations)
    measure_service("HS256", hs256, arguments.iterations)
    measure_api_token_parse(arguments.iterations)


if __name__ == "__main__":
    main()
