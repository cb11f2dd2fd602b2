"""Checks on raw request bodies that must run before a JSON parser recurses into them."""

import re
from collections.abc import Iterable
from itertools import accumulate

# A string from its opening quote to its closing quote, or to the end of an unterminated body.
# The possessive quantifiers keep the scan linear: each byte is read once, and a quote that opens
# a string is always consumed by one match, so no match is retried from inside a string.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_DEPTH_STEP = [0] * 256
for _opener in b"[{":
    _DEPTH_STEP[_opener] = 1
for _closer in b"]}":
    _DEPTH_STEP[_closer] = -1


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Return True when ``body`` nests arrays and objects more than ``limit`` levels deep.

    Python's json module recurses once per level, so a body nested 10,000 deep would exhaust the
    stack inside the parser. Brackets inside strings do not count. The middleware runs this on
    the event loop for every body before any authentication, so the per-byte work is left to
    ``re``, ``bytes.translate`` and ``itertools.accumulate``, which run in C, instead of a Python
    loop over each bracket.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets), initial=0)) > limit


_ESCAPED_NUL = re.compile(rb"(\\+)u0000")


def json_has_nul(body: bytes) -> bool:
    """Return True when a JSON text contains the escaped NUL character ``\\u0000``.

    PostgreSQL text cannot hold NUL and SQLite truncates some functions at it, so no stored text
    may contain it. A raw NUL byte is already invalid JSON; only the escape needs finding, and it
    counts only when the backslash before ``u0000`` is not itself escaped.
    """
    return any(len(match.group(1)) % 2 == 1 for match in _ESCAPED_NUL.finditer(body))


# The maximum length of a key or parameter name in an error's field path.
_PATH_PART_MAX = 64


def nameable(part: str) -> bool:
    """Return whether ``part``, a key or parameter name from the request, may appear in an
    error's field path: at most _PATH_PART_MAX characters, none of them a control character."""
    return len(part) <= _PATH_PART_MAX and part.isprintable()


def nul_field(value: object) -> str:
    """Return the path of the first string in a parsed JSON ``value`` that contains NUL, such as
    ``body.messages.0.content``. A key that contains NUL is located by its object's path.

    One pass over ``value``: a large, deeply nested body is walked once, not once per level.
    """
    parts: list[str] = []
    _find_nul(value, parts)
    named: list[str] = ["body"]
    for part in parts:
        # A key that cannot be named ends the path at its object.
        if not nameable(part):
            break
        named.append(part)
    return ".".join(named)


def _find_nul(value: object, parts: list[str]) -> bool:
    """Return True when ``value`` contains NUL, leaving in ``parts`` the keys down to it."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        items: Iterable[tuple[object, object]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return False
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return True
        parts.append(str(key))
        if _find_nul(item, parts):
            return True
        parts.pop()
    return False
