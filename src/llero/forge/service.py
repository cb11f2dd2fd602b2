"""Forge and Armory: tools, their versions, categories, tool tests, import and export.

Every function takes a session inside a transaction that the caller owns; nothing here commits.
A function that fails raises a domain error from ``llero.errors`` and leaves the transaction to be
rolled back, so a failed call writes nothing. Every change records its audit event in the same
transaction, so a change whose record cannot be written is rolled back with it.

Each function takes the ``Caller`` it acts for and applies ``llero.access.ownership``: a tool
the caller may not see is reported as not found, exactly as a missing id is.

Each stored version of a tool has a ``ToolVersion`` row, the current one included: creating a
tool writes version 1, and each change writes the new state as the next version. The previous
state is therefore always kept, and diff and restore treat the current version like any other.
"""

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    Integer,
    ScalarSelect,
    Select,
    Subquery,
    Text,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llero.access import sharing
from llero.access.ownership import Caller, NotOwner
from llero.audit.context import Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.barracks.models import Agent, agent_tools
from llero.errors import Conflict, InvalidInput, NotFound, Refused, Violation
from llero.forge.compiler import compile_schema
from llero.forge.formats import (
    ImportedSpec,
    ParseFailure,
    RefusedSpec,
    export_tool,
    import_specs,
    parse_documents,
)
from llero.forge.models import Category, Tool, ToolShare, ToolStatus, ToolVersion
from llero.forge.schema_import import Mapping as ImportMapping
from llero.forge.spec import Parameter, ToolSpec, dump_parameters
from llero.forge.validation import check_spec, validate_arguments
from llero.storage.base import utc_now

LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 200
# An error message names at most this many agents; the rest are counted.
AGENTS_NAMED_MAX = 10
# A rejected import lists the first invalid lines of the file, up to this many.
PARSE_FAILURES_SHOWN = 20


class ExportFormat(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    MCP = "mcp"


class ImportFormat(StrEnum):
    AUTO = "auto"  # recognised per document
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    MCP = "mcp"
    BFCL = "bfcl"


# --- Tool state -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolFields:
    """The editable state of a tool: what a version snapshot stores and what a diff compares.

    ``parameters`` are kept as ``dump_parameters`` stores them, so two states compare equal
    exactly when their stored JSON is equal.
    """

    name: str
    description: str = ""
    parameters: list[dict[str, Any]] = field(default_factory=list)
    category_id: int | None = None
    status: ToolStatus = ToolStatus.DRAFT

    @classmethod
    def of(
        cls,
        name: str,
        *,
        description: str = "",
        parameters: Sequence[Parameter] = (),
        category_id: int | None = None,
        status: ToolStatus = ToolStatus.DRAFT,
    ) -> "ToolFields":
        return cls(name, description, dump_parameters(list(parameters)), category_id, status)

    @classmethod
    def from_tool(cls, tool: Tool) -> "ToolFields":
        return cls(
            tool.name,
            tool.description,
            list(tool.parameters),
            tool.category_id,
            ToolStatus(tool.status),
        )

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> "ToolFields":
        return cls(
            str(snapshot["name"]),
            str(snapshot.get("description", "")),
            list(snapshot.get("parameters", [])),
            snapshot.get("category_id"),
            ToolStatus(snapshot.get("status", ToolStatus.DRAFT)),
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "category_id": self.category_id,
            "status": str(self.status),
            "parameters": self.parameters,
        }

    def with_changes(self, changes: Mapping[str, Any]) -> "ToolFields":
        """Return a copy with ``changes`` applied; parameters may be Parameter models or dicts."""
        known = {item.name for item in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidInput(f"unknown tool field {unknown[0]}")
        values = dict(changes)
        if "parameters" in values:
            values["parameters"] = _stored_parameters(values["parameters"])
        if "status" in values:
            values["status"] = ToolStatus(values["status"])
        return replace(self, **values)


def _stored_parameters(parameters: Iterable[Parameter | dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        item.model_dump(mode="json", exclude_defaults=True) if isinstance(item, Parameter) else item
        for item in parameters
    ]


def spec_of(tool: Tool) -> ToolSpec:
    """Return the spec of a stored tool.

    The checks of a save are not repeated, so a tool stored under older rules still loads.
    """
    return _load_spec(ToolFields.from_tool(tool))


def _load_spec(state: ToolFields) -> ToolSpec:
    try:
        return ToolSpec.model_validate(
            {"name": state.name, "description": state.description, "parameters": state.parameters}
        )
    except ValidationError as error:
        raise _invalid_spec(_violations_of(error)) from None


def _build_spec(state: ToolFields) -> ToolSpec:
    """Validate ``state`` as a tool spec and run every check a save needs.

    Raises InvalidInput with one violation per problem, each located by its field path.
    """
    spec = _load_spec(state)
    try:
        check_spec(spec)
    except InvalidInput as error:
        raise _invalid_spec(error.details or [Violation("spec", error.message)]) from None
    return spec


def _violations_of(error: ValidationError) -> list[Violation]:
    return [
        Violation(
            ".".join(str(part) for part in problem["loc"]) or "spec",
            str(problem["msg"]).removeprefix("Value error, "),
        )
        for problem in error.errors(include_input=False, include_url=False)
    ]


def _invalid_spec(problems: list[Violation]) -> InvalidInput:
    # A problem may quote part of the spec, such as a pattern, which can come from a file.
    escaped = [Violation(item.field, escape_markup(item.problem)) for item in problems]
    first = escaped[0]
    return InvalidInput(f"invalid tool spec: {first.field}: {first.problem}", details=escaped)


# --- Tools ----------------------------------------------------------------------------------


TOOL_SHARES = sharing.ShareTable(ToolShare, ToolShare.tool_id, "tool")


def get_tool(session: Session, caller: Caller, tool_id: int) -> Tool:
    """Return a tool that ``caller`` may see, or raise NotFound as for a missing id."""
    tool = session.get(Tool, tool_id)
    if tool is None or not _sees(session, caller, tool):
        raise NotFound(f"tool {tool_id} not found")
    return tool


def get_tool_to_change(
    session: Session, caller: Caller, tool_id: int, *, lock: bool = True
) -> Tool:
    """Return a tool that ``caller`` may change; ``lock`` holds its row to the transaction's end.

    Raises NotFound when the caller may not see it, and NotOwner when they see it only
    through a share.
    """
    # The category is joined for reading; PostgreSQL can lock only the tools side of that join.
    tool = session.get(Tool, tool_id, with_for_update={"of": Tool} if lock else None)
    if tool is None or not _sees(session, caller, tool):
        raise NotFound(f"tool {tool_id} not found")
    if not caller.owns(tool.owner_user_id):
        raise NotOwner("tool", tool_id)
    return tool


def _sees(session: Session, caller: Caller, tool: Tool) -> bool:
    return sharing.is_visible(session, caller, TOOL_SHARES, tool.id, tool.owner_user_id)


def _visible_tools(caller: Caller) -> ColumnElement[bool] | None:
    """Return the condition that selects the tools ``caller`` sees, or None for all of them."""
    if caller.sees_all or caller.user_id is None:
        return None if caller.sees_all else literal(False)
    return sharing.visible_clause(Tool.owner_user_id, Tool.id, TOOL_SHARES, caller.user_id)


def get_tool_by_name(session: Session, caller: Caller, name: str) -> Tool:
    """Return the tool called ``name``, or the one imported under that original name."""
    visible = _visible_tools(caller)
    conditions = [] if visible is None else [visible]
    tool = session.scalars(select(Tool).where(Tool.name == name, *conditions)).first()
    if tool is None:
        tool = session.scalars(
            select(Tool).where(Tool.original_name == name, *conditions).order_by(Tool.id)
        ).first()
    if tool is None:
        raise NotFound(f"no tool is named {name!r}")
    return tool


def create_tool(
    session: Session,
    caller: Caller,
    state: ToolFields,
    *,
    change: str = "created",
    original_name: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> Tool:
    """Store a new tool owned by ``caller`` at version 1, with its first version snapshot.

    ``detail`` is added to the audit record, such as the tool a clone was copied from.
    """
    _check_name_free(session, state.name)
    tool = _insert_tool(session, caller, state, change, original_name)
    record_as(
        session,
        caller.origin,
        AuditEvent.TOOL_CREATED,
        Target.of("tool", tool.id),
        {"name": tool.name, "version": tool.version, **(detail or {})},
    )
    return tool


def _insert_tool(
    session: Session, caller: Caller, state: ToolFields, change: str, original_name: str | None
) -> Tool:
    _build_spec(state)
    _check_category_exists(session, state.category_id)

    now = utc_now()
    tool = Tool(
        original_name=original_name,
        version=1,
        owner_user_id=caller.user_id,
        created_at=now,
        updated_at=now,
    )
    _assign(tool, state)
    session.add(tool)
    _flush(session, f"a tool named {state.name} already exists")
    _add_version(session, tool, state, change)
    return tool


def update_tool(
    session: Session,
    caller: Caller,
    tool_id: int,
    changes: Mapping[str, Any],
    *,
    expected_version: int | None = None,
) -> Tool:
    """Apply ``changes`` as a new version; a change that alters nothing writes no version."""
    tool = get_tool_to_change(session, caller, tool_id)
    if expected_version is not None and expected_version != tool.version:
        raise Conflict(
            f"tool {tool.name} is at version {tool.version}, not {expected_version}; "
            "reload it and apply the change again"
        )
    before = ToolFields.from_tool(tool)
    after = before.with_changes(changes)
    if save_version(session, caller, tool, after, "updated"):
        _record_update(session, caller, tool, before, after, change="updated")
    return tool


def _record_update(
    session: Session,
    caller: Caller,
    tool: Tool,
    before: ToolFields,
    after: ToolFields,
    *,
    change: str,
) -> None:
    changed = [
        item.name
        for item in fields(before)
        if getattr(before, item.name) != getattr(after, item.name)
    ]
    record_as(
        session,
        caller.origin,
        AuditEvent.TOOL_UPDATED,
        Target.of("tool", tool.id),
        {"change": change, "fields": changed, "version": tool.version},
    )


def save_version(
    session: Session, caller: Caller, tool: Tool, state: ToolFields, change: str
) -> bool:
    """Write ``state`` to ``tool`` as its next version; return False when nothing changed."""
    if state == ToolFields.from_tool(tool):
        return False
    _build_spec(state)
    if state.name != tool.name:
        _check_name_free(session, state.name)
    _check_category_exists(session, state.category_id)
    if state.status != ToolStatus.ACTIVE:
        _check_not_in_toolkit(session, caller, tool, f"set it to {state.status}")
    _ensure_current_snapshot(session, tool)

    _assign(tool, state)
    tool.version += 1
    tool.updated_at = utc_now()
    _add_version(session, tool, state, change)
    return True


def delete_tool(session: Session, caller: Caller, tool_id: int) -> None:
    """Delete a tool and its versions, unless an agent's toolkit contains it."""
    tool = get_tool_to_change(session, caller, tool_id)
    _check_not_in_toolkit(session, caller, tool, "delete it")
    name, version = tool.name, tool.version
    session.delete(tool)
    _flush(session, f"tool {name} was added to a toolkit meanwhile; try again")
    record_as(
        session,
        caller.origin,
        AuditEvent.TOOL_DELETED,
        Target.of("tool", tool_id),
        {"name": name, "version": version},
    )


def _check_not_in_toolkit(session: Session, caller: Caller, tool: Tool, action: str) -> None:
    """Raise Refused when an agent's toolkit contains ``tool``: toolkits hold active tools only."""
    agents = _agents_with_tool(session, tool.id)
    if agents:
        raise Refused(
            f"tool {tool.name} is in the toolkit of {_agent_list(session, caller, agents)}; "
            f"remove it from those toolkits before you {action}"
        )


def _agents_with_tool(session: Session, tool_id: int) -> Sequence[Agent]:
    return session.scalars(
        select(Agent)
        .join(agent_tools, agent_tools.c.agent_id == Agent.id)
        .where(agent_tools.c.tool_id == tool_id)
        .order_by(Agent.name)
    ).all()


def _agent_list(session: Session, caller: Caller, agents: Sequence[Agent]) -> str:
    """Name the agents that ``caller`` sees and only count the others."""
    # Imported here, because barracks imports this module.
    from llero.barracks.service import AGENT_SHARES  # noqa: PLC0415 - import cycle

    names = [
        agent.name
        for agent in agents
        if sharing.is_visible(session, caller, AGENT_SHARES, agent.id, agent.owner_user_id)
    ]
    hidden = len(agents) - len(names)
    if not names:
        return f"{hidden} agent{'s' if hidden != 1 else ''} that you cannot see"
    listed = _name_list("agent", names)
    return listed + (f" and {hidden} that you cannot see" if hidden else "")


def clone_tool(session: Session, caller: Caller, tool_id: int, name: str) -> Tool:
    """Store a copy of a tool that ``caller`` sees under a new name, as a private draft.

    The clone belongs to ``caller`` and is shared with nobody, whoever owns the source. It
    starts as a draft so that it is reviewed before any agent uses it. Its first version note
    names the tool and the version it was copied from.
    """
    source = get_tool(session, caller, tool_id)
    state = replace(ToolFields.from_tool(source), name=name, status=ToolStatus.DRAFT)
    change = f"cloned from tool {source.id} ({source.name}) version {source.version}"
    cloned_from = {"cloned_from": source.id, "cloned_version": source.version}
    return create_tool(session, caller, state, change=change, detail=cloned_from)


def _assign(tool: Tool, state: ToolFields) -> None:
    tool.name = state.name
    tool.description = state.description
    tool.parameters = state.parameters
    tool.category_id = state.category_id
    tool.status = str(state.status)


def _add_version(session: Session, tool: Tool, state: ToolFields, change: str) -> None:
    session.add(
        ToolVersion(
            tool_id=tool.id,
            version=tool.version,
            snapshot=state.snapshot(),
            change=change,
            created_at=tool.updated_at,
        )
    )
    _flush(session, f"tool {tool.name} was changed by another request; reload it and try again")
    # The category relationship is not refreshed when category_id changes; load it again on use.
    session.expire(tool, ["category"])


def _ensure_current_snapshot(session: Session, tool: Tool) -> None:
    """Store the current state of a tool whose row was written without its version snapshot.

    Rows written by the service always have one. A row inserted directly, as the list
    benchmark does, would otherwise lose its current state on the next change.
    """
    exists = session.scalar(
        select(ToolVersion.id).where(
            ToolVersion.tool_id == tool.id, ToolVersion.version == tool.version
        )
    )
    if exists is None:
        _add_version(session, tool, ToolFields.from_tool(tool), "recorded before a change")


def _check_name_free(session: Session, name: str) -> None:
    if session.scalar(select(Tool.id).where(Tool.name == name)) is not None:
        raise Conflict(f"a tool named {name} already exists")


def _check_category_exists(session: Session, category_id: int | None) -> None:
    if category_id is not None and session.get(Category, category_id) is None:
        raise InvalidInput(
            f"category_id: category {category_id} not found",
            details=[Violation("category_id", f"category {category_id} not found")],
        )


def _flush(session: Session, conflict_message: str) -> None:
    """Flush pending writes; a uniqueness or reference race becomes a Conflict, not a 500."""
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(conflict_message) from None


def _name_list(noun: str, names: list[str]) -> str:
    shown = ", ".join(escape_markup(name) for name in names[:AGENTS_NAMED_MAX])
    rest = len(names) - AGENTS_NAMED_MAX
    plural = noun if len(names) == 1 else f"{noun}s"
    return f"{plural} {shown}" + (f" and {rest} more" if rest > 0 else "")


def escape_markup(text: str) -> str:
    """Return ``text`` with <, > and & written as JSON-style escapes.

    Messages may quote names from an uploaded file. Escaped, any markup in them stays inert
    wherever a client displays the message.
    """
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


# --- Sharing --------------------------------------------------------------------------------


def list_tool_shares(session: Session, caller: Caller, tool_id: int) -> list[sharing.ShareView]:
    """Return the shares of a tool; only its owner and admins may read them."""
    get_tool_to_change(session, caller, tool_id, lock=False)
    return sharing.list_shares(session, TOOL_SHARES, tool_id)


def share_tool(
    session: Session, caller: Caller, tool_id: int, *, user_id: int | None, everyone: bool
) -> sharing.ShareView:
    """Let one user, or everyone, read the tool; only its owner and admins may share it."""
    tool = get_tool_to_change(session, caller, tool_id)
    view = sharing.add_share(
        session, TOOL_SHARES, tool.id, tool.owner_user_id, user_id=user_id, everyone=everyone
    )
    record_as(
        session,
        caller.origin,
        AuditEvent.TOOL_SHARED,
        Target.of("tool", tool.id),
        sharing.share_detail(view),
    )
    return view


def unshare_tool(session: Session, caller: Caller, tool_id: int, share_id: int) -> None:
    """Delete a share of the tool, unless an agent's owner would lose a tool of its toolkit."""
    tool = get_tool_to_change(session, caller, tool_id)
    view = sharing.remove_share(session, TOOL_SHARES, tool.id, share_id)
    stranded = [
        agent
        for agent in _agents_with_tool(session, tool.id)
        if not _sees(
            session, sharing.caller_for_owner(session, agent.owner_user_id, caller.origin), tool
        )
    ]
    if stranded:
        raise Refused(
            f"tool {tool.name} is in the toolkit of {_agent_list(session, caller, stranded)}, "
            "whose owners would lose access to it; remove it from those toolkits first"
        )
    record_as(
        session,
        caller.origin,
        AuditEvent.TOOL_UNSHARED,
        Target.of("tool", tool.id),
        sharing.share_detail(view),
    )


# --- Listing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolQuery:
    search: str | None = None
    category_id: int | None = None
    status: ToolStatus | None = None
    limit: int = LIST_LIMIT_DEFAULT
    offset: int = 0


@dataclass(frozen=True)
class ToolSummary:
    id: int
    name: str
    description: str
    category_id: int | None
    category: str | None
    status: str
    version: int
    owner_user_id: int | None


@dataclass(frozen=True)
class ToolPage:
    items: list[ToolSummary]
    total: int
    limit: int
    offset: int


SUMMARY_FIELDS = (
    "id",
    "name",
    "description",
    "category_id",
    "category",
    "status",
    "version",
    "owner_user_id",
)
# "caller" is set for a caller who sees only their own and shared tools.
FILTER_NAMES = ("search", "category_id", "status", "caller")


def list_tools(connection: Connection, caller: Caller, query: ToolQuery) -> ToolPage:
    """Return one page of the tools ``caller`` sees, sorted by name, and how many match."""
    page = json.loads(list_tools_json(connection, caller, query))
    items = [ToolSummary(**item) for item in page["items"]]
    return ToolPage(items, page["total"], page["limit"], page["offset"])


def list_tools_json(connection: Connection, caller: Caller, query: ToolQuery) -> str:
    """Return one page of the tools ``caller`` sees as the JSON text of ``ToolPage``.

    One statement selects the page, sorted by name, and counts every match. The database
    writes the JSON, because building and serialising 50 rows in Python took about three times
    as long as this statement on SQLite. The page leaves out timestamps and parameters for the
    same reason. It takes a connection, because a session and the ORM add to every read.
    """
    if not caller.sees_all and caller.user_id is None:
        raise ValueError("a caller that is not the system needs a user id")
    limit = min(max(query.limit, 1), LIST_LIMIT_MAX)
    offset = max(query.offset, 0)
    filters = _filter_values(query)
    if not caller.sees_all:
        filters["caller"] = caller.user_id
    shape = tuple(name in filters for name in FILTER_NAMES)
    statement = _page_statement(connection.dialect.name, *shape)
    items, total = connection.execute(
        statement, {**filters, "limit": limit, "offset": offset}
    ).one()
    return f'{{"items":{items},"total":{int(total)},"limit":{limit},"offset":{offset}}}'


def _filter_values(query: ToolQuery) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if query.search:
        values["search"] = f"%{_escape_like(query.search)}%"
    if query.category_id is not None:
        values["category_id"] = query.category_id
    if query.status is not None:
        values["status"] = str(query.status)
    return values


def _conditions(
    search: bool, category_id: bool, status: bool, caller: bool
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if search:
        # An imported tool is also found by the name it had before import renamed it.
        conditions.append(
            or_(
                Tool.name.ilike(bindparam("search"), escape="\\"),
                Tool.original_name.ilike(bindparam("search"), escape="\\"),
            )
        )
    if category_id:
        conditions.append(Tool.category_id == bindparam("category_id"))
    if status:
        conditions.append(Tool.status == bindparam("status"))
    if caller:
        conditions.append(
            sharing.visible_clause(
                Tool.owner_user_id, Tool.id, TOOL_SHARES, bindparam("caller", type_=Integer)
            )
        )
    return conditions


# The statements are built once per dialect and combination of filters, and take every value
# as a bound parameter, because building a select took about a third of the time of running it.
@lru_cache(maxsize=32)
def _page_statement(
    dialect: str, search: bool, category_id: bool, status: bool, caller: bool
) -> Select[Any]:
    conditions = _conditions(search, category_id, status, caller)
    page = (
        select(
            Tool.id,
            Tool.name,
            Tool.description,
            Tool.category_id,
            Category.name.label("category"),
            Tool.status,
            Tool.version,
            Tool.owner_user_id,
        )
        .outerjoin(Category, Category.id == Tool.category_id)
        .where(*conditions)
        .order_by(Tool.name)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery("page")
    )
    total = select(func.count()).select_from(Tool).where(*conditions).scalar_subquery()
    empty: ColumnElement[str] = literal_column("'[]'")
    return select(func.coalesce(_items_json(dialect, page), empty), total)


def _items_json(dialect: str, page: Subquery) -> ScalarSelect[Any]:
    """Return a subquery that aggregates the page's rows into one JSON array, in name order."""
    # The keys are cast because PostgreSQL cannot infer the type of a bound json_build_object key.
    pairs = [part for name in SUMMARY_FIELDS for part in (cast(literal(name), Text), page.c[name])]
    if dialect == "postgresql":
        aggregate = func.json_agg(aggregate_order_by(func.json_build_object(*pairs), page.c.name))
        return select(cast(aggregate, Text)).select_from(page).scalar_subquery()
    # SQLite before 3.44 has no ORDER BY inside an aggregate, and Python may link such a version,
    # but an aggregate over a window takes the rows in the window's order.
    window = func.json_group_array(func.json_object(*pairs)).over(
        order_by=page.c.name, rows=(None, None)
    )
    return select(window).select_from(page).limit(1).scalar_subquery()


def _escape_like(text: str) -> str:
    # Tool names are full of underscores, which LIKE would otherwise read as "any character".
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- Versions -------------------------------------------------------------------------------


def list_versions(
    session: Session,
    caller: Caller,
    tool_id: int,
    *,
    limit: int = LIST_LIMIT_DEFAULT,
    offset: int = 0,
) -> list[ToolVersion]:
    """Return the versions of a tool, newest first."""
    get_tool(session, caller, tool_id)
    statement = (
        select(ToolVersion)
        .where(ToolVersion.tool_id == tool_id)
        .order_by(ToolVersion.version.desc())
        .limit(min(max(limit, 1), LIST_LIMIT_MAX))
        .offset(max(offset, 0))
    )
    return list(session.scalars(statement))


def get_version(session: Session, caller: Caller, tool_id: int, version: int) -> ToolVersion:
    get_tool(session, caller, tool_id)
    return _version_row(session, tool_id, version)


def _version_row(session: Session, tool_id: int, version: int) -> ToolVersion:
    found = session.scalar(
        select(ToolVersion).where(ToolVersion.tool_id == tool_id, ToolVersion.version == version)
    )
    if found is None:
        raise NotFound(f"version {version} of tool {tool_id} not found")
    return found


def restore_version(session: Session, caller: Caller, tool_id: int, version: int) -> Tool:
    """Store the state of an earlier version as a new version.

    Restoring a version equal to the current state writes nothing. A version whose category
    was deleted since is not restored, because the tool would point at a missing category.
    """
    tool = get_tool_to_change(session, caller, tool_id)
    state = ToolFields.from_snapshot(_version_row(session, tool_id, version).snapshot)
    if state.category_id is not None and session.get(Category, state.category_id) is None:
        raise Refused(
            f"version {version} of tool {tool.name} is in category {state.category_id}, "
            "which no longer exists; restore it after creating a category or change the "
            "category after restoring"
        )
    before = ToolFields.from_tool(tool)
    change = f"restored from version {version}"
    if save_version(session, caller, tool, state, change):
        _record_update(session, caller, tool, before, state, change=change)
    return tool


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class ParameterChange:
    """A parameter that was added (no ``before``), removed (no ``after``) or changed.

    ``fields`` lists the keys whose values differ, such as ``max_length`` or ``required``.
    """

    name: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    fields: list[str]


@dataclass(frozen=True)
class VersionDiff:
    tool_id: int
    from_version: int
    to_version: int
    fields: list[FieldChange]
    parameters_added: list[ParameterChange]
    parameters_removed: list[ParameterChange]
    parameters_changed: list[ParameterChange]
    parameters_reordered: bool


DIFFED_FIELDS = ("name", "description", "category_id", "status")


def diff_versions(
    session: Session, caller: Caller, tool_id: int, from_version: int, to_version: int
) -> VersionDiff:
    """Compare two versions of a tool field by field and parameter by parameter."""
    get_tool(session, caller, tool_id)
    before = ToolFields.from_snapshot(_version_row(session, tool_id, from_version).snapshot)
    after = ToolFields.from_snapshot(_version_row(session, tool_id, to_version).snapshot)
    changes = [
        FieldChange(name, getattr(before, name), getattr(after, name))
        for name in DIFFED_FIELDS
        if getattr(before, name) != getattr(after, name)
    ]
    added, removed, changed, reordered = diff_parameters(before.parameters, after.parameters)
    return VersionDiff(
        tool_id, from_version, to_version, changes, added, removed, changed, reordered
    )


def diff_parameters(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> tuple[list[ParameterChange], list[ParameterChange], list[ParameterChange], bool]:
    """Return the added, removed and changed parameters, and whether the common ones moved."""
    old = {str(item["name"]): item for item in before}
    new = {str(item["name"]): item for item in after}
    added = [
        ParameterChange(name, None, new[name], sorted(new[name])) for name in new if name not in old
    ]
    removed = [
        ParameterChange(name, old[name], None, sorted(old[name])) for name in old if name not in new
    ]
    changed = []
    for name in (name for name in new if name in old):
        keys = sorted(
            key
            for key in old[name].keys() | new[name].keys()
            if old[name].get(key) != new[name].get(key)
        )
        if keys:
            changed.append(ParameterChange(name, old[name], new[name], keys))
    common_before = [name for name in old if name in new]
    common_after = [name for name in new if name in old]
    return added, removed, changed, common_before != common_after


# --- Tool tests, schema and export ----------------------------------------------------------


@dataclass(frozen=True)
class ToolTestResult:
    ok: bool
    violations: list[Violation]


def test_tool(tool: Tool, arguments: Mapping[str, Any]) -> ToolTestResult:
    """Validate ``arguments`` as a tool call of ``tool`` and return every violation.

    Each violation names the JSON path of the argument, such as ``$.unit``.
    """
    violations = validate_arguments(spec_of(tool), dict(arguments))
    return ToolTestResult(not violations, violations)


# pytest would otherwise collect this function from a test module that imports it by name.
test_tool.__test__ = False  # type: ignore[attr-defined]


def tool_schema(tool: Tool) -> dict[str, Any]:
    """Return the JSON Schema that a tool call's arguments must match."""
    return compile_schema(spec_of(tool))


def export_one(tool: Tool, fmt: str) -> dict[str, Any]:
    return export_tool(spec_of(tool), fmt)


def export_tool_as(session: Session, caller: Caller, tool_id: int, fmt: str) -> dict[str, Any]:
    """Return one tool that ``caller`` sees in the provider format ``fmt``, and audit it."""
    exported = export_one(get_tool(session, caller, tool_id), fmt)
    record_as(
        session,
        caller.origin,
        AuditEvent.TOOL_EXPORTED,
        Target.of("tool", tool_id),
        {"format": str(fmt), "count": 1},
    )
    return exported


@dataclass(frozen=True)
class ExportSelection:
    """Criteria for the tools to export: each one given must hold, and none given means all."""

    ids: Sequence[int] | None = None
    category_id: int | None = None
    status: ToolStatus | None = None


def export_tools(
    session: Session, caller: Caller, selection: ExportSelection, fmt: str
) -> list[dict[str, Any]]:
    """Return the selected tools that ``caller`` sees in the provider format ``fmt``, by name.

    An id in ``selection.ids`` that the caller may not see is left out like a missing one.
    """
    statement = select(Tool).order_by(Tool.name)
    visible = _visible_tools(caller)
    if visible is not None:
        statement = statement.where(visible)
    if selection.ids is not None:
        statement = statement.where(Tool.id.in_(list(selection.ids)))
    if selection.category_id is not None:
        statement = statement.where(Tool.category_id == selection.category_id)
    if selection.status is not None:
        statement = statement.where(Tool.status == str(selection.status))
    exported = [export_one(tool, fmt) for tool in session.scalars(statement)]
    record_as(
        session,
        caller.origin,
        AuditEvent.TOOL_EXPORTED,
        None,
        {"format": str(fmt), "count": len(exported)},
    )
    return exported


# --- Categories -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryView:
    id: int
    name: str
    description: str
    tool_count: int
    created_at: datetime


def list_categories(session: Session, caller: Caller) -> list[CategoryView]:
    """Return every category sorted by name, each with the number of tools ``caller`` sees in it.

    Categories are one list for everyone, curated by admins; only the counts depend on the caller.
    """
    counted = select(Tool.category_id, func.count().label("tools")).group_by(Tool.category_id)
    visible = _visible_tools(caller)
    if visible is not None:
        counted = counted.where(visible)
    counts = counted.subquery()
    statement = (
        select(Category, func.coalesce(counts.c.tools, 0))
        .outerjoin(counts, counts.c.category_id == Category.id)
        .order_by(Category.name)
    )
    return [_category_view(category, count) for category, count in session.execute(statement)]


def get_category(session: Session, caller: Caller, category_id: int) -> CategoryView:
    category = _category(session, category_id)
    return _category_view(category, _tools_in(session, category_id, _visible_tools(caller)))


def create_category(
    session: Session, caller: Caller, name: str, description: str = ""
) -> CategoryView:
    _check_category_name_free(session, name)
    category = Category(
        name=name, description=description, owner_user_id=caller.user_id, created_at=utc_now()
    )
    session.add(category)
    _flush(session, f"a category named {name} already exists")
    record_as(
        session,
        caller.origin,
        AuditEvent.CATEGORY_CREATED,
        Target.of("category", category.id),
        {"name": name},
    )
    return _category_view(category, 0)


def update_category(
    session: Session,
    caller: Caller,
    category_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
) -> CategoryView:
    """Rename a category or change its description; tools keep pointing at it by id."""
    category = _category(session, category_id)
    changed = []
    if name is not None and name != category.name:
        _check_category_name_free(session, name)
        category.name = name
        changed.append("name")
    if description is not None and description != category.description:
        category.description = description
        changed.append("description")
    _flush(session, f"a category named {category.name} already exists")
    if changed:
        record_as(
            session,
            caller.origin,
            AuditEvent.CATEGORY_UPDATED,
            Target.of("category", category_id),
            {"name": category.name, "fields": changed},
        )
    return _category_view(category, _tools_in(session, category_id, _visible_tools(caller)))


def delete_category(session: Session, caller: Caller, category_id: int) -> None:
    """Delete a category that no tool uses, whoever owns the tools."""
    category = _category(session, category_id)
    used_by = _tools_in(session, category_id, None)
    if used_by:
        raise Refused(
            f"category {category.name} is used by {used_by} tool{'s' if used_by != 1 else ''}; "
            "move them to another category or clear their category first"
        )
    name = category.name
    session.delete(category)
    _flush(session, f"category {name} was given a tool meanwhile; try again")
    record_as(
        session,
        caller.origin,
        AuditEvent.CATEGORY_DELETED,
        Target.of("category", category_id),
        {"name": name},
    )


def _category(session: Session, category_id: int) -> Category:
    category = session.get(Category, category_id)
    if category is None:
        raise NotFound(f"category {category_id} not found")
    return category


def _tools_in(session: Session, category_id: int, visible: ColumnElement[bool] | None) -> int:
    statement = select(func.count()).where(Tool.category_id == category_id)
    if visible is not None:
        statement = statement.where(visible)
    return int(session.scalar(statement) or 0)


def _check_category_name_free(session: Session, name: str) -> None:
    if session.scalar(select(Category.id).where(Category.name == name)) is not None:
        raise Conflict(f"a category named {name} already exists")


def _category_view(category: Category, tool_count: int) -> CategoryView:
    return CategoryView(
        category.id, category.name, category.description, int(tool_count), category.created_at
    )


# --- Import ---------------------------------------------------------------------------------


class OnConflict(StrEnum):
    """Handling of an imported spec whose name is already taken."""

    REFUSE = "refuse"  # the spec is refused
    SKIP = "skip"  # an identical tool is reported unchanged; a different one refuses the spec
    NEW_VERSION = "new_version"  # the existing tool gets the spec as its next version


@dataclass(frozen=True)
class ImportOptions:
    format: ImportFormat = ImportFormat.AUTO
    on_conflict: OnConflict = OnConflict.REFUSE
    all_or_nothing: bool = False


@dataclass(frozen=True)
class ImportedTool:
    """A spec stored as a new tool (``created``) or as a new version of one (``new_version``).

    ``original_name`` is set when import renamed the tool, and ``mappings`` lists every
    change import made to the spec.
    """

    source: str
    name: str
    original_name: str | None
    mappings: list[ImportMapping]
    tool_id: int
    version: int
    outcome: str


@dataclass(frozen=True)
class UnchangedTool:
    """A spec identical to the stored tool of the same name, so nothing was written."""

    source: str
    name: str
    tool_id: int
    version: int


@dataclass(frozen=True)
class RefusedTool:
    """A spec that was not stored; ``code`` is stable and ``reason`` is a sentence."""

    source: str
    name: str | None
    code: str
    reason: str


@dataclass
class ImportResult:
    imported: list[ImportedTool] = field(default_factory=list)
    unchanged: list[UnchangedTool] = field(default_factory=list)
    refused: list[RefusedTool] = field(default_factory=list)


class ImportRejected(Refused):
    """The whole import was rejected and nothing was written; ``result`` lists the refusals."""

    def __init__(self, message: str, result: ImportResult) -> None:
        details = [
            Violation(escape_markup(item.source), escape_markup(item.reason))
            for item in result.refused
        ]
        super().__init__(message, details=details)
        self.result = result


@dataclass(frozen=True)
class ParsedImport:
    """A file converted to specs, in file order, before anything is written."""

    entries: list[ImportedSpec | RefusedSpec]

    @property
    def size(self) -> int:
        return len(self.entries)


ProgressCallback = Callable[[int], None]


def read_import(data: bytes, fmt: ImportFormat, *, max_specs: int) -> ParsedImport:
    """Parse a file and convert its documents to specs, without touching the database.

    A file with an invalid JSON line is rejected as a whole, naming the line. ``max_specs``
    (the setting LLERO_MAX_IMPORT_SPECS) bounds the number of specs in one file.
    """
    documents = parse_documents(data)
    _reject_parse_failures(documents)
    if len(documents) > max_specs:
        raise _too_many(len(documents), max_specs)
    report = import_specs(documents, None if fmt is ImportFormat.AUTO else str(fmt))
    if len(report.entries) > max_specs:
        raise _too_many(len(report.entries), max_specs)
    if not report.entries:
        raise InvalidInput("the file contains no tool specs")
    return ParsedImport(report.entries)


def _reject_parse_failures(documents: list[object]) -> None:
    failures = [item for item in documents if isinstance(item, ParseFailure)]
    if not failures:
        return
    # A reason may quote a key of the file, so it is escaped like any uploaded text.
    details = [
        Violation(f"line {item.line}", escape_markup(item.reason))
        for item in failures[:PARSE_FAILURES_SHOWN]
    ]
    first = details[0]
    raise InvalidInput(
        f"{first.field} of the file is not valid JSON ({first.problem}); nothing was imported",
        details=details,
    )


def _too_many(count: int, max_specs: int) -> InvalidInput:
    return InvalidInput(
        f"the file contains {count} tool specs, more than the {max_specs} allowed in one "
        "import (LLERO_MAX_IMPORT_SPECS); split the file"
    )


def import_tools(
    session: Session, caller: Caller, data: bytes, options: ImportOptions, *, max_specs: int
) -> ImportResult:
    """Import every spec of a file; see ``read_import`` and ``apply_import``."""
    parsed = read_import(data, options.format, max_specs=max_specs)
    return apply_import(session, caller, parsed, options)


def apply_import(
    session: Session,
    caller: Caller,
    parsed: ParsedImport,
    options: ImportOptions,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Store the specs of a parsed file, resolving name conflicts by ``options.on_conflict``.

    New tools belong to ``caller``. A name is in conflict when a stored tool has it or an
    earlier spec of the same file took it. Only a tool that ``caller`` may change takes a spec
    as a new version; a spec whose name belongs to a tool the caller does not see is refused
    without naming that tool. ImportRejected is raised when ``all_or_nothing`` is set and a spec
    was refused, and also when every spec was refused. The caller's transaction then rolls back
    what this call wrote. ``progress`` is called with 1 after each spec.

    One ``tool:imported`` audit record counts the outcomes and lists the changed tool ids, up
    to IMPORT_AUDIT_IDS_MAX of them, because a file may hold thousands of specs.
    """
    run = _ImportRun(session, caller, options.on_conflict)
    run.load_holders(
        [entry.spec.name for entry in parsed.entries if isinstance(entry, ImportedSpec)]
    )
    for entry in parsed.entries:
        if isinstance(entry, ImportedSpec):
            run.store(entry)
        else:
            run.result.refused.append(
                RefusedTool(entry.source, entry.name, entry.code, entry.reason)
            )
        if progress is not None:
            progress(1)

    result = run.result
    if options.all_or_nothing and result.refused:
        raise ImportRejected(
            f"{len(result.refused)} of {parsed.size} specs were refused and all_or_nothing is "
            "set, so nothing was imported",
            ImportResult(refused=result.refused),
        )
    if not result.imported and not result.unchanged:
        raise ImportRejected("every spec in the file was refused; nothing was imported", result)
    _record_import(session, caller, result)
    return result


# The audit record of an import lists at most this many tool ids, to stay within the detail
# size limit of an audit record; the counts are always complete.
IMPORT_AUDIT_IDS_MAX = 200


def _record_import(session: Session, caller: Caller, result: ImportResult) -> None:
    created = [item.tool_id for item in result.imported if item.outcome == "created"]
    versioned = [item.tool_id for item in result.imported if item.outcome == "new_version"]
    record_as(
        session,
        caller.origin,
        AuditEvent.TOOL_IMPORTED,
        None,
        {
            "created": len(created),
            "new_versions": len(versioned),
            "unchanged": len(result.unchanged),
            "refused": len(result.refused),
            "tool_ids": (created + versioned)[:IMPORT_AUDIT_IDS_MAX],
        },
    )


class _ImportRun:
    """The state of one import: the tool that has each name, and the result so far."""

    def __init__(self, session: Session, caller: Caller, on_conflict: OnConflict) -> None:
        self.session = session
        self.caller = caller
        self.on_conflict = on_conflict
        self.result = ImportResult()
        self.holders: dict[str, Tool] = {}
        # The ids of holders that the caller sees; None when the caller sees every tool.
        self.visible_ids: set[int] | None = None if caller.sees_all else set()
        self.created_here: set[str] = set()

    def load_holders(self, names: list[str]) -> None:
        unique = sorted(set(names))
        visible = _visible_tools(self.caller)
        # Bound the IN list, because SQLite and PostgreSQL limit the parameters of a statement.
        for start in range(0, len(unique), 1000):
            chunk = unique[start : start + 1000]
            statement = select(Tool).where(Tool.name.in_(chunk))
            self.holders.update((tool.name, tool) for tool in self.session.scalars(statement))
            if self.visible_ids is not None and visible is not None:
                seen = select(Tool.id).where(Tool.name.in_(chunk), visible)
                self.visible_ids.update(self.session.scalars(seen))

    def store(self, entry: ImportedSpec) -> None:
        """Create, version, skip or refuse one spec; a spec that fails its checks is refused."""
        try:
            holder = self.holders.get(entry.spec.name)
            if holder is None:
                self._create(entry)
            else:
                self._resolve_conflict(entry, holder)
        except InvalidInput as error:
            problems = [f"{item.field}: {item.problem}" for item in error.details]
            self._refuse(entry, "invalid_spec", "; ".join(problems) or error.message)

    def _create(self, entry: ImportedSpec) -> None:
        spec = entry.spec
        state = ToolFields.of(spec.name, description=spec.description, parameters=spec.parameters)
        tool = _insert_tool(self.session, self.caller, state, "imported", entry.original_name)
        self.holders[spec.name] = tool
        self.created_here.add(spec.name)
        if self.visible_ids is not None:
            self.visible_ids.add(tool.id)
        self.result.imported.append(_imported(entry, tool, "created"))

    def _resolve_conflict(self, entry: ImportedSpec, holder: Tool) -> None:
        spec = entry.spec
        if self.visible_ids is not None and holder.id not in self.visible_ids:
            # Names are unique across all users, so the name is reported as taken, but the
            # tool that has it stays unnamed.
            self._refuse(entry, "name_taken", f"the name {spec.name} is already taken")
            return

        current = ToolFields.from_tool(holder)
        state = replace(
            current, description=spec.description, parameters=dump_parameters(spec.parameters)
        )
        if spec.name in self.created_here:
            where = "an earlier spec in this file"
        else:
            where = f"stored tool {holder.id}"

        if self.on_conflict is OnConflict.NEW_VERSION and not self.caller.owns(
            holder.owner_user_id
        ):
            reason = f"the name {spec.name} is taken by {where}, which only its owner can change"
            self._refuse(entry, "name_taken", reason)
        elif self.on_conflict is OnConflict.REFUSE:
            self._refuse(entry, "name_taken", f"the name {spec.name} is already taken by {where}")
        elif state == current:
            self.result.unchanged.append(
                UnchangedTool(entry.source, holder.name, holder.id, holder.version)
            )
        elif self.on_conflict is OnConflict.SKIP:
            reason = f"the name {spec.name} is taken by {where}, which differs from this spec"
            self._refuse(entry, "name_taken", reason)
        else:
            save_version(self.session, self.caller, holder, state, "imported as a new version")
            self.result.imported.append(_imported(entry, holder, "new_version"))

    def _refuse(self, entry: ImportedSpec, code: str, reason: str) -> None:
        name = entry.original_name or entry.spec.name
        self.result.refused.append(RefusedTool(entry.source, name, code, reason))


def _imported(entry: ImportedSpec, tool: Tool, outcome: str) -> ImportedTool:
    return ImportedTool(
        entry.source,
        tool.name,
        entry.original_name,
        list(entry.mappings),
        tool.id,
        tool.version,
        outcome,
    )
