"""A helper for the compare-and-set updates that make codes and tokens single-use."""

from typing import Any, cast

from sqlalchemy import CursorResult, Update
from sqlalchemy.orm import Session


def changed_rows(session: Session, statement: Update) -> int:
    """Run an UPDATE without syncing loaded objects and return how many rows it changed.

    Loaded objects keep their old values, so callers refresh or reload what they read after.
    """
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount)
