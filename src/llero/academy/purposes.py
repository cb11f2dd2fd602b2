"""What a grant lets an agent use a secret for, written ``<scope>:<name>``.

The scope follows from the secret's kind, so a key can never be granted for another kind of use:

    provider API key     provider:<provider>   only for calls to that provider, which must be the
                                               agent's own provider (``provider:openai``)
    webhook signing key  webhook:<name>        signing or checking the webhook called <name>
    generic              generic:<name>        whatever <name> means to the code that resolves it

The name is 1 to 64 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit.
Provider names are compared with the agent's provider in lower case.
"""

import re

from llero.errors import InvalidInput, Violation
from llero.vault.models import SecretKind

SCOPE_BY_KIND = {
    SecretKind.PROVIDER_API_KEY: "provider",
    SecretKind.WEBHOOK_SIGNING_KEY: "webhook",
    SecretKind.GENERIC: "generic",
}
PURPOSE_PATTERN = re.compile(r"(provider|webhook|generic):([a-z0-9][a-z0-9_.-]{0,63})")
PURPOSE_PATTERN_TEXT = PURPOSE_PATTERN.pattern


def check_purpose(kind: str, purpose: str, *, field: str = "purpose") -> str:
    """Return the name part of ``purpose``; raise InvalidInput unless it fits the secret's kind."""
    match = PURPOSE_PATTERN.fullmatch(purpose)
    if match is None:
        raise InvalidInput(
            f"{field}: must be <scope>:<name>, with scope provider, webhook or generic and a name "
            "of 1 to 64 characters of a-z, 0-9, '_', '.', '-'",
            details=[Violation(field, "invalid purpose")],
        )
    expected = SCOPE_BY_KIND[SecretKind(kind)]
    if match[1] != expected:
        raise InvalidInput(
            f"{field}: a secret of kind {kind} can only be granted for {expected}:<name>",
            details=[Violation(field, f"scope must be {expected}")],
        )
    return match[2]


def provider_matches(provider_name: str, agent_provider: str) -> bool:
    return provider_name == agent_provider.strip().lower()
