"""Run BFCL questions through real sessions: import the case's function as a webhook tool, let
the local provider reply with the ground-truth call, and check what reached the tool server and
what went back to the model.

Each question runs on every route: the OpenAI and the Anthropic protocol, each streamed and not.
A route passes when all of these hold:

- the run completed, and a streamed run's text events add up to its result's text;
- the provider got the tool exactly as the imported spec exports to its protocol;
- the tool server got exactly the ground-truth call, with a valid signature;
- the provider got that call and the tool's response back in the history;
- the final text quotes that response.
"""

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator, SchemaError

from llero.access.ownership import Caller
from llero.barracks.models import Agent
from llero.barracks.service import NewAgent, create_agent, delete_agent
from llero.command.models import ToolRunner
from llero.command.providers.client import WireProtocol
from llero.command.webhooks import CALL_ID_HEADER, SIGNATURE_HEADER
from llero.forge.bfcl import first_acceptable_arguments, import_cases, parse_answers
from llero.forge.formats import ImportedSpec, RefusedSpec, export_tool
from llero.forge.models import ToolStatus
from llero.forge.service import ToolFields, create_tool, delete_tool
from llero.forge.spec import ToolSpec
from llero.storage.db import Database
from tests.command.helpers import SIGNING_KEY, LocalAcademy, WebhookServer, read_run_events
from tests.command.provider_server import PlannedCall, ProviderServer

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "bfcl"
FILES = ("BFCL_v4_simple_python", "BFCL_v4_live_simple")

# The tests install tools and agents as the operator, who sees every object.
OPERATOR = Caller.system("test")

FINAL_TEXT_PREFIX = "The tool answered: "  # the provider server's reply to a tool result
REJECTED_CALL = re.compile(r"^error: the call to \S+ was not run: invalid arguments: (.*)$", re.S)
VIOLATION_FIELD = re.compile(r"(?:^|; )(\$[^:]*): ")
SIGNATURE = re.compile(r"t=(?P<t>[0-9]+),v1=(?P<v1>[0-9a-f]{64})")
SIGNATURE_MAX_AGE = 300  # seconds


@dataclass(frozen=True)
class Route:
    """How a session reaches the provider: the wire protocol, and whether the run streams."""

    protocol: WireProtocol
    stream: bool

    @property
    def label(self) -> str:
        return f"{self.protocol.value}, {'streamed' if self.stream else 'not streamed'}"


ROUTES = tuple(
    Route(protocol, stream)
    for protocol in (WireProtocol.OPENAI, WireProtocol.ANTHROPIC)
    for stream in (False, True)
)


@dataclass(frozen=True)
class Case:
    case_id: str
    file: str
    question: str
    entry: ImportedSpec | RefusedSpec
    answer: dict[str, Any]


@dataclass(frozen=True)
class CaseOutcome:
    """One question on one route. A failure has a ``code`` and a ``reason`` for people.

    ``fields`` lists the JSON paths of the violations when Llero rejected the call's arguments.
    """

    case_id: str
    file: str
    route: Route
    passed: bool
    code: str = ""
    reason: str = ""
    fields: frozenset[str] = frozenset()


def load_cases(every: int = 1) -> list[Case]:
    """Return the cases of both files, every ``every``-th one."""
    cases: list[Case] = []
    for name in FILES:
        spec_data = (CORPUS / f"{name}.json").read_bytes()
        imported = import_cases(spec_data)
        questions = {
            line["id"]: line["question"]
            for line in map(json.loads, spec_data.decode().splitlines())
        }
        for answer in parse_answers((CORPUS / f"{name}.answers.json").read_bytes()):
            case_id = str(answer["id"])
            turns = questions[case_id][0]
            text = next(m["content"] for m in reversed(turns) if m["role"] == "user")
            [(_tool, arguments)] = answer["ground_truth"][0].items()
            cases.append(Case(case_id, name, text, imported[case_id], arguments))
    return cases[::every]


@dataclass(frozen=True)
class Rig:
    """The running pieces a case needs: Llero, its database, its Academy and the local servers."""

    client: TestClient
    database: Database
    academy: LocalAcademy
    provider: ProviderServer
    webhooks: WebhookServer
    secret_id: int


def run_case(rig: Rig, case: Case) -> list[CaseOutcome]:
    """Run one case on every route, in a fresh agent that is removed afterwards."""
    entry = case.entry
    if isinstance(entry, RefusedSpec):
        reason = f"import refused: {entry.reason}"
        code = f"import_refused:{entry.code}"
        return [_Trial(case, route, None, {}).failed(code, reason) for route in ROUTES]
    expected = first_acceptable_arguments(
        case.answer, {parameter.name: parameter for parameter in entry.spec.parameters}
    )
    tool_id, agent_id = _install(rig.database, case, entry, rig.webhooks.url, rig.secret_id)
    rig.provider.answers.clear()
    rig.provider.teach(case.question, [PlannedCall(entry.spec.name, expected)])
    try:
        trials = [_Trial(case, route, entry.spec, expected) for route in ROUTES]
        return [_run_trial(rig, trial, agent_id) for trial in trials]
    finally:
        _remove(rig.database, tool_id, agent_id)


@dataclass(frozen=True)
class _Trial:
    """One case on one route, with the imported spec and the call the provider makes."""

    case: Case
    route: Route
    spec: ToolSpec | None  # None when the import refused the case
    expected: dict[str, Any]

    @property
    def tool(self) -> str:
        return self.spec.name if self.spec is not None else ""

    def failed(self, code: str, reason: str, fields: frozenset[str] = frozenset()) -> CaseOutcome:
        case = self.case
        return CaseOutcome(case.case_id, case.file, self.route, False, code, reason, fields)

    def passed(self) -> CaseOutcome:
        return CaseOutcome(self.case.case_id, self.case.file, self.route, True)


def _run_trial(rig: Rig, trial: _Trial, agent_id: int) -> CaseOutcome:
    route = trial.route
    rig.academy.protocol = route.protocol
    rig.provider.received.clear()
    rig.webhooks.calls.clear()
    chat = rig.client.post("/api/sessions", json={"agent_id": agent_id})
    response = rig.client.post(
        f"/api/sessions/{chat.json()['id']}/messages",
        json={"content": trial.case.question, "stream": route.stream},
    )
    if response.status_code != 200:
        return trial.failed("http_error", f"HTTP {response.status_code}: {response.text}")
    if route.stream:
        streamed, result = read_run_events(response)
        if streamed != result.get("text"):
            return trial.failed("stream_differs", "the streamed text is not the result's text")
    else:
        result = response.json()
    return _judge(rig, trial, result)


def _install(
    database: Database, case: Case, entry: ImportedSpec, url: str, secret_id: int
) -> tuple[int, int]:
    spec = entry.spec
    with database.transaction() as session:
        tool = create_tool(
            session,
            OPERATOR,
            ToolFields.of(
                name=spec.name,
                description=spec.description,
                parameters=spec.parameters,
                status=ToolStatus.ACTIVE,
            ),
            original_name=entry.original_name,
        )
        session.add(
            ToolRunner(tool_id=tool.id, mode="webhook", url=url, signing_secret_id=secret_id)
        )
        agent: Agent = create_agent(
            session,
            OPERATOR,
            NewAgent(
                name=f"bfcl-{case.case_id}",
                provider="local",
                model="test-model",
                tool_ids=[tool.id],
            ),
        )
        return tool.id, agent.id


def _remove(database: Database, tool_id: int, agent_id: int) -> None:
    with database.transaction() as session:
        delete_agent(session, OPERATOR, agent_id)
    with database.transaction() as session:
        delete_tool(session, OPERATOR, tool_id)


# --- Judging one route ---------------------------------------------------------------------------


def _judge(rig: Rig, trial: _Trial, result: dict[str, Any]) -> CaseOutcome:
    if result.get("status") != "completed":
        return trial.failed("run_failed", f"run ended {result.get('status')}: {result}")
    received = rig.provider.received
    problem = _check_requests(received, trial)
    if problem:
        return trial.failed("provider_request", problem)
    protocol = trial.route.protocol
    schema_errors = _schema_errors(protocol, received[0]["body"]["tools"][0], trial.expected)
    turn = _ToolTurn.of(protocol, received[1]["body"])
    if not rig.webhooks.calls:
        return _rejected(trial, turn.result, schema_errors)
    if schema_errors:
        reason = f"the call ran, but the schema sent to the provider rejects it: {schema_errors}"
        return trial.failed("schema_rejects_call", reason)
    code, problem = _check_call(rig.webhooks.calls, trial, turn, result["text"])
    if problem:
        return trial.failed(code, problem)
    return trial.passed()


def _rejected(trial: _Trial, tool_result: str, schema_errors: list[str]) -> CaseOutcome:
    """Name why the tool was not called. ``arguments_rejected`` means that Llero rejected the
    call and that a standard JSON Schema validator rejects it under the provider's schema too."""
    match = REJECTED_CALL.match(tool_result)
    if match is None:
        return trial.failed("tool_not_called", f"the tool was not called: {tool_result}")
    fields = frozenset(VIOLATION_FIELD.findall(match.group(1)))
    if not schema_errors:
        reason = f"{tool_result}; the schema sent to the provider accepts the call"
        return trial.failed("rejected_but_schema_accepts", reason, fields)
    return trial.failed("arguments_rejected", tool_result, fields)


def _check_requests(received: list[dict[str, Any]], trial: _Trial) -> str:
    """Return what is wrong with the provider requests of a one-call run, or ""."""
    if len(received) != 2:
        return f"the provider got {len(received)} requests, not 2"
    problem = next(filter(None, (_check_route(request, trial.route) for request in received)), "")
    if problem:
        return problem
    tools = received[0]["body"].get("tools", [])
    if len(tools) != 1:
        return f"the provider got {len(tools)} tools, not 1"
    exported = export_tool(trial.spec, trial.route.protocol.value) if trial.spec else None
    if _canonical(tools[0]) != _canonical(exported):
        return f"the provider got {tools[0]}, not the export of the imported spec {exported}"
    _name, schema = _sent_tool(trial.route.protocol, tools[0])
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return f"the schema sent to the provider is not valid JSON Schema: {error.message}"
    return ""


def _check_route(request: dict[str, Any], route: Route) -> str:
    if request["protocol"] != route.protocol.value:
        return f"a request went to the {request['protocol']} endpoint"
    if bool(request["body"].get("stream")) is not route.stream:
        return "a request's stream flag does not match the route"
    return ""


def _schema_errors(protocol: WireProtocol, tool: dict[str, Any], arguments: object) -> list[str]:
    """Return what a standard JSON Schema validator finds wrong with ``arguments`` under the
    schema the provider got, independently of Llero's own validation."""
    _name, schema = _sent_tool(protocol, tool)
    return [error.message for error in Draft202012Validator(schema).iter_errors(arguments)]


def _sent_tool(protocol: WireProtocol, tool: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if protocol is WireProtocol.OPENAI:
        return tool["function"]["name"], tool["function"]["parameters"]
    return tool["name"], tool["input_schema"]


@dataclass(frozen=True)
class _ToolTurn:
    """The model's tool call and the tool's result, as the second request sent them back."""

    arguments: object
    result: str

    @classmethod
    def of(cls, protocol: WireProtocol, body: dict[str, Any]) -> "_ToolTurn":
        call_message, result_message = body["messages"][-2:]
        if protocol is WireProtocol.OPENAI:
            arguments = json.loads(call_message["tool_calls"][0]["function"]["arguments"])
            return cls(arguments, result_message["content"])
        [call] = [b for b in call_message["content"] if b["type"] == "tool_use"]
        [result] = [b for b in result_message["content"] if b["type"] == "tool_result"]
        return cls(call["input"], result["content"])


def _check_call(
    calls: list[dict[str, Any]], trial: _Trial, turn: "_ToolTurn", final_text: str
) -> tuple[str, str]:
    """Return a failure code and what is wrong with the call and the tool's response, or two ""."""
    problem = _check_webhook(calls, trial)
    if problem:
        return "webhook_call", problem
    response = calls[0]["response"].decode()
    if _canonical(turn.arguments) != _canonical(trial.expected):
        return "history", f"the call in the provider's history is {turn.arguments}"
    if turn.result != response:
        return "history", f"the tool result in the provider's history is {turn.result}"
    if final_text != FINAL_TEXT_PREFIX + response:
        return "final_text", f"the final text is {final_text[:300]}"
    return "", ""


def _check_webhook(calls: list[dict[str, Any]], trial: _Trial) -> str:
    """Return what is wrong with the calls the tool server got, or ""."""
    if len(calls) != 1:
        return f"the tool server got {len(calls)} calls, not 1"
    call = calls[0]
    if not _signed(call["headers"].get(SIGNATURE_HEADER, ""), call["body"]):
        return "the webhook signature did not verify"
    body = json.loads(call["body"])
    if body["tool"] != trial.tool:
        return f"the tool server got a call to {body['tool']!r}"
    if call["headers"].get(CALL_ID_HEADER) != body["call_id"]:
        return "the call id header does not match the body"
    if _canonical(body["arguments"]) != _canonical(trial.expected):
        return f"arguments differ: {body['arguments']} != {trial.expected}"
    return ""


def _signed(header: str, body: bytes) -> bool:
    """Return whether ``header`` signs ``body`` as documented: ``t=<unix time>,v1=<hex
    HMAC-SHA256 of "<t>.<body>">``. Llero's own code is not used, so that a fault shared by its
    signing and its checking shows."""
    match = SIGNATURE.fullmatch(header)
    if match is None or abs(time.time() - int(match["t"])) > SIGNATURE_MAX_AGE:
        return False
    message = match["t"].encode() + b"." + body
    digest = hmac.new(SIGNING_KEY.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(digest, match["v1"])


def _canonical(value: object) -> str:
    # Compared as JSON text, so that 5 and 5.0, or 1 and true, are different arguments.
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# --- Expected rejections and the summary ---------------------------------------------------------


@dataclass(frozen=True)
class ExpectedRejection:
    """A case that Llero rightly rejects on every route, for a reason in the corpus itself.

    ``code`` is the outcome code each route must fail with, ``fields`` the violations Llero must
    report (for rejected arguments), and ``reason`` the group that the summary counts it under.
    """

    code: str
    reason: str
    fields: frozenset[str] = frozenset()

    def matches(self, outcome: CaseOutcome) -> bool:
        return not outcome.passed and (outcome.code, outcome.fields) == (self.code, self.fields)


def unexpected_outcomes(
    outcomes: list[CaseOutcome], expected: dict[str, ExpectedRejection]
) -> list[CaseOutcome]:
    """Return the failures that no expected rejection names, and the outcomes of named cases
    that did not fail as named (including those that passed)."""
    return [outcome for outcome in outcomes if not _as_expected(outcome, expected)]


def _as_expected(outcome: CaseOutcome, expected: dict[str, ExpectedRejection]) -> bool:
    rejection = expected.get(outcome.case_id)
    if rejection is None:
        return outcome.passed
    return rejection.matches(outcome)


def summarize(outcomes: list[CaseOutcome], expected: dict[str, ExpectedRejection]) -> str:
    """Return the totals per file and route, the expected rejections by reason, and every
    unexpected outcome with its reason."""
    questions = sorted({outcome.case_id for outcome in outcomes})
    passed = sum(outcome.passed for outcome in outcomes)
    lines = [
        f"BFCL sessions: {len(questions)} questions on {len(ROUTES)} routes each, "
        f"{passed} of {len(outcomes)} sessions passed"
    ]
    lines.extend(_file_lines(outcomes))
    lines.extend(_rejection_lines(outcomes, expected))
    unexpected = unexpected_outcomes(outcomes, expected)
    lines.append(f"  unexpected outcomes: {len(unexpected)}")
    lines.extend(
        f"    {o.case_id} ({o.route.label}): {o.code or 'passed'}: {o.reason[:400]}"
        for o in unexpected
    )
    return "\n".join(lines)


def _file_lines(outcomes: list[CaseOutcome]) -> list[str]:
    lines = []
    for name in FILES:
        mine = [outcome for outcome in outcomes if outcome.file == name]
        cases = {outcome.case_id for outcome in mine}
        failed = {outcome.case_id for outcome in mine if not outcome.passed}
        lines.append(f"  {name}: {len(cases) - len(failed)} of {len(cases)} questions passed")
        for route in ROUTES:
            on_route = [outcome for outcome in mine if outcome.route == route]
            count = sum(outcome.passed for outcome in on_route)
            lines.append(f"    {route.label}: {count} of {len(on_route)} passed")
    return lines


def _rejection_lines(
    outcomes: list[CaseOutcome], expected: dict[str, ExpectedRejection]
) -> list[str]:
    by_reason: dict[str, set[str]] = {}
    for outcome in outcomes:
        rejection = expected.get(outcome.case_id)
        if rejection is not None and rejection.matches(outcome):
            by_reason.setdefault(rejection.reason, set()).add(outcome.case_id)
    total = sum(len(cases) for cases in by_reason.values())
    lines = [f"  expected rejections: {total} questions"]
    for reason, cases in sorted(by_reason.items()):
        lines.append(f"    {len(cases)}: {reason}: {', '.join(sorted(cases))}")
    return lines
