"""The egress policy in force: the hosts and endpoints of the settings.

Routes that save a URL and the run loop that calls one both build the policy here, so a URL is
judged by the same rules when it is saved and when it is used.
"""

from sqlalchemy.orm import Session

from llero.config.settings import Settings
from llero.egress import EgressPolicy, Endpoint


def egress_policy(settings: Settings, session: Session) -> EgressPolicy:
    """Return the policy of LLERO_EGRESS_ALLOWED_HOSTS and LLERO_EGRESS_ALLOWED_ENDPOINTS."""
    del session  # TODO: admin-managed entries stored in the database join the policy here.
    return EgressPolicy(
        frozenset(settings.egress_allowed_hosts),
        frozenset(Endpoint.parse(item) for item in settings.egress_allowed_endpoints),
    )
