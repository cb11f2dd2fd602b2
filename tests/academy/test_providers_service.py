"""The provider service as the run loop uses it: the policy in force, the endpoint checked again
at call time, and prices turned into costs."""

import pytest

from llero.academy.allowlist import egress_policy
from llero.academy.providers import (
    ModelNotPriced,
    ModelPrice,
    Provider,
    ProviderModel,
    endpoint_of,
    model_price,
)
from llero.command.providers.client import WireProtocol
from llero.config.settings import Settings
from llero.egress import EgressPolicy, EgressRefused, Endpoint
from llero.storage.db import Database


def _provider(base_url: str) -> Provider:
    provider = Provider(name="ollama", protocol="openai", base_url=base_url)
    provider.models = [
        ProviderModel(
            name="llama3", input_micros_per_million=100_000, output_micros_per_million=300_000
        )
    ]
    return provider


def test_policy_comes_from_settings(settings: Settings, database: Database) -> None:
    configured = settings.model_copy(
        update={
            "egress_allowed_hosts": ["llm.example.org"],
            "egress_allowed_endpoints": ["127.0.0.1:11434", "[::1]:8000"],
        }
    )

    with database.reader() as session:
        policy = egress_policy(configured, session)

    assert policy.allowed_hosts == frozenset({"llm.example.org"})
    assert policy.allowed_endpoints == frozenset(
        {Endpoint("127.0.0.1", 11434), Endpoint("::1", 8000)}
    )


def test_endpoint_of_allowed_provider() -> None:
    policy = EgressPolicy.of([], ["127.0.0.1:11434"])

    endpoint = endpoint_of(_provider("http://127.0.0.1:11434/v1"), policy)

    assert endpoint.name == "ollama"
    assert endpoint.protocol is WireProtocol.OPENAI
    assert endpoint.url() == "http://127.0.0.1:11434/v1/chat/completions"


def test_endpoint_of_checks_policy_again() -> None:
    # Saved while 127.0.0.1:11434 was allowed; the entry has since been removed.
    policy_now = EgressPolicy.of(["api.openai.com"], [])

    with pytest.raises(EgressRefused) as caught:
        endpoint_of(_provider("http://127.0.0.1:11434/v1"), policy_now)

    assert "127.0.0.1:11434 is not one" in caught.value.message


def test_model_price_of_listed_model() -> None:
    assert model_price(_provider("https://x"), "llama3") == ModelPrice("llama3", 100_000, 300_000)


def test_model_price_of_unlisted_model_refused() -> None:
    with pytest.raises(ModelNotPriced) as caught:
        model_price(_provider("https://x"), "llama3:70b")

    assert caught.value.code == "model_not_priced"
    assert caught.value.message == (
        "model 'llama3:70b' is not listed for provider 'ollama'; an admin adds it with its prices"
    )


@pytest.mark.parametrize(
    ("input_tokens", "output_tokens", "cost"),
    [
        (0, 0, 0),
        # $2.50 and $10 per million tokens: 1000 in and 500 out cost 2500 + 5000 micro-dollars.
        (1000, 500, 7500),
        # 1 token at $2.50 per million is 2.5 micro-dollars, rounded up.
        (1, 0, 3),
        (0, 1, 10),
        (1_000_000, 1_000_000, 12_500_000),
    ],
)
def test_cost_is_exact_and_rounded_up(input_tokens: int, output_tokens: int, cost: int) -> None:
    price = ModelPrice("gpt-4o", 2_500_000, 10_000_000)

    assert price.cost_micros(input_tokens, output_tokens) == cost
