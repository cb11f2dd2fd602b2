"""BFCL questions through real sessions on both wire protocols, streamed and not.

By default a sample runs: every 25th case of the two files, every case named below, and every
case whose ground truth has non-ASCII text, which keeps the test under a minute.
LLERO_TEST_BFCL_EVERY=1 runs every case. Either way the test prints the totals per file and
route and the expected rejections by reason.
"""

import json
import os
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llero.access.roles import Role
from llero.command.engine import Engine
from llero.crypto import Secret
from llero.storage.db import Database
from llero.vault.models import SecretKind
from tests.command.bfcl_sessions import (
    CORPUS,
    ROUTES,
    Case,
    ExpectedRejection,
    Rig,
    load_cases,
    run_case,
    summarize,
    unexpected_outcomes,
)
from tests.command.helpers import SIGNING_KEY, LocalAcademy, WebhookServer, serve_webhooks
from tests.command.provider_server import ProviderServer
from tests.conftest import MakeUser
from tests.forge.test_corpus import CASE_COUNT

SAMPLE_EVERY = int(os.environ.get("LLERO_TEST_BFCL_EVERY", "25"))

# BFCL's type "any" has no JSON Schema equivalent (BFCL's own checker treats it as a string).
# Llero checks every argument against one JSON type, so import refuses the spec and names the
# parameter to fix.
ANY_TYPE = "import refused: a parameter has BFCL's type 'any'"
# Llero's parameter names are ASCII letters, digits and "_.$-". Anthropic's Messages API also
# rejects other property names (its 400 error quotes the pattern ^[a-zA-Z0-9_.-]{1,64}$), and
# renaming the parameter would break every call that uses it, so import refuses the spec.
NON_ASCII_NAME = "import refused: a parameter name is not ASCII"
# BFCL's own checker (simple_function_checker in bfcl_eval/eval_checker/ast_eval/ast_checker.py)
# rejects a call that leaves out a required parameter. The first acceptable call of each of these
# ground truths leaves one out, so Llero rejects the call before it reaches the tool.
OMITS_REQUIRED = "ground truth leaves out an argument that its own spec requires"

EXPECTED_REJECTIONS = {
    # 'data' has type "any", and the ground truth sends the string "my_data".
    "simple_python_109": ExpectedRejection("import_refused:unsupported_type", ANY_TYPE),
    # 'input_value' has type "any", and its description allows a string, boolean or number.
    "live_simple_117-73-0": ExpectedRejection("import_refused:unsupported_type", ANY_TYPE),
    # 'model' has type "any", and the ground truth sends the string "vikhyatk/moondream2".
    "live_simple_122-78-0": ExpectedRejection("import_refused:unsupported_type", ANY_TYPE),
    # The parameter 'año_vehiculo' has a non-ASCII letter.
    "live_simple_67-31-0": ExpectedRejection(
        "import_refused:invalid_parameter_name", NON_ASCII_NAME
    ),
    # 'fuel_efficiency' is required, and its first acceptable value is "", which means "leave it
    # out". The second acceptable value, 25.0, would validate.
    "simple_python_200": ExpectedRejection(
        "arguments_rejected", OMITS_REQUIRED, frozenset({"$.fuel_efficiency"})
    ),
    # Two required arrays have no acceptable value at all ([]). BFCL's checker accepts no call
    # here, because leaving them out breaks "required" and no value is in an empty list.
    "live_simple_106-63-0": ExpectedRejection(
        "arguments_rejected",
        OMITS_REQUIRED,
        frozenset({"$.auto_loan_payment_start", "$.bank_hours_start"}),
    ),
    # Five required arrays have no acceptable value at all ([]), as in the case above.
    "live_simple_112-68-0": ExpectedRejection(
        "arguments_rejected",
        OMITS_REQUIRED,
        frozenset(
            {
                "$.acc_routing_start",
                "$.atm_finder_start",
                "$.faq_link_accounts_start",
                "$.get_balance_start",
                "$.get_transactions_start",
            }
        ),
    ),
}


def _always_run(case: Case) -> bool:
    """Return whether the sample must include ``case``: a named rejection, or a ground truth
    with non-ASCII text, which must cross both protocols and the signed body as UTF-8."""
    text = json.dumps(case.answer, ensure_ascii=False)
    return case.case_id in EXPECTED_REJECTIONS or not text.isascii()


@pytest.fixture
def webhooks() -> Iterator[WebhookServer]:
    yield from serve_webhooks()


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the BFCL corpus is not beside the project")
def test_bfcl_questions_reach_webhook_signed(
    app: FastAPI,
    make_user: MakeUser,
    database: Database,
    provider_server: ProviderServer,
    webhooks: WebhookServer,
) -> None:
    academy = LocalAcademy(
        provider_server.base_url,
        allowed=[f"127.0.0.1:{provider_server.port}", f"127.0.0.1:{webhooks.port}"],
    )
    app.state.command_engine = Engine(app.state.database, app.state.keyring, academy)
    secret = app.state.vault.create_secret(
        name="bfcl-hook", kind=SecretKind.WEBHOOK_SIGNING_KEY, value=Secret(SIGNING_KEY)
    )
    # The installed tools and agents belong to the operator, so an admin runs the sessions.
    developer = make_user(role=Role.ADMIN, email="operator@example.com")
    every_case = load_cases()
    sampled = {case.case_id for case in every_case[::SAMPLE_EVERY]}
    cases = [case for case in every_case if case.case_id in sampled or _always_run(case)]

    with TestClient(app, raise_server_exceptions=False, headers=developer.headers) as client:
        rig = Rig(client, database, academy, provider_server, webhooks, secret.secret_id)
        outcomes = [outcome for case in cases for outcome in run_case(rig, case)]

    print("\n" + summarize(outcomes, EXPECTED_REJECTIONS))
    assert unexpected_outcomes(outcomes, EXPECTED_REJECTIONS) == []
    assert len(outcomes) == len(cases) * len(ROUTES)
    assert len(every_case) == CASE_COUNT
    assert set(EXPECTED_REJECTIONS) <= {case.case_id for case in every_case}
