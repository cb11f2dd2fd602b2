"""Write docs/security/permissions.md from the permission registry and the role table.

    .venv/bin/python scripts/generate_permissions_doc.py

Run it after changing src/llero/access/permissions.py or src/llero/access/roles.py;
tests/access/test_roles.py fails while the page is stale.
"""

from pathlib import Path

from llero.access.docs import render_permissions_markdown

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "security" / "permissions.md"


def main() -> None:
    OUTPUT.write_text(render_permissions_markdown(), encoding="utf-8")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
