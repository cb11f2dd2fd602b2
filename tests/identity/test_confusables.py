"""The UTS #39 skeleton and the confusables data it is computed from."""

import re
from importlib import resources

import pytest

from llero.identity.confusables import load_prototypes, skeleton


def _data_text() -> str:
    data = resources.files("llero.identity").joinpath("data", "confusables.txt")
    return data.read_text("utf-8-sig")


def test_shipped_data_is_complete_version_13() -> None:
    text = _data_text()
    declared = re.search(r"^# total: (\d+)$", text, re.MULTILINE)

    assert "# Version: 13.0.0" in text
    assert declared is not None
    assert len(load_prototypes()) == int(declared.group(1))


@pytest.mark.parametrize(
    ("lookalike", "original"),
    [
        # Spelt wholly in Cyrillic letters.
        ("\u0430\u0441\u0441\u0435\u0455\u0455", "access"),
        ("\u04bb\u043e\u0440\u0435", "hope"),
        ("\u0458\u043e\u0455\u0435", "jose"),
        # Spelt wholly in Greek letters.
        ("\u03bf\u03c1\u03b1", "opa"),
        # Cyrillic capitals that read as Latin ones.
        ("\u041a\u041e\u0422", "KOT"),
        ("rn", "m"),
        ("l", "1"),
    ],
    ids=[
        "cyrillic-access",
        "cyrillic-hope",
        "cyrillic-jose",
        "greek",
        "cyrillic-capitals",
        "rn-m",
        "l-digit-one",
    ],
)
def test_lookalikes_share_skeleton(lookalike: str, original: str) -> None:
    assert skeleton(lookalike) == skeleton(original)


@pytest.mark.parametrize(
    "invisible",
    ["\ufe0f", "\u200b", "\u3164", "\u034f", "\U000e0061", "\u00ad"],
    ids=[
        "variation-selector",
        "zero-width-space",
        "hangul-filler",
        "grapheme-joiner",
        "tag",
        "soft-hyphen",
    ],
)
def test_default_ignorables_removed(invisible: str) -> None:
    assert skeleton(f"ad{invisible}min") == skeleton("admin")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("\u0438\u0432\u0430\u043d", "ivan"),
        ("\u043d\u0430\u0442\u0430\u043b\u044c\u044f", "natalya"),
        ("\u03b5\u03bb\u03b5\u03bd\u03b7", "eleni"),
        ("L", "I"),
        ("o", "0"),
    ],
    ids=["cyrillic-ivan", "cyrillic-natalya", "greek-eleni", "capital-l-i", "o-zero"],
)
def test_different_looking_strings_keep_different_skeletons(first: str, second: str) -> None:
    assert skeleton(first) != skeleton(second)


def test_skeleton_is_in_nfd() -> None:
    # "é" composed and decomposed read alike and must not give two skeletons.
    assert skeleton("caf\u00e9") == skeleton("cafe\u0301")
