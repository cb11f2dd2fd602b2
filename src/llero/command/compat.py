"""POST /v1/chat/completions: any OpenAI client talks to a Llero agent named ``agent:<name>``.

The client keeps the conversation and sends it whole each time, as with OpenAI. The agent's
system prompt and toolkit replace any the client sends: a client cannot give an agent tools or
instructions its owner did not. Webhook tools run inside Llero; calls to client-side tools come
back as ``tool_calls``, and the client sends their results in its next request. Every call is
metered, budgeted and audited like a session's.

Each response carries ``X-Llero-Overhead-Ms``: the time Llero itself spent on the request, that is
the whole request minus the time spent waiting for the provider and the tools.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field

from llero.access.permissions import Permission, requires
from llero.command.engine import Engine, PreparedRun
from llero.command.providers.base import Message, ToolCall
from llero.command.run import RunResult, RunStatus
from llero.errors import InvalidInput, LleroError, Refused, Violation
from llero.web.callers import caller_of
from llero.web.schemas import RequestModel

router = APIRouter(tags=["openai-compatible"])

OVERHEAD_HEADER = "X-Llero-Overhead-Ms"
AGENT_PREFIX = "agent:"
MESSAGES_MAX = 256
CONTENT_MAX = 100_000


class FunctionCallIn(RequestModel):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    arguments: Annotated[str, Field(max_length=CONTENT_MAX)]


class ToolCallIn(RequestModel):
    id: Annotated[str, Field(min_length=1, max_length=128)]
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(RequestModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: Annotated[str, Field(max_length=CONTENT_MAX)] | None = None
    tool_calls: Annotated[list[ToolCallIn], Field(max_length=64)] | None = None
    tool_call_id: Annotated[str, Field(max_length=128)] | None = None
    name: Annotated[str, Field(max_length=128)] | None = None


class ChatCompletionIn(RequestModel):
    """The subset of OpenAI's request that a Llero agent honours; other fields are refused."""

    model: Annotated[str, Field(min_length=1, max_length=200)]
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=MESSAGES_MAX)]
    stream: bool = False
    stream_options: dict[str, bool] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, strict=False)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None


@router.post(
    "/v1/chat/completions",
    dependencies=[requires(Permission.CHAT_SESSION_RUN)],
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def chat_completions(request: Request, body: ChatCompletionIn) -> Any:
    started = time.perf_counter()
    engine: Engine = request.app.state.command_engine
    agent_name = _agent_name(body.model)
    history = _history(body.messages)
    caller = caller_of(request)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"

    if not body.stream:
        result, waited = await engine.run_stateless(caller, agent_name, history)
        _raise_for(result)
        overhead = (time.perf_counter() - started - waited) * 1000
        return JSONResponse(
            _completion(completion_id, body.model, result),
            headers={OVERHEAD_HEADER: f"{overhead:.3f}"},
        )
    # Refusals come before the stream starts, so they still get their status code.
    prepared = await engine.prepare_stateless(caller, agent_name)
    return _stream(engine, prepared, history=history, completion_id=completion_id, model=body.model)


def _agent_name(model: str) -> str:
    if not model.startswith(AGENT_PREFIX) or len(model) == len(AGENT_PREFIX):
        raise InvalidInput(
            "model: name a Llero agent as agent:<name>",
            details=[Violation("body.model", "must be agent:<name>")],
        )
    return model[len(AGENT_PREFIX) :]


def _history(messages: list[ChatMessageIn]) -> list[Message]:
    history: list[Message] = []
    for index, message in enumerate(messages):
        if message.role == "system":
            # The agent's own system prompt is the one that counts.
            continue
        if message.role == "tool" and not message.tool_call_id:
            raise InvalidInput(
                f"messages.{index}.tool_call_id: a tool message needs the id of its call",
                details=[Violation(f"body.messages.{index}.tool_call_id", "missing")],
            )
        calls = tuple(
            ToolCall(call.id, call.function.name, call.function.arguments)
            for call in message.tool_calls or ()
        )
        history.append(Message(message.role, message.content or "", calls, message.tool_call_id))
    if not history:
        raise InvalidInput(
            "messages: at least one user message is needed",
            details=[Violation("body.messages", "no user message")],
        )
    return history


def _raise_for(result: RunResult) -> None:
    if result.status in {RunStatus.FAILED, RunStatus.STOPPED}:
        raise Refused(result.error or "the run ended without a reply")


def _completion(completion_id: str, model: str, result: RunResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text or None}
    if result.pending:
        message["tool_calls"] = [_tool_call(call) for call in result.pending]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(result)}],
        "usage": _usage(result),
    }


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _finish(result: RunResult) -> str:
    if result.pending:
        return "tool_calls"
    if result.status in {RunStatus.STEP_LIMIT, RunStatus.TIME_LIMIT}:
        return "length"
    return "stop"


def _usage(result: RunResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.usage.input_tokens,
        "completion_tokens": result.usage.output_tokens,
        "total_tokens": result.usage.input_tokens + result.usage.output_tokens,
    }


# The most queued chunks joined into one write of the response.
DRAIN_MAX = 64


def _stream(
    engine: Engine,
    prepared: PreparedRun,
    *,
    history: list[Message],
    completion_id: str,
    model: str,
) -> StreamingResponse:
    send, receive = anyio.create_memory_object_stream[str](max_buffer_size=256)
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def on_text(text: str) -> None:
        await send.send(chunk({"content": text}))

    async def produce() -> None:
        async with send:
            await send.send(chunk({"role": "assistant", "content": ""}))
            try:
                result, _waited = await engine.run_prepared(prepared, history, on_text)
            except LleroError as error:
                result = RunResult(RunStatus.FAILED, error=error.message)
            if result.status in {RunStatus.FAILED, RunStatus.STOPPED}:
                # The status line was sent with the first chunk, so the error travels in the
                # stream, as OpenAI's own API reports errors that happen mid-stream.
                failure = {"error": {"message": result.error, "type": "llero_run_stopped"}}
                await send.send(f"data: {json.dumps(failure)}\n\n")
                return
            if result.pending:
                calls = [{"index": i, **_tool_call(c)} for i, c in enumerate(result.pending)]
                await send.send(chunk({"tool_calls": calls}))
            await send.send(chunk({}, _finish(result)))
            usage = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(result),
            }
            await send.send(f"data: {json.dumps(usage)}\n\n")
            await send.send("data: [DONE]\n\n")

    async def events() -> AsyncIterator[str]:
        async with anyio.create_task_group() as group:
            group.start_soon(produce)
            async with receive:
                async for item in receive:
                    # Chunks that are already waiting go out in one write.
                    waiting = [item]
                    while len(waiting) < DRAIN_MAX:
                        try:
                            waiting.append(receive.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    yield "".join(waiting)

    return StreamingResponse(events(), media_type="text/event-stream")
