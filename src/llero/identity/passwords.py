"""Password hashing with argon2id, and verification of argon2id and legacy bcrypt hashes.

One hash or verification takes a few hundred milliseconds of CPU on purpose, so code that runs on
an event loop must call the ``*_async`` variants. They run the work in a small thread pool of
their own and leave the loop free.

Passwords are normalised to Unicode NFKC before argon2id hashing, as NIST SP 800-63B-4 advises for
Unicode passwords, so the same password typed as composed or decomposed characters verifies.
Nothing else is changed: no truncation, no case folding, no trimming of spaces.
"""

import asyncio
import functools
import os
import secrets
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum

import bcrypt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from llero.errors import InvalidInput, Violation
from llero.identity.policy import MAXIMUM_LENGTH

# OWASP's Password Storage Cheat Sheet sets the floor for argon2id at 19 MiB of memory, 2 passes
# and 1 lane. Memory is what makes guessing on GPUs and ASICs expensive, so Llero takes RFC 9106's
# second recommended setting, 64 MiB and 3 passes, but with 1 lane instead of 4. One lane keeps
# each hash on one core, so concurrent sign-ins queue in the pool below instead of all slowing
# down together.
# benchmarks/identity_hashing.py measures the cost. On a shared 2-core x86-64 machine with
# argon2-cffi 25.1.0, the median of 21 runs was 226 ms to hash and 232 ms to verify.
TIME_COST = 3
MEMORY_COST_KIB = 64 * 1024
PARALLELISM = 1
HASH_LENGTH = 32
SALT_LENGTH = 16

# bcrypt reads only the first 72 bytes of a password; see _verify_bcrypt.
BCRYPT_MAX_BYTES = 72

_hasher = PasswordHasher(
    time_cost=TIME_COST,
    memory_cost=MEMORY_COST_KIB,
    parallelism=PARALLELISM,
    hash_len=HASH_LENGTH,
    salt_len=SALT_LENGTH,
    type=Type.ID,
)


def _hashing_cores() -> set[int] | None:
    """Return the cores that hashes may use: all but the first when there are several, so a
    flood of sign-ins leaves one core to the event loop. None where threads cannot be pinned.

    On two cores with both hashing, an authenticated read during 8 sign-ins in flight had a
    median of 7.9 ms (4.2 idle) and a p99 of 119 to 189 ms. With one core hashing, they were
    4.5 ms and 27 to 32 ms, and sign-ins went from 11.5 to 6.3 per second.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    return set(cores[1:]) or set(cores)


def _pin_to_hashing_cores() -> None:
    if HASHING_CORES is not None:
        # On Linux, pid 0 names the calling thread.
        os.sched_setaffinity(0, HASHING_CORES)


HASHING_CORES = _hashing_cores()
# Running more hashes at once than there are cores for them only adds latency. Each running
# hash uses MEMORY_COST_KIB of memory, so the cap of 8 also bounds memory at 512 MiB under a
# flood of sign-in requests. Requests beyond the cap wait in the pool's queue.
_POOL_SIZE = min(len(HASHING_CORES) if HASHING_CORES else os.cpu_count() or 1, 8)
_pool = ThreadPoolExecutor(
    max_workers=_POOL_SIZE, thread_name_prefix="llero-password", initializer=_pin_to_hashing_cores
)


class HashScheme(StrEnum):
    ARGON2ID = "argon2id"
    BCRYPT = "bcrypt"


class PasswordHashFormatError(ValueError):
    """A stored password hash is not an argon2id or bcrypt hash that this module can read.

    This is a fault in stored data, not in the request, so it is deliberately not a LleroError.
    It must reach the log as a server error instead of being returned as a 4xx client error.
    """


def hash_password(password: str) -> str:
    """Return an argon2id hash of the NFKC form of ``password``, in the PHC string format.

    Raises InvalidInput when the password is longer than the policy maximum or contains a lone
    surrogate, which UTF-8 cannot encode. Callers check the full password policy before hashing.
    """
    normalised = unicodedata.normalize("NFKC", password)
    problem = _unhashable_reason(normalised)
    if problem is not None:
        raise InvalidInput(f"password {problem}", details=[Violation("password", problem)])
    return _hasher.hash(normalised)


def verify_password(password: str, password_hash: str) -> bool:
    """Return whether ``password`` matches ``password_hash``, an argon2id or bcrypt hash.

    Raises PasswordHashFormatError when ``password_hash`` is in neither format or is malformed.
    """
    scheme = hash_scheme(password_hash)
    if scheme is HashScheme.BCRYPT:
        return _verify_bcrypt(password, password_hash)
    return _verify_argon2id(password, password_hash)


def needs_rehash(password_hash: str) -> bool:
    """Return whether the caller should store a fresh hash after the next successful sign-in.

    True for every bcrypt hash and for argon2id hashes made with other parameters than the
    current ones. Raises PasswordHashFormatError when the scheme is unknown or the argon2id
    parameters cannot be read; only ``verify_password`` checks the salt and digest.
    """
    if hash_scheme(password_hash) is HashScheme.BCRYPT:
        return True
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError) as error:
        raise PasswordHashFormatError("argon2id password hash is malformed") from error


def hash_scheme(password_hash: str) -> HashScheme:
    """Return the scheme of a stored hash, or raise PasswordHashFormatError."""
    if password_hash.startswith("$argon2id$"):
        return HashScheme.ARGON2ID
    # $2x$ marks hashes from a crypt_blowfish version that mishandled 8-bit characters, so a
    # verification against it cannot be trusted; those deployments must reset the password.
    if password_hash.startswith(("$2a$", "$2b$", "$2y$")):
        return HashScheme.BCRYPT
    raise PasswordHashFormatError("password hash is neither argon2id nor bcrypt")


def verify_password_without_account(password: str) -> bool:
    """Spend the time of one argon2id verification and return False.

    Sign-in calls this when no account has the given email, so that a missing account takes as
    long to reject as a wrong password and response times do not reveal which emails exist.
    """
    _verify_argon2id(password, _dummy_hash())
    return False


async def hash_password_async(password: str) -> str:
    """Run ``hash_password`` in the password thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, hash_password, password)


async def verify_password_async(password: str, password_hash: str) -> bool:
    """Run ``verify_password`` in the password thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, verify_password, password, password_hash)


async def verify_password_without_account_async(password: str) -> bool:
    """Run ``verify_password_without_account`` in the password thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, verify_password_without_account, password)


@functools.cache
def _dummy_hash() -> str:
    # A hash of a random value at the current parameters; no password can match it in practice.
    return _hasher.hash(secrets.token_urlsafe(32))


def _unhashable_reason(normalised: str) -> str | None:
    if len(normalised) > MAXIMUM_LENGTH:
        return f"is longer than {MAXIMUM_LENGTH} characters"
    try:
        normalised.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate, which is not a character"
    return None


def _verify_argon2id(password: str, password_hash: str) -> bool:
    # A password that hash_password would reject can match no stored hash.
    normalised = unicodedata.normalize("NFKC", password)
    if _unhashable_reason(normalised) is not None:
        return False
    try:
        return _hasher.verify(password_hash, normalised)
    except VerifyMismatchError:
        return False
    except (InvalidHashError, VerificationError) as error:
        raise PasswordHashFormatError("argon2id password hash is malformed") from error


def _verify_bcrypt(password: str, password_hash: str) -> bool:
    # The bytes are the password as given, without NFKC, because bcrypt deployments usually
    # hashed what the user typed. On success the caller replaces this hash with argon2id anyway.
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:
        return False

    # bcrypt reads only the first 72 bytes. Libraries before pyca/bcrypt 5.0 silently dropped
    # the rest, so every password sharing those 72 bytes would verify, and a long passphrase
    # would fall to anyone who learns its first 72 bytes. bcrypt 5.0 raises ValueError instead.
    # Checking here keeps the rule independent of the library version. The cost: a user whose
    # legacy system hashed a longer password truncated cannot sign in with it and must reset it.
    if len(encoded) > BCRYPT_MAX_BYTES:
        return False

    try:
        return bcrypt.checkpw(encoded, password_hash.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as error:
        raise PasswordHashFormatError("bcrypt password hash is malformed") from error
