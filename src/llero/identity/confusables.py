"""The confusable skeleton of Unicode Technical Standard #39, which look-alike strings share.

``skeleton`` maps each character to the prototype that UTS #39's confusables.txt gives it, so
"access" in Latin letters and the same word in Cyrillic ones (U+0430 U+0441 U+0441 U+0435 U+0455
U+0455) have the same skeleton. Llero ships confusables.txt of UTS #39 version 13.0.0 in data/
(see data/README.md). A skeleton is only for comparing two strings. It also joins some distinct
Latin strings, such as "m" and "rn" or "l" and "1".
"""

import functools
import unicodedata
from importlib import resources

_CONFUSABLES_FILE = "confusables.txt"

# Default_Ignorable_Code_Point of DerivedCoreProperties.txt, Unicode 15.0.0: invisible characters
# (joiners, variation selectors, Hangul fillers, tags). UTS #39 removes them before mapping since
# its version 15.1.0, so "admin" followed by a variation selector has the skeleton of "admin".
_DEFAULT_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def skeleton(text: str) -> str:
    """Return the UTS #39 skeleton of ``text``.

    The steps are those of UTS #39 section 4: NFD, removal of default ignorable code points,
    replacement of each character by its prototype, and NFD again.
    """
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", decomposed.translate(_skeleton_table()))


@functools.cache
def load_prototypes() -> dict[int, str]:
    """Return confusables.txt as a map from a code point to its prototype, read once."""
    data = resources.files("llero.identity").joinpath("data", _CONFUSABLES_FILE)
    # The file starts with a byte order mark, which utf-8-sig drops.
    text = data.read_text("utf-8-sig")

    prototypes: dict[int, str] = {}
    for line in text.splitlines():
        # A data line is "source ; prototype ; MA # comment", in hexadecimal code points.
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 2:
            continue
        source = int(fields[0], 16)
        prototypes[source] = "".join(chr(int(point, 16)) for point in fields[1].split())
    return prototypes


@functools.cache
def _skeleton_table() -> dict[int, str | None]:
    """Return the str.translate table that removes default ignorables and maps the rest."""
    table: dict[int, str | None] = dict(load_prototypes())
    for first, last in _DEFAULT_IGNORABLE_RANGES:
        table.update(dict.fromkeys(range(first, last + 1)))
    return table
