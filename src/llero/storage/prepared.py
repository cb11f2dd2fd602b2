"""Statements compiled once and run straight through the database driver.

Authentication reads one row on every request. Through ``Connection.execute`` that read took
41 us against 9.5 us through the driver (SQLite, one measurement), most of it SQLAlchemy's
per-call bookkeeping. So the statement is compiled once per engine, and its result columns are
converted with the type processors SQLAlchemy would apply. On SQLite the read runs on a
connection its thread keeps (``Database.reader_connection``). Use ``PreparedRead`` only for small
hot reads whose parameters are plain integers or strings, which the drivers take unchanged.

``PreparedStatement`` does the same for statements that must run on a given connection, in its
transaction: the three statements of an audit append, which runs on every audited action, and
the batched read that verifies the audit chain. Its parameters go through the bind processors
SQLAlchemy would apply, and a driver error is raised as SQLAlchemy's own exception type
(IntegrityError, OperationalError, ...), as ``Connection.execute`` raises it.
"""

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

if TYPE_CHECKING:
    from llero.storage.db import Database


class PreparedRead:
    """One SELECT statement, compiled for ``database``, that returns its first row or None."""

    def __init__(self, database: "Database", statement: Select[*tuple[Any, ...]]) -> None:
        self._database = database
        self._prepared = PreparedStatement(statement)

    def first(self, parameters: Mapping[str, int | str]) -> tuple[Any, ...] | None:
        """Run the statement with ``parameters`` and return its first row, converted, or None."""
        database = self._database
        compiled = self._prepared.compiled_for(database.engine.dialect)
        arguments = compiled.arguments(parameters)
        if database.is_sqlite:
            row = _first_row(database.reader_connection(), compiled.sql, arguments)
        else:
            connection = database.engine.raw_connection()
            try:
                row = _first_row(connection, compiled.sql, arguments)
            finally:
                # Returning the connection to the pool rolls back whatever the driver began.
                connection.close()
        return None if row is None else compiled.convert([row])[0]


def _first_row(connection: Any, sql: str, arguments: Any) -> Any:
    cursor = connection.cursor()
    try:
        cursor.execute(sql, arguments)
        return cursor.fetchone()
    finally:
        cursor.close()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # Bind names in the order of the driver's placeholders, or None for named placeholders.
    positions: tuple[str, ...] | None
    defaults: dict[str, Any]
    bind_processors: dict[str, Callable[[Any], Any]]
    # None when no result column needs converting, so rows are returned as the driver made them.
    result_processors: tuple[Callable[[Any], Any] | None, ...] | None

    def arguments(self, parameters: Mapping[str, Any]) -> Any:
        bound = {**self.defaults, **parameters}
        for name, process in self.bind_processors.items():
            bound[name] = process(bound[name])
        if self.positions is None:
            return bound
        return tuple(bound[name] for name in self.positions)

    def convert(self, rows: Sequence[Any]) -> list[tuple[Any, ...]]:
        processors = self.result_processors
        if processors is None:
            return list(rows)
        return [
            tuple(
                value if process is None else process(value)
                for value, process in zip(row, processors, strict=True)
            )
            for row in rows
        ]


class PreparedStatement:
    """One statement, compiled once per dialect, run on a connection inside its transaction.

    ``column_keys`` names the columns whose values every call of an INSERT or UPDATE passes, as
    ``Connection.execute`` would learn them from its parameters. A SELECT names its parameters
    with ``bindparam``. Literal values in the statement (a WHERE on a constant) are bound as
    compiled.
    """

    def __init__(self, statement: ClauseElement, column_keys: Sequence[str] = ()) -> None:
        self._statement = statement
        self._column_keys = list(column_keys)
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()

    def execute(
        self, connection: Connection, parameters: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run the statement with ``parameters`` and return its rows, or [] when it has none.

        Raises a subclass of sqlalchemy.exc.DBAPIError when the driver fails. Its message leaves
        the parameters out, because they can be personal data, but the driver's own text can
        still quote a value (PostgreSQL names the duplicate key of a unique violation).
        """
        dialect = connection.dialect
        compiled = self.compiled_for(dialect)
        arguments = compiled.arguments(parameters or {})
        driver_error: type[Exception] = dialect.loaded_dbapi.Error
        cursor = connection.connection.cursor()
        try:
            cursor.execute(compiled.sql, arguments)
            rows = [] if cursor.description is None else cursor.fetchall()
        except driver_error as error:
            # NOTE: unlike Connection.execute, this does not invalidate a connection the
            # database dropped. The rollback that follows fails on it and SQLAlchemy discards it
            # then, or the pool's pre-ping does on the next checkout.
            raise DBAPIError.instance(
                compiled.sql, None, error, driver_error, hide_parameters=True, dialect=dialect
            ) from error
        finally:
            cursor.close()
        return compiled.convert(rows)

    def compiled_for(self, dialect: Dialect) -> "_Compiled":
        """Return the statement compiled for ``dialect``, compiling it on first use."""
        compiled = self._compiled.get(dialect)
        if compiled is None:
            compiled = self._compiled[dialect] = self._compile(dialect)
        return compiled

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._statement.compile(dialect=dialect, column_keys=self._column_keys)
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"{type(compiled).__name__} is not a SQL statement compiler")
        defaults: dict[str, Any] = {}
        processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                # A value that every call passes, converted on every call.
                if process is not None:
                    processors[name] = process
                continue
            # A literal of the statement itself, converted here once.
            value = bind.effective_value
            defaults[name] = value if process is None or value is None else process(value)
        return _Compiled(
            sql=str(compiled),
            positions=tuple(compiled.positiontup or ()) if dialect.positional else None,
            defaults=defaults,
            bind_processors=processors,
            result_processors=_result_processors(self._statement, dialect),
        )


def _result_processors(
    statement: ClauseElement, dialect: Dialect
) -> tuple[Callable[[Any], Any] | None, ...] | None:
    columns = getattr(statement, "exported_columns", ())
    processors = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
    )
    return processors if any(processors) else None
