"""SQL is built with bound parameters only: no source file formats text into a statement, and
hostile values round-trip through the ORM as plain data."""

import ast
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from llero.forge.models import Category
from llero.storage.db import Database

SOURCE_DIR = Path(__file__).resolve().parents[2] / "src" / "llero"

# Calls whose first argument is SQL text.
SQL_CALLS = frozenset(
    {"text", "literal_column", "execute", "executemany", "executescript", "exec_driver_sql"}
)


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _is_formatted_text(node: ast.expr) -> bool:
    """Return True for f-strings, ``%`` or ``+`` on strings, and ``str.format`` calls."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        operands = (node.left, node.right)
        return any(
            isinstance(operand, ast.JoinedStr)
            or (isinstance(operand, ast.Constant) and isinstance(operand.value, str))
            or _is_formatted_text(operand)
            for operand in operands
        )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "format"
    return False


def formatted_sql(source: str, filename: str) -> list[str]:
    """Return ``file:line`` for each SQL call whose statement is built by string formatting."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call) or _called_name(node) not in SQL_CALLS or not node.args:
            continue
        if _is_formatted_text(node.args[0]):
            found.append(f"{filename}:{node.lineno}")
    return found


def test_no_sql_built_by_formatting() -> None:
    files = sorted(SOURCE_DIR.rglob("*.py"))
    found = [
        location
        for path in files
        for location in formatted_sql(path.read_text(), str(path.relative_to(SOURCE_DIR)))
    ]

    assert found == []
    # The scan must cover the package, or the check above proves nothing.
    assert SOURCE_DIR / "storage" / "db.py" in files


@pytest.mark.parametrize(
    "statement",
    [
        "connection.execute(text(f\"SELECT * FROM tools WHERE name = '{name}'\"))",
        "connection.execute(text(\"SELECT * FROM tools WHERE name = '%s'\" % name))",
        'connection.execute(text("SELECT * FROM tools WHERE name = \'" + name + "\'"))',
        'connection.exec_driver_sql("DELETE FROM tools WHERE id = {}".format(tool_id))',
        "cursor.execute(f'PRAGMA {pragma}')",
        "select(literal_column(f'{column}'))",
    ],
)
def test_formatted_sql_detected(statement: str) -> None:
    assert formatted_sql(statement, "example.py") == ["example.py:1"]


@pytest.mark.parametrize(
    "statement",
    [
        'connection.execute(text("SELECT 1"))',
        'connection.execute(text("SELECT * FROM tools WHERE name = :name"), {"name": name})',
        "session.execute(select(Tool).where(Tool.name == name))",
    ],
)
def test_bound_sql_not_flagged(statement: str) -> None:
    assert formatted_sql(statement, "example.py") == []


@pytest.mark.parametrize(
    "name",
    [
        "x'); DROP TABLE tools; --",
        "' OR '1'='1",
        "name\\'; DELETE FROM categories; --",
        "%_\\",
        '"quoted"',
    ],
)
def test_hostile_values_round_trip_as_data(database: Database, name: str) -> None:
    with database.transaction() as session:
        session.add(Category(name=name))

    with database.reader() as session:
        stored = session.scalars(select(Category.name)).all()
        matched = session.scalars(select(Category.name).where(Category.name == name)).all()

    assert stored == [name]
    assert matched == [name]
    assert {"tools", "categories"} <= set(inspect(database.engine).get_table_names())
