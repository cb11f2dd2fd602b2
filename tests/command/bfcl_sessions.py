"""Run BFCL questions through real sessions: import the case's function as a webhook tool, let
the local provider answer with the ground-truth call, and check that the call reached the tool
server validated and signed.

Shared by the corpus test (a sample) and benchmarks/bfcl_sessions.py (every case).
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from llero.access.ownership import Caller
from llero.barracks.models import Agent
from llero.barracks.service import NewAgent, create_agent, delete_agent
from llero.command.models import ToolRunner
from llero.command.webhooks import SIGNATURE_HEADER, verify
from llero.crypto import Secret
from llero.forge.bfcl import first_acceptable_arguments, import_cases, parse_answers
from llero.forge.formats import RefusedSpec
from llero.forge.models import ToolStatus
from llero.forge.service import ToolFields, create_tool, delete_tool
from llero.storage.db import Database
from tests.command.helpers import SIGNING_KEY, WebhookServer
from tests.command.provider_server import PlannedCall, ProviderServer

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "bfcl"
FILES = ("BFCL_v4_simple_python", "BFCL_v4_live_simple")

# The tests install tools and agents as the operator, who sees every object.
OPERATOR = Caller.system("test")


@dataclass(frozen=True)
class CaseOutcome:
    case_id: str
    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class Case:
    case_id: str
    question: str
    entry: Any
    answer: dict[str, Any]


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
            cases.append(Case(case_id, text, imported[case_id], arguments))
    return cases[::every]


@dataclass(frozen=True)
class Rig:
    """The running pieces a case needs: Llero, its database and the two local servers."""

    client: TestClient
    database: Database
    provider: ProviderServer
    webhooks: WebhookServer
    secret_id: int


def run_case(rig: Rig, case: Case) -> CaseOutcome:
    """Run one case in a fresh agent and session; remove them afterwards."""
    client, database, provider, webhooks = rig.client, rig.database, rig.provider, rig.webhooks
    if isinstance(case.entry, RefusedSpec):
        return CaseOutcome(case.case_id, False, f"import refused: {case.entry.reason}")
    spec = case.entry.spec
    expected = first_acceptable_arguments(
        case.answer, {parameter.name: parameter for parameter in spec.parameters}
    )
    tool_id, agent_id = _install(database, case, webhooks.url, rig.secret_id)
    provider.answers.clear()
    provider.teach(case.question, [PlannedCall(spec.name, expected)])
    webhooks.calls.clear()
    try:
        chat = client.post("/api/sessions", json={"agent_id": agent_id})
        result = client.post(
            f"/api/sessions/{chat.json()['id']}/messages", json={"content": case.question}
        ).json()
    finally:
        _remove(database, tool_id, agent_id)
    return _judge(case.case_id, result, webhooks, expected)


def _install(database: Database, case: Case, url: str, secret_id: int) -> tuple[int, int]:
    spec = case.entry.spec
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
            original_name=case.entry.original_name,
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


def _judge(
    case_id: str, result: dict[str, Any], webhooks: WebhookServer, expected: dict[str, Any]
) -> CaseOutcome:
    if result.get("status") != "completed":
        return CaseOutcome(case_id, False, f"run ended {result.get('status')}: {result}")
    if not webhooks.calls:
        return CaseOutcome(case_id, False, f"the tool was not called: {result['text'][:300]}")
    call = webhooks.calls[0]
    signature = call["headers"].get(SIGNATURE_HEADER, "")
    if not verify(Secret(SIGNING_KEY), signature, call["body"], now=int(time.time())):
        return CaseOutcome(case_id, False, "the webhook signature did not verify")
    received = json.loads(call["body"])["arguments"]
    if received != json.loads(json.dumps(expected)):
        return CaseOutcome(case_id, False, f"arguments differ: {received} != {expected}")
    return CaseOutcome(case_id, True)
