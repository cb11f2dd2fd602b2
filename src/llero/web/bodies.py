"""Checks on raw request bodies that must run before a JSON parser recurses into them."""

import re

_STRUCTURE = re.compile(rb'[\[\]{}"\\]')


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Return True when ``body`` nests arrays and objects more than ``limit`` levels deep.

    Python's json module recurses once per level, so a body nested 10,000 deep would exhaust the
    stack inside the parser. Brackets inside strings do not count.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False

    depth = 0
    in_string = False
    skip_to = -1
    for match in _STRUCTURE.finditer(body):
        position = match.start()
        if position < skip_to:
            continue
        token = match.group()
        if in_string:
            if token == b"\\":
                skip_to = position + 2
            elif token == b'"':
                in_string = False
            continue
        if token == b'"':
            in_string = True
        elif token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False
