"""HTTP routes of Command Center sessions and tool runners; each names its permission."""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from llero.access.permissions import Permission, principal_of, requires
from llero.barracks.service import get_agent
from llero.command import schemas, service
from llero.command.engine import Engine, OnText
from llero.command.models import ToolRunner
from llero.command.providers.base import Message
from llero.command.run import RunResult, ToolMode
from llero.egress import check_url
from llero.errors import InvalidInput, Violation
from llero.forge.service import get_tool, get_tool_to_change
from llero.storage.base import utc_now
from llero.web.callers import caller_of
from llero.web.clients import origin_of
from llero.web.deps import SessionDep
from llero.web.schemas import ID_MAX

router = APIRouter(tags=["sessions"])

IdPath = Annotated[int, Path(ge=1, le=ID_MAX)]
LIMIT_DEFAULT = 50


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.command_engine
    return engine


@router.post("/sessions", status_code=201, dependencies=[requires(Permission.CHAT_SESSION_CREATE)])
def create_session(
    request: Request, session: SessionDep, body: schemas.SessionCreate
) -> schemas.SessionOut:
    caller = caller_of(request)
    # The caller must be able to see the agent: their own, shared with them, or any for admins.
    get_agent(session, caller, body.agent_id)
    chat = service.create_session(
        session,
        caller.origin,
        owner_user_id=principal_of(request).user_id,
        agent_id=body.agent_id,
        title=body.title,
        expires_at=body.expires_at,
    )
    return schemas.SessionOut.model_validate(service.view(chat))


@router.get("/sessions", dependencies=[requires(Permission.CHAT_SESSION_READ)])
def list_sessions(
    request: Request,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=service.LIST_LIMIT_MAX)] = LIMIT_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
) -> schemas.SessionPage:
    rows, total = service.list_sessions(
        session, principal_of(request).user_id, limit=limit, offset=offset
    )
    items = [schemas.SessionOut.model_validate(service.view(row)) for row in rows]
    return schemas.SessionPage(items=items, total=total)


@router.get("/sessions/{session_id}", dependencies=[requires(Permission.CHAT_SESSION_READ)])
def get_session(request: Request, session: SessionDep, session_id: IdPath) -> schemas.SessionDetail:
    chat = service.owned_session(session, principal_of(request).user_id, session_id)
    messages = service.history(session, _engine(request).keyring, chat.id)
    return schemas.SessionDetail(
        **schemas.SessionOut.model_validate(service.view(chat)).model_dump(),
        messages=[_message_out(position, message) for position, message in enumerate(messages, 1)],
    )


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    dependencies=[requires(Permission.CHAT_SESSION_DELETE)],
)
def delete_session(request: Request, session: SessionDep, session_id: IdPath) -> Response:
    service.delete_session(session, origin_of(request), principal_of(request).user_id, session_id)
    return Response(status_code=204)


@router.post(
    "/sessions/{session_id}/messages",
    dependencies=[requires(Permission.CHAT_SESSION_RUN)],
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def send_message(
    request: Request, session_id: IdPath, body: schemas.MessageCreate
) -> schemas.RunOut:
    engine = _engine(request)
    caller = caller_of(request)

    async def start(on_text: OnText | None) -> RunResult:
        return await engine.send(caller, session_id, body.content, on_text)

    return await _respond(start, stream=body.stream)  # type: ignore[return-value]


@router.post(
    "/sessions/{session_id}/tool-results",
    dependencies=[requires(Permission.CHAT_SESSION_RUN)],
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def post_tool_results(
    request: Request, session_id: IdPath, body: schemas.ToolResultsCreate
) -> schemas.RunOut:
    engine = _engine(request)
    caller = caller_of(request)
    results = {item.tool_call_id: item.content for item in body.results}
    if len(results) != len(body.results):
        raise InvalidInput(
            "results: each tool_call_id may appear once",
            details=[Violation("body.results", "duplicate tool_call_id")],
        )

    async def start(on_text: OnText | None) -> RunResult:
        return await engine.submit_tool_results(caller, session_id, results, on_text)

    return await _respond(start, stream=body.stream)  # type: ignore[return-value]


async def _respond(
    start: Callable[[OnText | None], Awaitable[RunResult]], *, stream: bool
) -> schemas.RunOut | StreamingResponse:
    if not stream:
        return run_out(await start(None))
    # The first checks (the session exists, belongs to the caller and is idle) run before the
    # response starts, so their errors keep their status codes.
    send, receive = anyio.create_memory_object_stream[str](max_buffer_size=256)

    async def on_text(text: str) -> None:
        await send.send(_event("text", {"text": text}))

    async def produce() -> None:
        async with send:
            result = await start(on_text)
            await send.send(_event("result", run_out(result).model_dump()))

    async def events() -> AsyncIterator[str]:
        async with anyio.create_task_group() as group:
            group.start_soon(produce)
            async with receive:
                async for item in receive:
                    yield item

    return StreamingResponse(events(), media_type="text/event-stream")


def _event(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def run_out(result: RunResult) -> schemas.RunOut:
    return schemas.RunOut(
        status=result.status.value,
        text=result.text,
        error=result.error,
        steps=result.steps,
        usage=schemas.UsageOut(
            input_tokens=result.usage.input_tokens, output_tokens=result.usage.output_tokens
        ),
        pending=[
            schemas.ToolCallOut(id=call.id, name=call.name, arguments=call.arguments)
            for call in result.pending
        ],
    )


def _message_out(position: int, message: Message) -> schemas.MessageOut:
    return schemas.MessageOut(
        position=position,
        role=message.role,
        content=message.content,
        tool_calls=[
            schemas.ToolCallOut(id=call.id, name=call.name, arguments=call.arguments)
            for call in message.tool_calls
        ],
        tool_call_id=message.tool_call_id,
    )


# --- Tool runners ------------------------------------------------------------------------------


@router.get(
    "/tools/{tool_id}/runner", dependencies=[requires(Permission.TOOL_READ)], tags=["tools"]
)
def get_runner(request: Request, session: SessionDep, tool_id: IdPath) -> schemas.ToolRunnerOut:
    # A tool the caller may not see is not found, as in every other tool route.
    get_tool(session, caller_of(request), tool_id)
    runner = session.get(ToolRunner, tool_id)
    if runner is None:
        return schemas.ToolRunnerOut(
            tool_id=tool_id, mode=ToolMode.CLIENT, url=None, signing_secret_id=None
        )
    return schemas.ToolRunnerOut.model_validate(runner)


@router.put(
    "/tools/{tool_id}/runner", dependencies=[requires(Permission.TOOL_UPDATE)], tags=["tools"]
)
def set_runner(
    request: Request, session: SessionDep, tool_id: IdPath, body: schemas.ToolRunnerIn
) -> schemas.ToolRunnerOut:
    get_tool_to_change(session, caller_of(request), tool_id)
    if body.mode is ToolMode.WEBHOOK:
        if body.url is None:
            raise InvalidInput(
                "url: a webhook tool needs a URL",
                details=[Violation("body.url", "required for mode webhook")],
            )
        check_url(body.url, _engine(request).academy.egress_policy(session))
    runner = session.get(ToolRunner, tool_id) or ToolRunner(tool_id=tool_id)
    runner.mode = body.mode
    runner.url = body.url if body.mode is ToolMode.WEBHOOK else None
    runner.signing_secret_id = body.signing_secret_id
    runner.updated_at = utc_now()
    session.add(runner)
    session.flush()
    return schemas.ToolRunnerOut.model_validate(runner)
