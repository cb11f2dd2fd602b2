"""``json_depth_exceeds`` against a reference that parses the JSON and measures it."""

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llero.web.bodies import json_depth_exceeds

# Characters that matter to a scanner: brackets, quotes and backslashes inside strings, plus
# multi-byte UTF-8 so byte offsets and character offsets differ.
TRICKY_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\/ a\n\t\u00e9\u2028\U0001f600'), max_size=12)
TEXT = TRICKY_TEXT | st.text(max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=40,
)


def reference_depth(value: Any) -> int:
    """Nesting depth as the parser sees it: a scalar is 0, ``[]`` is 1, ``[[1]]`` is 2."""
    if isinstance(value, list):
        return 1 + max((reference_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((reference_depth(item) for item in value.values()), default=0)
    return 0


@given(
    value=JSON_VALUES,
    limit=st.integers(min_value=0, max_value=12),
    ensure_ascii=st.booleans(),
    indent=st.none() | st.integers(min_value=0, max_value=2),
)
def test_depth_check_matches_reference(
    value: Any, limit: int, ensure_ascii: bool, indent: int | None
) -> None:
    body = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent).encode()

    assert json_depth_exceeds(body, limit) == (reference_depth(value) > limit)


@given(
    text=TRICKY_TEXT,
    depth=st.integers(min_value=0, max_value=6),
    limit=st.integers(min_value=0, max_value=6),
)
def test_string_contents_never_count(text: str, depth: int, limit: int) -> None:
    value: Any = text
    for _ in range(depth):
        value = [value, {text: text}]
    body = json.dumps(value, ensure_ascii=False).encode()

    # Each level adds a list and, in its last item, a dict: depth + 1 levels in all when depth > 0.
    expected = depth + 1 if depth else 0
    assert reference_depth(value) == expected
    assert json_depth_exceeds(body, limit) == (expected > limit)


@pytest.mark.parametrize(
    ("body", "limit", "exceeds"),
    [
        (b"[]", 1, False),
        (b"[[]]", 1, True),
        (b'["[[[[[["]', 1, False),
        (b'{"{{{{": "}}}}"}', 1, False),
        (b'["\\"", [[]]]', 2, True),
        (b'["\\"[[[["]', 1, False),
        (b'["\\\\", [[]]]', 2, True),
        (b'["\\\\"]', 1, False),
        (b'"[[[[[[[[["', 0, False),
        (b"1", 0, False),
        (b"[]", 0, True),
    ],
)
def test_depth_check_cases(body: bytes, limit: int, exceeds: bool) -> None:
    assert json_depth_exceeds(body, limit) is exceeds


def test_depth_check_handles_huge_nesting_quickly() -> None:
    body = b"[" * 500_000 + b"]" * 500_000

    started = time.perf_counter()
    assert json_depth_exceeds(body, 32) is True
    # Loose bound, far above the few milliseconds it takes: the check must not be quadratic.
    assert time.perf_counter() - started < 2.0


def test_depth_check_scans_long_flat_body_quickly() -> None:
    body = json.dumps({"items": ["[{" * 50] * 20_000}).encode()

    started = time.perf_counter()
    assert json_depth_exceeds(body, 32) is False
    assert time.perf_counter() - started < 2.0
