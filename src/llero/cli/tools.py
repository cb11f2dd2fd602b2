"""`llero tools`: import, export and list the tools stored in Llero's database.

The commands work on the database directly, like `llero migrate`, so the server need not run.
They never prompt; everything they need comes from options and LLERO_* settings. They act as
the operator: they see every tool, the tools they import have no owner (only admins see them
until shared), and their audit records name the system actor "cli".
"""

import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import click
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from llero.access.ownership import Caller
from llero.audit.keys import attach_keys, load_audit_keys
from llero.config.settings import Settings
from llero.errors import InvalidInput, Violation
from llero.forge import bfcl, service
from llero.forge.models import ToolStatus
from llero.storage import migrate
from llero.storage.db import Database
from llero.web.schemas import ID_MAX

CLI_CALLER = Caller.system("cli")

# Files with at least this many specs get a progress bar on standard error.
PROGRESS_MIN_SPECS = 200

NEEDS = (
    "Needs a database set up by `llero init` (LLERO_DATA_DIR, or LLERO_DATABASE_URL for "
    "PostgreSQL) at the latest migration."
)


def _settings() -> Settings:
    # Imported here because llero.cli.main imports this module to register the group.
    from llero.cli.main import settings_from  # noqa: PLC0415

    return settings_from(click.get_current_context())


def _fail(message: str) -> NoReturn:
    from llero.cli.main import fail  # noqa: PLC0415 - same reason as in _settings

    fail(message)


@contextmanager
def _transaction(settings: Settings) -> Iterator[Session]:
    """Yield a session on a migrated database; commit on success, roll back on any error.

    The session has the audit keys, so every change is recorded with it.
    """
    keys = load_audit_keys(settings.keys_dir)
    database = Database(settings.resolved_database_url)
    try:
        _check_migrated(database)
        with database.transaction() as session:
            attach_keys(session, keys)
            yield session
    finally:
        database.dispose()


def _check_migrated(database: Database) -> None:
    try:
        revision = migrate.current_revision(database.engine)
    except OperationalError as error:
        # The driver's message can contain the URL and so a password; its type is enough.
        _fail(f"cannot open the database ({type(error.orig).__name__}); check LLERO_DATABASE_URL")
    if revision != migrate.head_revision():
        _fail("the database is not at the latest migration; run `llero init` or `llero migrate`")


def _printable(text: str) -> str:
    """Return ``text`` with control characters escaped, so a name cannot drive the terminal."""
    return "".join(
        character if character.isprintable() else repr(character)[1:-1] for character in text
    )


@click.group()
def tools() -> None:
    """Import, export, list and test tools, and check BFCL ground-truth calls."""


@tools.command(name="import", epilog=NEEDS)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice([item.value for item in service.ImportFormat]),
    default=service.ImportFormat.AUTO.value,
    show_default=True,
    help="Format of the specs in FILE; auto recognises it per document.",
)
@click.option(
    "--on-conflict",
    type=click.Choice([item.value for item in service.OnConflict]),
    default=service.OnConflict.REFUSE.value,
    show_default=True,
    help="What to do with a spec whose name is taken: refuse it; skip it when identical and "
    "refuse it when different; or store it as a new version of the existing tool.",
)
@click.option(
    "--all-or-nothing",
    is_flag=True,
    help="Import nothing when any spec is refused.",
)
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="List every change import made to each spec, not only renamed tools.",
)
def import_command(
    file: Path, fmt: str, on_conflict: str, all_or_nothing: bool, verbose: bool
) -> None:
    """Import the tool specs in FILE in one transaction.

    FILE contains one JSON document (a spec, or a list of specs) or JSON lines with one
    document per line, such as a BFCL corpus file. Import maps what Llero stores differently,
    such as names that providers would reject, and the summary lists the renamed tools, the
    number of each kind of mapping, and every refused spec with its reason.

    The exit status is 1 when the import is refused as a whole, and then nothing was written.
    That happens when a line of FILE is not valid JSON, when FILE has more specs than
    LLERO_MAX_IMPORT_SPECS, when every spec was refused, and when --all-or-nothing is set and
    a spec was refused. The exit status is 2 when FILE cannot be read or a setting is invalid.
    """
    settings = _settings()
    options = service.ImportOptions(
        service.ImportFormat(fmt), service.OnConflict(on_conflict), all_or_nothing
    )
    try:
        data = file.read_bytes()
    except OSError as error:
        _fail(f"cannot read {file}: {error.strerror}")
    try:
        parsed = service.read_import(data, options.format, max_specs=settings.max_import_specs)
        with _transaction(settings) as session:
            result = _apply_with_progress(session, parsed, options)
    except service.ImportRejected as error:
        _print_report(error.result, verbose=verbose)
        _refuse_import(error.message)
    except InvalidInput as error:
        for detail in error.details:
            click.echo(f"{detail.field}: {_printable(detail.problem)}", err=True)
        _refuse_import(error.message)
    _print_report(result, verbose=verbose)


def _refuse_import(message: str) -> NoReturn:
    click.echo(f"llero: import refused: {_printable(message)}", err=True)
    sys.exit(1)


def _apply_with_progress(
    session: Session, parsed: service.ParsedImport, options: service.ImportOptions
) -> service.ImportResult:
    if parsed.size < PROGRESS_MIN_SPECS:
        return service.apply_import(session, CLI_CALLER, parsed, options)
    label = f"importing {parsed.size} specs"
    with click.progressbar(length=parsed.size, label=label, file=sys.stderr) as bar:
        return service.apply_import(session, CLI_CALLER, parsed, options, progress=bar.update)


def _print_report(result: service.ImportResult, *, verbose: bool) -> None:
    created = sum(1 for item in result.imported if item.outcome == "created")
    versioned = len(result.imported) - created
    click.echo(
        f"imported {created} new tools and {versioned} new versions; "
        f"{len(result.unchanged)} unchanged; {len(result.refused)} refused"
    )
    codes = Counter(mapping.code for item in result.imported for mapping in item.mappings)
    if codes:
        counted = ", ".join(f"{code} {count}" for code, count in sorted(codes.items()))
        click.echo(f"mappings: {counted}")
    renamed = {(item.original_name, item.name) for item in result.imported if item.original_name}
    for original_name, name in sorted(renamed):
        click.echo(f"renamed {_printable(original_name)} -> {name}")
    if verbose:
        for item in result.imported:
            for mapping in item.mappings:
                message = _printable(mapping.message)
                click.echo(f"mapped {item.name} {mapping.field}: {message}")
    for refused in result.refused:
        name = _printable(refused.name) if refused.name else "(no name)"
        click.echo(f"refused {name} ({_printable(refused.source)}): {_printable(refused.reason)}")


@tools.command(name="export", epilog=NEEDS)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([item.value for item in service.ExportFormat]),
    default=service.ExportFormat.OPENAI.value,
    show_default=True,
    help="Provider format of the exported tools.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write, created with mode 0600. [default: standard output]",
)
@click.option(
    "--category", "category_id", type=click.IntRange(1, ID_MAX), help="Only this category id."
)
@click.option(
    "--status",
    type=click.Choice([item.value for item in ToolStatus]),
    help="Only tools with this status.",
)
def export_command(
    fmt: str, output: Path | None, category_id: int | None, status: str | None
) -> None:
    """Export tools as one JSON list in a provider format.

    Exports every tool unless --category or --status narrows the selection.
    """
    settings = _settings()
    selection = service.ExportSelection(
        category_id=category_id, status=ToolStatus(status) if status else None
    )
    with _transaction(settings) as session:
        exported = service.export_tools(session, CLI_CALLER, selection, service.ExportFormat(fmt))
    text = json.dumps(exported, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    _write_private(output, text)
    click.echo(f"exported {len(exported)} tools to {output}", err=True)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, replacing a regular file but not a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags, 0o600)
    except OSError as error:
        _fail(f"cannot write {path}: {error.strerror}")
    # An existing file keeps its mode through O_CREAT, so the mode is set explicitly.
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


@tools.command(name="list", epilog=NEEDS)
@click.option("--search", help="Only tools whose name contains this text.")
@click.option(
    "--category", "category_id", type=click.IntRange(1, ID_MAX), help="Only this category id."
)
@click.option(
    "--status",
    type=click.Choice([item.value for item in ToolStatus]),
    help="Only tools with this status.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, service.LIST_LIMIT_MAX),
    default=service.LIST_LIMIT_DEFAULT,
    show_default=True,
    help="Maximum number of tools to list.",
)
@click.option("--offset", type=click.IntRange(0, ID_MAX), default=0, help="Tools to skip first.")
def list_command(
    search: str | None, category_id: int | None, status: str | None, limit: int, offset: int
) -> None:
    """List tools sorted by name: id, name, status, version and category."""
    settings = _settings()
    query = service.ToolQuery(
        search, category_id, ToolStatus(status) if status else None, limit, offset
    )
    with _transaction(settings) as session:
        page = service.list_tools(session.connection(), CLI_CALLER, query)
    for item in page.items:
        click.echo(_list_line(item))
    shown = f"{offset + 1}-{offset + len(page.items)}" if page.items else "none"
    click.echo(f"{shown} of {page.total} tools", err=True)


def _list_line(item: service.ToolSummary) -> str:
    category = _printable(item.category) if item.category else "-"
    name = _printable(item.name)
    return f"{item.id:>6}  {name:<40}  {item.status:<8}  v{item.version:<4}  {category}"


@tools.command(name="test", epilog=NEEDS)
@click.argument("name")
@click.option(
    "--arguments",
    "arguments_text",
    required=True,
    help="The call's arguments as a JSON object, or - to read them from standard input.",
)
def test_command(name: str, arguments_text: str) -> None:
    """Validate one call's arguments against the stored tool NAME.

    Prints every violation with its JSON path, such as `$.unit`, and exits 1 when there is any.
    """
    text = sys.stdin.read() if arguments_text == "-" else arguments_text
    try:
        arguments = json.loads(text)
    except json.JSONDecodeError as error:
        _fail(f"--arguments is not valid JSON: {error.msg} at line {error.lineno}")
    if not isinstance(arguments, dict):
        _fail("--arguments must be a JSON object")
    settings = _settings()
    with _transaction(settings) as session:
        result = service.test_tool(service.get_tool_by_name(session, CLI_CALLER, name), arguments)
    _print_violations(result.violations)
    if not result.ok:
        sys.exit(1)
    click.echo(f"valid call of {_printable(name)}")


def _print_violations(violations: list[Violation]) -> None:
    for violation in violations:
        click.echo(f"  {_printable(violation.field)}: {_printable(violation.problem)}")


@tools.command(name="check-answers")
@click.argument("cases", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("answers", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="Also list every call that validates.")
def check_answers_command(cases: Path, answers: Path, verbose: bool) -> None:
    """Check BFCL ground-truth calls against the specs they were written for.

    CASES is a BFCL file (JSON lines with id, question and function) and ANSWERS its
    *.answers.json file. Each case's spec is imported exactly as `llero tools import` would,
    without storing it, and the first acceptable value of every argument is validated. Prints
    each failing call with its violations and the pass rate; exits 1 when a call fails. Needs no
    database.
    """
    check = bfcl.check_answers(cases.read_bytes(), answers.read_bytes())
    for refused in check.refused:
        click.echo(f"refused  {refused.source}: {_printable(refused.reason)}")
    for missing in check.missing:
        click.echo(f"missing  case {_printable(missing)} is not in {cases.name}")
    for result in check.failed:
        click.echo(f"invalid  case {result.case_id} ({_printable(result.tool)}):")
        _print_violations(result.violations)
    if verbose:
        for result in check.passed:
            click.echo(f"valid    case {result.case_id} ({_printable(result.tool)})")
    rate = len(check.passed) / check.total if check.total else 0.0
    click.echo(
        f"{len(check.passed)} of {check.total} calls valid ({rate:.1%}); "
        f"{len(check.failed)} invalid, {len(check.refused)} specs refused at import"
    )
    if check.failed or check.missing:
        sys.exit(1)
