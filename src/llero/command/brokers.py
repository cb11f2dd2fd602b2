"""The Academy as the Command Center uses it: providers, egress rules, keys and budgets."""

from sqlalchemy.orm import Session

from llero.academy.allowlist import egress_policy
from llero.academy.budgets import (
    BudgetExceeded,
    applicable_budgets,
    check_budget,
    record_refusal,
)
from llero.academy.providers import ModelPrice, endpoint_of, get_provider_by_name, model_price
from llero.academy.resolution import resolve_for_agent
from llero.academy.usage import record_usage
from llero.audit.context import Actor, Origin, RequestContext
from llero.barracks.models import Agent
from llero.command.engine import ProviderRoute
from llero.command.providers.base import Usage
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.egress import EgressPolicy
from llero.logs import get_logger
from llero.storage.base import utc_now
from llero.storage.db import Database
from llero.storage.generation import GenerationCache
from llero.vault.service import VaultService

log = get_logger("llero.academy")


class LiveAcademy:
    """Routes model calls by the agent's provider configuration, under the egress policy."""

    def __init__(self, settings: Settings, database: Database, vault: VaultService) -> None:
        self._settings = settings
        self._database = database
        self._vault = vault
        # Budgets and checked grants, kept until the configuration changes.
        self._cache = GenerationCache()
        # The price of each provider's model when its last call was routed. A call is charged
        # at that price, even when an admin changes or removes the model while the call runs.
        self._prices: dict[tuple[str, str], ModelPrice] = {}

    def route(self, session: Session, agent: Agent, policy: EgressPolicy) -> ProviderRoute:
        provider = get_provider_by_name(session, agent.provider)
        # Raises ModelNotPriced, so a call whose cost cannot be recorded is never made.
        self._prices[provider.name, agent.model] = model_price(provider, agent.model)
        endpoint = endpoint_of(provider, policy)
        return ProviderRoute(endpoint, agent.model, provider.secret_id, f"provider:{provider.name}")

    def resolve(
        self,
        session: Session,
        *,
        agent_id: int,
        secret_id: int,
        purpose: str,
        session_ref: str,
        origin: Origin,
    ) -> Secret[str]:
        # Only a grant to this agent for this purpose releases the key; each use is recorded.
        return resolve_for_agent(
            session,
            self._vault,
            agent_id=agent_id,
            secret_id=secret_id,
            purpose=purpose,
            session_ref=session_ref,
            origin=origin,
            cache=self._cache,
        )

    def check_budget(
        self,
        session: Session,
        *,
        user_id: int,
        agent_id: int,
        request: RequestContext | None = None,
    ) -> int | None:
        """Raise BudgetExceeded when a budget is used up, after recording the refusal; return
        what is left of the tightest budget, or None when none applies.

        The refusal rolls back the caller's transaction, so its audit record is written in a
        transaction of its own.
        """
        budgets = self._cache.get(
            session,
            ("budgets", user_id, agent_id),
            lambda: tuple(applicable_budgets(session, user_id, agent_id)),
        )
        try:
            status = check_budget(session, user_id, agent_id, utc_now(), budgets)
        except BudgetExceeded as refusal:
            origin = Origin(Actor.user(user_id), request)
            # Deferred work may run after this block, where the name ``refusal`` is gone.
            exceeded = refusal

            def record(own: Session) -> None:
                record_refusal(own, origin, exceeded, agent_id=agent_id, session_id=None)

            self._database.in_own_transaction(session, record)
            log.info(
                "budget_exceeded",
                budget_id=refusal.spending.budget.id,
                user_id=user_id,
                agent_id=agent_id,
            )
            raise
        return status.remaining_micros

    def cost_micros(self, route: ProviderRoute, usage: Usage) -> int | None:
        price = self._prices.get((route.endpoint.name, route.model))
        if price is None:
            return None
        return price.cost_micros(usage.input_tokens, usage.output_tokens)

    def record_usage(
        self,
        session: Session,
        *,
        user_id: int,
        agent_id: int,
        chat_id: int | None,
        route: ProviderRoute,
        usage: Usage,
    ) -> None:
        provider = route.endpoint.name
        price = self._prices.get((provider, route.model))
        if price is None:
            price = model_price(get_provider_by_name(session, provider), route.model)
        record_usage(
            session,
            provider=provider,
            price=price,
            usage=usage,
            user_id=user_id,
            agent_id=agent_id,
            session_id=chat_id,
        )

    def egress_policy(self, session: Session) -> EgressPolicy:
        return egress_policy(self._settings, session)
