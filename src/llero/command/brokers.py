"""The Academy as the Command Center uses it: providers, egress rules, keys and budgets."""

from sqlalchemy.orm import Session

from llero.academy.allowlist import egress_policy
from llero.academy.providers import endpoint_of, get_provider_by_name, model_price
from llero.audit.context import Origin
from llero.barracks.models import Agent
from llero.command.engine import ProviderRoute
from llero.command.providers.base import Usage
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.egress import EgressPolicy
from llero.errors import Refused


class LiveAcademy:
    """Routes model calls by the agent's provider configuration, under the egress policy."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def route(self, session: Session, agent: Agent) -> ProviderRoute:
        provider = get_provider_by_name(session, agent.provider)
        # Raises ModelNotPriced, so a call whose cost cannot be recorded is never made.
        model_price(provider, agent.model)
        endpoint = endpoint_of(provider, self.egress_policy(session))
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
        # TODO: resolve through grants (academy.resolution) once they are on main; until then
        # no key leaves the vault for a model call.
        raise Refused("provider keys can be used only through grants, which are not set up yet")

    def check_budget(self, session: Session, *, user_id: int, agent_id: int) -> None:
        return

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
        return

    def egress_policy(self, session: Session) -> EgressPolicy:
        return egress_policy(self._settings, session)
