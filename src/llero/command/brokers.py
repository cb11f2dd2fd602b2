"""The Academy as the Command Center sees it, until provider configurations are wired in.

NOTE: without provider configurations every run stops with a clear refusal; the Academy's
providers, grants and budgets replace this class as they land.
"""

from sqlalchemy.orm import Session

from llero.audit.context import Origin
from llero.barracks.models import Agent
from llero.command.engine import ProviderRoute
from llero.command.providers.base import Usage
from llero.config.settings import Settings
from llero.crypto import Secret
from llero.egress import EgressPolicy
from llero.errors import Refused


class UnconfiguredAcademy:
    """An Academy with no providers: routes are refused, nothing is resolved or metered."""

    def __init__(self, settings: Settings) -> None:
        self._policy = EgressPolicy()
        del settings

    def route(self, session: Session, agent: Agent) -> ProviderRoute:
        raise Refused(f"no provider named {agent.provider!r} is configured")

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
        raise Refused("no secret can be resolved before providers are configured")

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
        return self._policy
