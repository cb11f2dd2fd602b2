"""The run loop with scripted hooks: checks before tools run, limits and stops."""

import json
import time
from collections.abc import Mapping
from typing import Any

import pytest

from llero.command.providers.base import ChatRequest, Completion, Message, ToolCall, Usage
from llero.command.providers.base import ToolSpec as ModelTool
from llero.command.run import (
    Agent,
    RunLimits,
    RunnableTool,
    RunStatus,
    RunStopped,
    ToolMode,
    ToolOutput,
    run,
)
from llero.forge.spec import ToolSpec

pytestmark = pytest.mark.anyio

WORD_TOOL = ToolSpec.model_validate(
    {
        "name": "lookup",
        "parameters": [{"name": "word", "type": "string", "required": True, "pattern": "^(a+)+$"}],
    }
)


class ScriptedHooks:
    """Answers with the completions it was given, one per step; records what happened."""

    def __init__(self, completions: list[Completion], *, stop_at_step: int | None = None) -> None:
        self.completions = completions
        self.requests: list[ChatRequest] = []
        self.saved: list[Message] = []
        self.webhook_calls: list[Mapping[str, Any]] = []
        self.stop_at_step = stop_at_step

    async def before_step(self) -> None:
        if self.stop_at_step is not None and len(self.requests) >= self.stop_at_step:
            raise RunStopped("agent 'a' is quarantined and cannot run")

    async def call_model(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        return self.completions[min(len(self.requests), len(self.completions)) - 1]

    async def run_webhook(
        self, tool: RunnableTool, call: ToolCall, arguments: Mapping[str, Any]
    ) -> ToolOutput:
        self.webhook_calls.append(arguments)
        return ToolOutput(True, "ok")

    async def save(self, message: Message) -> None:
        self.saved.append(message)


def _agent() -> Agent:
    tool = RunnableTool(WORD_TOOL, ModelTool("lookup", "", {}), ToolMode.WEBHOOK, "https://x")
    return Agent("m", "", {"lookup": tool})


def _calling(arguments: str) -> Completion:
    return Completion("", (ToolCall("c1", "lookup", arguments),), Usage(3, 1), "tool_calls")


async def test_catastrophic_pattern_argument_is_checked_fast() -> None:
    hostile = json.dumps({"word": "a" * 50_000 + "!"})
    hooks = ScriptedHooks([_calling(hostile), Completion("done", usage=Usage(5, 2))])

    started = time.perf_counter()
    result = await run(_agent(), [Message("user", "hi")], hooks)

    # RE2 runs in linear time: a backtracking engine would not finish this in our lifetime.
    assert time.perf_counter() - started < 5
    assert hooks.webhook_calls == []
    assert "does not match the pattern" in hooks.saved[1].content
    assert result.status is RunStatus.COMPLETED
    assert result.usage == Usage(8, 3)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [("not json", "not valid JSON"), ("[1, 2]", "must be a JSON object"), ("{}", "word")],
)
async def test_malformed_arguments_are_returned_to_the_model(arguments: str, problem: str) -> None:
    hooks = ScriptedHooks([_calling(arguments), Completion("sorry")])
    result = await run(_agent(), [Message("user", "hi")], hooks)
    assert hooks.webhook_calls == []
    assert problem in hooks.saved[1].content
    assert hooks.requests[1].messages[-1].role == "tool"
    assert result.text == "sorry"


async def test_quarantine_takes_effect_at_next_step() -> None:
    hooks = ScriptedHooks([_calling('{"word": "aaa"}')], stop_at_step=1)
    result = await run(_agent(), [Message("user", "hi")], hooks)
    assert result.status is RunStatus.STOPPED
    assert "quarantined" in result.error
    assert len(hooks.requests) == 1
    assert hooks.webhook_calls == [{"word": "aaa"}]


async def test_time_limit_ends_the_run() -> None:
    ticks = iter(range(0, 1000, 10))
    hooks = ScriptedHooks([_calling('{"word": "aaa"}')])
    result = await run(
        _agent(),
        [Message("user", "hi")],
        hooks,
        RunLimits(max_steps=100, max_seconds=25),
        clock=lambda: float(next(ticks)),
    )
    assert result.status is RunStatus.TIME_LIMIT
    assert result.error == "stopped after 25 seconds"
    assert len(hooks.requests) == 2
