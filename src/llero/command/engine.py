"""Run a session's turn: load it, call the provider with a brokered key, run tools, store all.

The run loop (``llero.command.run``) decides; this module connects it to the world. Database
work happens in short transactions between provider calls, never across one, so a slow
provider holds no lock. Each message is stored before the loop goes on, so a run that fails
midway leaves a history the next message continues from.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn, Protocol

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from llero.access.ownership import Caller
from llero.audit.context import Actor, Origin, RequestContext
from llero.barracks.models import Agent as StoredAgent
from llero.barracks.service import get_agent
from llero.command import service
from llero.command.models import ChatSession, ChatStatus, ToolRunner
from llero.command.providers.base import (
    ChatRequest,
    Completion,
    Message,
    TextDelta,
    ToolCall,
    Usage,
)
from llero.command.providers.base import ToolSpec as ModelTool
from llero.command.providers.client import Endpoint, ProviderClient
from llero.command.run import (
    Agent,
    RunHooks,
    RunLimits,
    RunnableTool,
    RunResult,
    RunStatus,
    RunStopped,
    ToolMode,
    ToolOutput,
    run,
)
from llero.command.webhooks import call_webhook
from llero.crypto import Secret
from llero.egress import EgressPolicy, GuardedSession, guarded_client
from llero.errors import LleroError, NotFound, RateLimited, Refused
from llero.forge.formats import export_tool
from llero.forge.service import spec_of
from llero.logs import get_logger
from llero.storage.base import utc_now
from llero.storage.db import Database
from llero.storage.generation import GenerationCache
from llero.storage.threads import run_transaction
from llero.vault.keyring import Keyring

log = get_logger("llero.command")

# Characters per token assumed when a streamed answer's cost is estimated.
CHARACTERS_PER_TOKEN = 3

OnText = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ProviderRoute:
    """The destination of an agent's model calls, and the secret and purpose of its key."""

    endpoint: Endpoint
    model: str
    secret_id: int | None
    purpose: str


class Academy(Protocol):
    """The Command Center's view of providers, secrets, grants and budgets."""

    def route(
        self, session: Session, agent: StoredAgent, policy: EgressPolicy
    ) -> ProviderRoute: ...

    def resolve(
        self,
        session: Session,
        *,
        agent_id: int,
        secret_id: int,
        purpose: str,
        session_ref: str,
        origin: Origin,
    ) -> Secret[str]: ...

    def check_budget(
        self,
        session: Session,
        *,
        user_id: int,
        agent_id: int,
        request: RequestContext | None = None,
    ) -> int | None:
        """Raise Refused when a budget is used up; return what is left of the tightest one, in
        micro-dollars, or None when no budget applies. ``request`` is the HTTP request the
        refusal's audit record names."""
        ...

    def cost_micros(self, route: ProviderRoute, usage: Usage) -> int | None:
        """Return what ``usage`` costs at the price of ``route``, or None when it is unknown."""
        ...

    def record_usage(
        self,
        session: Session,
        *,
        user_id: int,
        agent_id: int,
        chat_id: int | None,
        route: ProviderRoute,
        usage: Usage,
    ) -> None: ...

    def egress_policy(self, session: Session) -> EgressPolicy: ...


@dataclass(frozen=True)
class EngineSettings:
    limits: RunLimits = field(default_factory=RunLimits)
    provider_timeout: httpx.Timeout = field(
        default_factory=lambda: httpx.Timeout(60.0, connect=10.0)
    )
    webhook_timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(15.0, connect=5.0))


class Engine:
    """The runner of session turns; one per app."""

    def __init__(
        self,
        database: Database,
        keyring: Keyring,
        academy: Academy,
        settings: EngineSettings | None = None,
        *,
        agent_limiter: Callable[[int], None] | None = None,
    ) -> None:
        self.database = database
        self.keyring = keyring
        self.academy = academy
        self.settings = settings or EngineSettings()
        # Counts each model call of an agent and raises RateLimited past the agent limit.
        self.agent_limiter = agent_limiter
        # Plans of stateless runs, rebuilt whenever the configuration changes.
        self._plans = GenerationCache()
        self._http_clients: dict[
            tuple[int, EgressPolicy], tuple[GuardedSession, httpx.AsyncClient]
        ] = {}

    async def send(
        self, caller: Caller, chat_id: int, text: str, on_text: OnText | None = None
    ) -> RunResult:
        """Add the user's message to the session and run the agent until it replies or waits."""
        user_id = _user_of(caller)

        def start(session: Session) -> None:
            service.owned_session(session, user_id, chat_id)
            service.begin_run(session, chat_id, expected=[ChatStatus.IDLE])
            service.append_message(session, self.keyring, chat_id, Message("user", text))

        await self.in_transaction(start)
        return await self._run(caller, chat_id, on_text)

    async def submit_tool_results(
        self,
        caller: Caller,
        chat_id: int,
        results: Mapping[str, str],
        on_text: OnText | None = None,
    ) -> RunResult:
        """Store the client's results for the pending tool calls and continue the run."""

        user_id = _user_of(caller)

        def start(session: Session) -> None:
            service.owned_session(session, user_id, chat_id)
            service.begin_run(session, chat_id, expected=[ChatStatus.AWAITING_TOOL_RESULTS])
            pending = service.pending_calls(service.history(session, self.keyring, chat_id))
            expected = {call.id for call in pending}
            if set(results) != expected:
                missing = sorted(expected - set(results))
                unknown = sorted(set(results) - expected)
                raise Refused(
                    f"post one result for each pending tool call; missing: {missing or 'none'}, "
                    f"not pending: {unknown or 'none'}"
                )
            for call in pending:
                reply = Message("tool", results[call.id], tool_call_id=call.id)
                service.append_message(session, self.keyring, chat_id, reply)

        await self.in_transaction(start)
        return await self._run(caller, chat_id, on_text)

    async def _run(self, caller: Caller, chat_id: int, on_text: OnText | None) -> RunResult:
        user_id = _user_of(caller)
        status = ChatStatus.IDLE
        try:
            prepared = await self.in_transaction(
                lambda session: self._prepare(session, caller, chat_id)
            )
            agent, history, stored_agent_id, policy = prepared
            scope = _RunScope(user_id, chat_id, stored_agent_id, caller.origin.request)
            result = await self._loop(scope, agent, history, policy, on_text, save=True)
        except LleroError as error:
            result = RunResult(RunStatus.FAILED, error=error.message)
        if result.status is RunStatus.AWAITING_TOOL_RESULTS:
            status = ChatStatus.AWAITING_TOOL_RESULTS
        await self.in_transaction(lambda session: service.end_run(session, chat_id, status))
        return result

    async def run_stateless(
        self,
        caller: Caller,
        agent_name: str,
        history: list[Message],
        on_text: OnText | None = None,
    ) -> tuple[RunResult, float]:
        """Run an agent on a history the client keeps (the OpenAI-compatible endpoint).

        Nothing is stored but usage, key uses and audit records. Returns the result and the
        seconds spent waiting for the provider and the tools.
        """
        prepared = await self.prepare_stateless(caller, agent_name)
        return await self.run_prepared(prepared, history, on_text)

    async def prepare_stateless(self, caller: Caller, agent_name: str) -> "PreparedRun":
        """Check that ``caller`` may run the agent now and broker its first model call.

        Raises NotFound, Refused (a stopped agent, a used-up budget, a missing grant) or
        RateLimited before anything is sent, so a streamed answer can still be refused with a
        status code.
        """
        user_id = _user_of(caller)

        def prepare(session: Session) -> PreparedRun:
            plan = self._plans.get(
                session,
                ("stateless", agent_name, user_id, caller.sees_all),
                lambda: self._stateless_plan(session, caller, agent_name),
            )
            plan.check_runnable(utc_now())
            scope = _RunScope(user_id, None, plan.agent_id, caller.origin.request)
            # The first step's budget check and key are settled in this transaction too, so a
            # one-step answer costs one database round trip before the provider call.
            brokered = _broker(self, session, scope, plan.route)
            return PreparedRun(plan.agent, scope, plan.policy, brokered)

        prepared: PreparedRun = await self.in_transaction(prepare)
        return prepared

    async def run_prepared(
        self, prepared: "PreparedRun", history: list[Message], on_text: OnText | None = None
    ) -> tuple[RunResult, float]:
        """Run a prepared stateless run; return the result and the seconds spent waiting."""
        hooks_time: list[float] = []
        result = await self._loop(
            prepared.scope,
            prepared.agent,
            history,
            prepared.policy,
            on_text,
            save=False,
            waited=hooks_time,
            first=prepared.brokered,
        )
        return result, sum(hooks_time)

    async def _loop(
        self,
        scope: "_RunScope",
        agent: Agent,
        history: list[Message],
        policy: EgressPolicy,
        on_text: OnText | None,
        *,
        save: bool,
        waited: list[float] | None = None,
        first: "Brokered | None" = None,
    ) -> RunResult:
        provider_http, webhook_http = self._clients(policy)
        client = ProviderClient(provider_http)
        hooks = _Hooks(self, scope, client, webhook_http, on_text, save=save, first=first)
        try:
            return await run(agent, history, hooks, self.settings.limits)
        finally:
            if waited is not None:
                waited.append(hooks.waited)

    def _clients(self, policy: EgressPolicy) -> tuple[GuardedSession, httpx.AsyncClient]:
        # Connections to a provider are kept alive between runs; clients belong to one event
        # loop, so they are kept per loop and per egress policy.
        key = (id(asyncio.get_running_loop()), policy)
        clients = self._http_clients.get(key)
        if clients is None:
            clients = (
                GuardedSession(policy, timeout=self.settings.provider_timeout),
                guarded_client(policy, timeout=self.settings.webhook_timeout),
            )
            self._http_clients[key] = clients
        return clients

    async def aclose(self) -> None:
        """Close the kept HTTP clients of the running event loop."""
        loop_id = id(asyncio.get_running_loop())
        for key in [key for key in self._http_clients if key[0] == loop_id]:
            provider_http, webhook_http = self._http_clients.pop(key)
            await provider_http.aclose()
            await webhook_http.aclose()

    def _stateless_plan(self, session: Session, caller: Caller, agent_name: str) -> "_Plan":
        stored = session.scalar(select(StoredAgent).where(StoredAgent.name == agent_name))
        if stored is None:
            raise NotFound(f"no agent named {agent_name!r}")
        try:
            get_agent(session, caller, stored.id)
        except NotFound:
            # The same error as for a missing name, so names of private agents stay unknown.
            raise NotFound(f"no agent named {agent_name!r}") from None
        stored = service.runnable_agent(session, stored.id, utc_now())
        policy = self.academy.egress_policy(session)
        route = self.academy.route(session, stored, policy)
        agent = self._agent(session, stored, route)
        return _Plan(agent, stored.id, stored.name, stored.expires_at, policy, route)

    def _prepare(
        self, session: Session, caller: Caller, chat_id: int
    ) -> tuple[Agent, list[Message], int, EgressPolicy]:
        chat = session.get(ChatSession, chat_id)
        if chat is None:
            raise NotFound("session not found")
        # A share of the agent may have been removed since the session was opened.
        get_agent(session, caller, chat.agent_id)
        stored = service.runnable_agent(session, chat.agent_id, utc_now())
        policy = self.academy.egress_policy(session)
        agent = self._agent(session, stored, self.academy.route(session, stored, policy))
        history = service.history(session, self.keyring, chat_id)
        return agent, history, stored.id, policy

    def _agent(self, session: Session, stored: StoredAgent, route: ProviderRoute) -> Agent:
        tools = {tool.name: _runnable(session, tool, route) for tool in stored.toolkit}
        return Agent(route.model, stored.system_prompt, tools)

    async def in_transaction(self, work: Callable[[Session], Any]) -> Any:
        """Run ``work`` in one database transaction and return its result."""
        return await run_transaction(self.database, work)


def _user_of(caller: Caller) -> int:
    if caller.user_id is None:
        raise ValueError("sessions are run by users, not by the system")
    return caller.user_id


def _runnable(session: Session, tool: Any, route: ProviderRoute) -> RunnableTool:
    spec = spec_of(tool)
    exported = export_tool(spec, route.endpoint.protocol.value)
    model_tool = _model_tool(exported)
    runner = session.get(ToolRunner, tool.id)
    if runner is None or runner.mode == ToolMode.CLIENT:
        return RunnableTool(spec, model_tool, ToolMode.CLIENT)
    return RunnableTool(
        spec, model_tool, ToolMode.WEBHOOK, runner.url, signing_secret_id=runner.signing_secret_id
    )


def _model_tool(exported: Mapping[str, Any]) -> ModelTool:
    # OpenAI's export wraps the function; Anthropic's is flat with input_schema.
    function = exported.get("function", exported)
    parameters = function.get("parameters") or function.get("input_schema") or {}
    return ModelTool(function["name"], function.get("description", ""), parameters)


@dataclass(frozen=True)
class _Plan:
    """The parts of a stateless run of one agent for one caller, read at one generation of the
    configuration. Only the agent's expiry depends on the time, so it is checked on each use."""

    agent: Agent
    agent_id: int
    agent_name: str
    expires_at: datetime | None
    policy: EgressPolicy
    route: ProviderRoute

    def check_runnable(self, now: datetime) -> None:
        service.check_not_expired(self.agent_name, self.expires_at, now)


@dataclass(frozen=True)
class _RunScope:
    user_id: int
    # None for a stateless run, which stores no messages.
    chat_id: int | None
    agent_id: int
    # The HTTP request that started the run, named by its audit records.
    request: RequestContext | None = None

    @property
    def session_ref(self) -> str:
        """Return the reference that key uses of this run are recorded under."""
        if self.chat_id is None:
            return f"completion:agent:{self.agent_id}"
        return f"chat_session:{self.chat_id}"

    @property
    def origin(self) -> Origin:
        return Origin(Actor.agent(self.agent_id), self.request)


@dataclass(frozen=True)
class Brokered:
    """The route of the coming model call, the key brokered for it, and the budget left for it
    in micro-dollars (None when no budget applies)."""

    route: ProviderRoute
    key: Secret[str] | None
    budget_left: int | None


def _broker(engine: Engine, session: Session, scope: _RunScope, route: ProviderRoute) -> Brokered:
    """Count the call against the agent's rate limit, check the budgets and resolve the key for
    a model call on ``route``, in ``session``.

    Raises RateLimited, BudgetExceeded, ResolutionDenied or another LleroError; nothing is
    written before a refusal, and the key use is recorded in ``session``.
    """
    if engine.agent_limiter is not None:
        try:
            engine.agent_limiter(scope.agent_id)
        except RateLimited as limited:
            log.info("agent_rate_limited", agent_id=scope.agent_id, retry_after=limited.retry_after)
            raise
    academy = engine.academy
    budget_left = academy.check_budget(
        session, user_id=scope.user_id, agent_id=scope.agent_id, request=scope.request
    )
    key = None
    if route.secret_id is not None:
        key = academy.resolve(
            session,
            agent_id=scope.agent_id,
            secret_id=route.secret_id,
            purpose=route.purpose,
            session_ref=scope.session_ref,
            origin=scope.origin,
        )
    return Brokered(route, key, budget_left)


@dataclass(frozen=True)
class PreparedRun:
    """A stateless run whose checks passed and whose first model call is brokered."""

    agent: Agent
    scope: _RunScope
    policy: EgressPolicy
    brokered: Brokered


class BudgetCrossed(Exception):
    """A streamed answer was cut off because its estimated cost passed the budget left."""

    def __init__(self, usage: Usage, characters: int) -> None:
        super().__init__("the budget ran out while the answer streamed")
        self.usage = usage
        self.characters = characters


def estimated_tokens(characters: int) -> int:
    """Return a generous estimate of the tokens in ``characters`` characters of text.

    English averages about four characters per token; three is assumed so that the estimate
    errs towards stopping a little early rather than late.
    """
    return -(-characters // CHARACTERS_PER_TOKEN)


def _request_characters(request: ChatRequest) -> int:
    texts = [request.system, *(message.content for message in request.messages)]
    arguments = [call.arguments for message in request.messages for call in message.tool_calls]
    return sum(len(text) for text in texts) + sum(len(text) for text in arguments)


class _Hooks(RunHooks):
    def __init__(
        self,
        engine: Engine,
        scope: _RunScope,
        client: ProviderClient,
        webhook_http: httpx.AsyncClient,
        on_text: OnText | None,
        *,
        save: bool = True,
        first: Brokered | None = None,
    ) -> None:
        self._engine = engine
        self._save = save
        # Seconds spent in provider and tool calls, so the caller can tell Llero's own share.
        self.waited = 0.0
        # Brokered while the run was prepared, for the first step only.
        self._first = first
        self._brokered: Brokered | None = None
        self._scope = scope
        self._client = client
        self._webhook_http = webhook_http
        self._on_text = on_text

    async def before_step(self) -> None:
        if self._first is not None:
            self._brokered, self._first = self._first, None
            return
        # One transaction checks that the run may go on and brokers the coming call's key, so a
        # step costs one round trip to the database before the provider call and one after.
        academy = self._engine.academy

        def check_and_broker(session: Session) -> Brokered:
            try:
                agent = service.runnable_agent(session, self._scope.agent_id, utc_now())
            except (Refused, NotFound) as error:
                raise RunStopped(error.message) from None
            route = academy.route(session, agent, academy.egress_policy(session))
            return _broker(self._engine, session, self._scope, route)

        try:
            self._brokered = await self._engine.in_transaction(check_and_broker)
        except (Refused, RateLimited) as refusal:
            raise RunStopped(refusal.message) from None

    async def call_model(self, request: ChatRequest) -> Completion:
        academy = self._engine.academy
        if self._brokered is None:
            raise RuntimeError("call_model runs only after before_step brokered the call")
        brokered, self._brokered = self._brokered, None
        route = brokered.route
        crossed: BudgetCrossed | None = None
        started = time.perf_counter()
        try:
            completion = await self._complete(brokered, request)
            usage = completion.usage
        except BudgetCrossed as error:
            crossed, usage = error, error.usage
        finally:
            self.waited += time.perf_counter() - started

        def meter(session: Session) -> None:
            academy.record_usage(
                session,
                user_id=self._scope.user_id,
                agent_id=self._scope.agent_id,
                chat_id=self._scope.chat_id,
                route=route,
                usage=usage,
            )

        await self._engine.in_transaction(meter)
        if crossed is not None:
            await self._stop_for_budget(crossed)
        return completion

    async def _stop_for_budget(self, crossed: BudgetCrossed) -> NoReturn:
        """Record the budget refusal of a cut-off answer and end the run."""
        log.info(
            "stream_stopped_for_budget",
            agent_id=self._scope.agent_id,
            chat_id=self._scope.chat_id,
            characters=crossed.characters,
        )
        academy = self._engine.academy

        def check(session: Session) -> None:
            # With the estimated usage recorded, the check finds the budget used up and
            # records the refusal in the audit trail.
            academy.check_budget(
                session,
                user_id=self._scope.user_id,
                agent_id=self._scope.agent_id,
                request=self._scope.request,
            )

        message = (
            f"the budget ran out while the answer streamed; it was cut off after "
            f"{crossed.characters} characters"
        )
        try:
            await self._engine.in_transaction(check)
        except Refused as refusal:
            raise RunStopped(f"{message}: {refusal.message}", crossed.usage) from None
        raise RunStopped(message, crossed.usage)

    async def _complete(self, brokered: Brokered, request: ChatRequest) -> Completion:
        route, key = brokered.route, brokered.key
        if self._on_text is None:
            return await self._client.complete(route.endpoint, request, key)
        input_estimate = estimated_tokens(_request_characters(request))
        characters = 0
        async with aclosing(self._client.stream(route.endpoint, request, key)) as events:
            async for event in events:
                if not isinstance(event, TextDelta):
                    return event
                relayed = characters
                characters += len(event.text)
                if brokered.budget_left is not None:
                    # Checked before the text is relayed, so the client never gets text past
                    # the budget; leaving the loop closes the provider's stream.
                    usage = Usage(input_estimate, estimated_tokens(characters))
                    cost = self._engine.academy.cost_micros(route, usage)
                    if cost is not None and cost > brokered.budget_left:
                        # The usage recorded is what the provider sent, relayed or not.
                        fits = self._affordable(
                            route, input_estimate, brokered.budget_left, relayed, characters
                        )
                        if fits > relayed:
                            await self._on_text(event.text[: fits - relayed])
                        raise BudgetCrossed(usage, fits)
                await self._on_text(event.text)
        raise AssertionError("a provider stream always ends with a completion")

    def _affordable(
        self, route: ProviderRoute, input_tokens: int, budget_left: int, low: int, high: int
    ) -> int:
        """Return the most characters, from ``low`` to ``high``, whose estimated cost fits in
        ``budget_left``. Pieces of a stream can be long, so the piece that crosses the budget
        is relayed up to that point."""
        academy = self._engine.academy
        while low < high:
            middle = (low + high + 1) // 2
            cost = academy.cost_micros(route, Usage(input_tokens, estimated_tokens(middle)))
            if cost is not None and cost > budget_left:
                high = middle - 1
            else:
                low = middle
        return low

    async def run_webhook(
        self, tool: RunnableTool, call: ToolCall, arguments: Mapping[str, Any]
    ) -> ToolOutput:
        if tool.url is None:
            return ToolOutput(False, f"error: the tool {call.name} has no webhook URL")
        started = time.perf_counter()
        result = await call_webhook(
            self._webhook_http,
            tool.url,
            call_id=call.id,
            tool_name=call.name,
            arguments=arguments,
            key=await self._signing_key(tool),
        )
        self.waited += time.perf_counter() - started
        return ToolOutput(result.ok, result.content if result.ok else f"error: {result.content}")

    async def _signing_key(self, tool: RunnableTool) -> Secret[str] | None:
        secret_id = tool.signing_secret_id
        if secret_id is None:
            return None

        def resolve(session: Session) -> Secret[str]:
            return self._engine.academy.resolve(
                session,
                agent_id=self._scope.agent_id,
                secret_id=secret_id,
                purpose=f"webhook:{tool.spec.name.lower()}",
                session_ref=self._scope.session_ref,
                origin=self._scope.origin,
            )

        key: Secret[str] = await self._engine.in_transaction(resolve)
        return key

    async def save(self, message: Message) -> None:
        chat_id = self._scope.chat_id
        if not self._save or chat_id is None:
            return
        await self._engine.in_transaction(
            lambda session: service.append_message(session, self._engine.keyring, chat_id, message)
        )
