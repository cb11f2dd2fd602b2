"""The run loop: the model's turn, then its tool calls checked and run, until it replies in text.

Each tool call is checked before anything runs: a tool outside the agent's toolkit, arguments
that are not a JSON object, or arguments that break the tool's schema (dependency rules
included) are not run, and the model gets the reason back as the tool's result so it can
correct itself. A step limit and a time limit end runaway loops, and the hooks' ``before_step``
stops a run whose agent was quarantined or whose budget ran out since the last step.
"""

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from llero.command.providers.base import ChatRequest, Completion, Message, ToolCall, Usage
from llero.command.providers.base import ToolSpec as ModelTool
from llero.errors import LleroError
from llero.forge.spec import ToolSpec
from llero.forge.validation import validate_arguments

# Violations listed back to the model for one call; more add nothing it can act on.
MAX_VIOLATIONS_SHOWN = 10


class ToolMode(StrEnum):
    CLIENT = "client"
    WEBHOOK = "webhook"


class RunStatus(StrEnum):
    AWAITING_TOOL_RESULTS = "awaiting_tool_results"
    COMPLETED = "completed"
    FAILED = "failed"
    STEP_LIMIT = "step_limit"
    STOPPED = "stopped"
    TIME_LIMIT = "time_limit"


class RunStopped(LleroError):
    """A check ended the run: the agent may no longer run, or a budget ran out (between steps
    or while an answer streamed). ``usage`` is what a model call cut off midway used."""

    code = "run_stopped"

    def __init__(self, message: str, usage: "Usage | None" = None) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class RunnableTool:
    """A tool of the agent's toolkit: its spec for checking calls, and how it runs."""

    spec: ToolSpec
    model_tool: ModelTool
    mode: ToolMode
    url: str | None = None
    signing_secret_id: int | None = None


@dataclass(frozen=True)
class ToolOutput:
    """The text a tool returned, and whether it is an error the model should correct."""

    ok: bool
    content: str


@dataclass(frozen=True)
class RunLimits:
    max_steps: int = 8
    max_seconds: float = 120.0


class RunHooks(Protocol):
    """The loop's connections to the world: the model, the tools, storage and the checks."""

    async def before_step(self) -> None:
        """Raise RunStopped when the run must not go on."""

    async def call_model(self, request: ChatRequest) -> Completion:
        """Return the model's turn; raise ProviderFailure or EgressRefused."""

    async def run_webhook(
        self, tool: RunnableTool, call: ToolCall, arguments: Mapping[str, Any]
    ) -> ToolOutput:
        """Run a webhook tool and return its output."""

    async def save(self, message: Message) -> None:
        """Keep ``message`` in the session's history before the loop goes on."""


@dataclass
class RunResult:
    """The end of a run: its status, the last reply's text, and the calls the client must run."""

    status: RunStatus
    text: str = ""
    pending: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    steps: int = 0
    error: str = ""


@dataclass(frozen=True)
class Agent:
    """The parts of an agent a run uses."""

    model: str
    system_prompt: str
    tools: Mapping[str, RunnableTool]
    max_tokens: int = 1024


async def run(
    agent: Agent,
    history: Sequence[Message],
    hooks: RunHooks,
    limits: RunLimits = RunLimits(),
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Run the model on ``history`` until it answers in text, waits for the client, or stops.

    Every message the run adds is passed to ``hooks.save`` first, so a run that fails midway
    leaves a history that a later run can continue from.
    """
    messages = list(history)
    deadline = clock() + limits.max_seconds
    result = RunResult(RunStatus.COMPLETED)
    tools = tuple(tool.model_tool for tool in agent.tools.values())

    while True:
        if result.steps >= limits.max_steps:
            return _ended(result, RunStatus.STEP_LIMIT, f"stopped after {limits.max_steps} steps")
        if clock() >= deadline:
            seconds = limits.max_seconds
            return _ended(result, RunStatus.TIME_LIMIT, f"stopped after {seconds:g} seconds")
        try:
            await hooks.before_step()
        except RunStopped as stopped:
            return _ended(result, RunStatus.STOPPED, stopped.message)

        request = ChatRequest(
            agent.model, agent.system_prompt, tuple(messages), tools, agent.max_tokens
        )
        try:
            completion = await hooks.call_model(request)
        except RunStopped as stopped:
            if stopped.usage is not None:
                result.steps += 1
                result.usage = _added(result.usage, stopped.usage)
            return _ended(result, RunStatus.STOPPED, stopped.message)
        result.steps += 1
        result.usage = _added(result.usage, completion.usage)
        answer = Message("assistant", completion.text, completion.tool_calls)
        await hooks.save(answer)
        messages.append(answer)
        if not completion.tool_calls:
            result.text = completion.text
            return result

        for call in completion.tool_calls:
            output = await _run_call(agent, call, hooks)
            if output is None:
                result.pending.append(call)
                continue
            reply = Message("tool", output.content, tool_call_id=call.id)
            await hooks.save(reply)
            messages.append(reply)
        if result.pending:
            result.status = RunStatus.AWAITING_TOOL_RESULTS
            return result


def _added(total: Usage, usage: Usage) -> Usage:
    return Usage(total.input_tokens + usage.input_tokens, total.output_tokens + usage.output_tokens)


def _ended(result: RunResult, status: RunStatus, error: str) -> RunResult:
    result.status = status
    result.error = error
    return result


async def _run_call(agent: Agent, call: ToolCall, hooks: RunHooks) -> ToolOutput | None:
    """Check one call and run it; None means the client runs it."""
    tool = agent.tools.get(call.name)
    if tool is None:
        names = ", ".join(sorted(agent.tools)) or "none"
        return ToolOutput(
            False, f"error: {call.name!r} is not a tool of this agent; the tools are: {names}"
        )
    arguments, problem = check_call(tool.spec, call.arguments)
    if problem:
        return ToolOutput(False, f"error: the call to {call.name} was not run: {problem}")
    if tool.mode is ToolMode.CLIENT:
        return None
    return await hooks.run_webhook(tool, call, arguments)


def check_call(spec: ToolSpec, arguments_text: str) -> tuple[dict[str, Any], str]:
    """Return the parsed arguments and an empty string, or what is wrong with them."""
    try:
        arguments = json.loads(arguments_text or "{}")
    except ValueError:
        return {}, "the arguments are not valid JSON"
    if not isinstance(arguments, dict):
        return {}, "the arguments must be a JSON object"
    violations = validate_arguments(spec, arguments)
    if violations:
        shown = "; ".join(f"{v.field}: {v.problem}" for v in violations[:MAX_VIOLATIONS_SHOWN])
        return arguments, f"invalid arguments: {shown}"
    return arguments, ""
