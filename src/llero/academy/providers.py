"""Provider configurations: where an agent's model is served, in which wire protocol, with which
key, and what each model costs.

Agents name their provider by ``name``, and a grant of a provider key names it too
(``provider:<name>``), so the name follows the same rule as a grant's purpose name.

A base URL is checked against the egress policy when it is saved, and again by ``endpoint_of``
before every call, because an allowlist entry may have been removed since. Changing the base URL
detaches the provider's secret: otherwise whoever may change the URL could send the key to a
host of their choosing. An admin re-attaches it on purpose.

Every function works in the caller's session and flushes but never commits, and records its
audit event in that same session, so the change and its record are committed together or not at
all. Audit details name the stored secret as ``key_id``, because the audit log hashes the value
under any key that contains "secret".

Prices are integers of micro-dollars (millionths of a US dollar) per million tokens, so no
amount of money is ever a float.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import urlsplit

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, relationship

from llero.audit.context import Origin, Target
from llero.audit.events import AuditEvent
from llero.audit.service import record_as
from llero.barracks.models import Agent
from llero.barracks.service import MODEL_MAX, line_problem
from llero.command.providers.client import Endpoint, WireProtocol
from llero.egress import URL_MAX, EgressPolicy, EgressRefused, check_url
from llero.errors import Conflict, InvalidInput, NotFound, Refused, Violation
from llero.storage.base import Base, DataClass, UTCDateTime, classified, utc_now
from llero.vault.models import SecretKind, StoredSecret

NAME_MAX = 64
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
PROTOCOL_MAX = 16
MODELS_MAX = 256
# One million dollars per million tokens: far above any published price, and small enough that
# a whole month of tokens times this price still fits in a 64-bit integer of micro-dollars.
PRICE_MAX = 10**12
MICROS_PER_DOLLAR = 1_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000

DEFAULT_BASE_URLS = {
    WireProtocol.OPENAI: "https://api.openai.com/v1",
    WireProtocol.ANTHROPIC: "https://api.anthropic.com",
}

# How many agent names a refusal lists before it stops.
_NAMES_SHOWN = 10


class Provider(Base):
    __tablename__ = "providers"

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    name: Mapped[str] = classified(DataClass.INTERNAL, String(NAME_MAX), unique=True)
    protocol: Mapped[str] = classified(DataClass.INTERNAL, String(PROTOCOL_MAX))
    base_url: Mapped[str] = classified(DataClass.INTERNAL, String(URL_MAX))
    # The provider API key sent with every call; None for a local server that needs no key, and
    # while the key is detached after a base URL change.
    secret_id: Mapped[int | None] = classified(
        DataClass.INTERNAL,
        ForeignKey("secrets.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    )
    created_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = classified(DataClass.INTERNAL, UTCDateTime, default=utc_now)

    models: Mapped[list["ProviderModel"]] = relationship(
        back_populates="provider",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="ProviderModel.name",
    )


class ProviderModel(Base):
    """A model a provider serves, with its prices in micro-dollars per million tokens."""

    __tablename__ = "provider_models"
    __table_args__ = (
        UniqueConstraint("provider_id", "name", name="uq_provider_models_provider_name"),
    )

    id: Mapped[int] = classified(DataClass.INTERNAL, Integer, primary_key=True)
    provider_id: Mapped[int] = classified(
        DataClass.INTERNAL, ForeignKey("providers.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = classified(DataClass.INTERNAL, String(MODEL_MAX))
    input_micros_per_million: Mapped[int] = classified(DataClass.INTERNAL, BigInteger)
    output_micros_per_million: Mapped[int] = classified(DataClass.INTERNAL, BigInteger)

    provider: Mapped[Provider] = relationship(back_populates="models")


@dataclass(frozen=True)
class ModelPrice:
    """A model's name and prices, in micro-dollars per million input and output tokens."""

    name: str
    input_micros_per_million: int
    output_micros_per_million: int

    def cost_micros(self, input_tokens: int, output_tokens: int) -> int:
        """Return the cost of a call in micro-dollars, rounded up to a whole micro-dollar.

        Rounding up means a budget is never passed by rounding: many small calls each cost at
        least what they used.
        """
        scaled = (
            input_tokens * self.input_micros_per_million
            + output_tokens * self.output_micros_per_million
        )
        return -(-scaled // TOKENS_PER_PRICE_UNIT)


@dataclass(frozen=True)
class NewProvider:
    """A provider to create; ``base_url`` None means the protocol's official URL."""

    name: str
    protocol: WireProtocol
    base_url: str | None = None
    secret_id: int | None = None
    models: Sequence[ModelPrice] = ()


class ProviderChanges(TypedDict, total=False):
    """The fields of a partial update; a key that is absent keeps its stored value."""

    name: str
    protocol: WireProtocol
    base_url: str
    # Replaces the whole list.
    models: Sequence[ModelPrice]


class ModelNotPriced(Refused):
    """The agent's model is not listed for its provider, so its calls could not be priced."""

    code = "model_not_priced"


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{field}: {problem}", details=[Violation(field, problem)])


# Reading.


def list_providers(session: Session) -> list[Provider]:
    return list(session.scalars(select(Provider).order_by(Provider.name)))


def get_provider(session: Session, provider_id: int) -> Provider:
    provider = session.get(Provider, provider_id)
    if provider is None:
        raise NotFound(f"provider {provider_id} not found")
    return provider


def get_provider_by_name(session: Session, name: str) -> Provider:
    provider = session.scalar(select(Provider).where(Provider.name == name.strip().lower()))
    if provider is None:
        raise NotFound(f"no provider is named {name!r}; an admin creates it first")
    return provider


def model_price(provider: Provider, model: str) -> ModelPrice:
    """Return the prices of ``model``; raise ModelNotPriced when the provider does not list it.

    The run loop calls this before a provider call, so a call whose cost could not be recorded
    is never made.
    """
    for listed in provider.models:
        if listed.name == model:
            return ModelPrice(
                listed.name, listed.input_micros_per_million, listed.output_micros_per_million
            )
    raise ModelNotPriced(
        f"model {model!r} is not listed for provider {provider.name!r}; an admin adds it with "
        "its prices"
    )


def endpoint_of(provider: Provider, policy: EgressPolicy) -> Endpoint:
    """Return where to call ``provider``, checking its base URL against today's policy."""
    check_url(provider.base_url, policy)
    return Endpoint(provider.name, WireProtocol(provider.protocol), provider.base_url)


# Input rules.


def check_name(value: object, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise _invalid(
            field,
            "must be 1 to 64 characters of a-z, 0-9, '_', '.' and '-', starting with a letter "
            "or digit",
        )
    return value


def check_base_url(value: object, policy: EgressPolicy, field: str = "base_url") -> str:
    """Return the URL without a trailing slash; raise InvalidInput naming the broken rule."""
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    url = value.rstrip("/")
    try:
        check_url(url, policy)
    except EgressRefused as refused:
        raise EgressRefused(
            f"{field}: {refused.message}", details=[Violation(field, refused.message)]
        ) from None
    # A query string would be sent with every call and shown to every admin; keys put there
    # would leak into logs and audit records, so none is accepted.
    if urlsplit(url).query:
        raise _invalid(field, "must not contain a query string")
    return url


def check_protocol(value: object) -> WireProtocol:
    if isinstance(value, str) and value in set(WireProtocol):
        return WireProtocol(value)
    allowed = ", ".join(protocol.value for protocol in WireProtocol)
    raise _invalid("protocol", f"must be one of: {allowed}")


def check_models(models: Sequence[ModelPrice], field: str = "models") -> list[ModelPrice]:
    if len(models) > MODELS_MAX:
        raise _invalid(field, f"must contain at most {MODELS_MAX} models")
    seen: set[str] = set()
    for position, model in enumerate(models):
        where = f"{field}.{position}"
        problem = line_problem(model.name, MODEL_MAX)
        if problem is not None:
            raise _invalid(f"{where}.name", problem)
        if model.name in seen:
            raise _invalid(f"{where}.name", f"repeats the model {model.name!r}; list it once")
        seen.add(model.name)
        for price_field in ("input_micros_per_million", "output_micros_per_million"):
            price = getattr(model, price_field)
            if isinstance(price, bool) or not isinstance(price, int):
                raise _invalid(f"{where}.{price_field}", "must be an integer")
            if not 0 <= price <= PRICE_MAX:
                raise _invalid(f"{where}.{price_field}", f"must be from 0 to {PRICE_MAX}")
    return list(models)


def _provider_key(session: Session, secret_id: object, field: str = "secret_id") -> int:
    """Return ``secret_id`` when it names a stored provider API key; raise InvalidInput."""
    if isinstance(secret_id, bool) or not isinstance(secret_id, int):
        raise _invalid(field, "must be an integer secret id")
    secret = session.get(StoredSecret, secret_id) if 1 <= secret_id <= 2**31 - 1 else None
    if secret is None:
        raise _invalid(field, f"no secret has id {secret_id}")
    if secret.kind != SecretKind.PROVIDER_API_KEY:
        raise _invalid(
            field,
            f"secret {secret_id} is a {secret.kind}; a provider needs a "
            f"{SecretKind.PROVIDER_API_KEY}",
        )
    return secret_id


# Changing.


def create_provider(
    session: Session, origin: Origin, policy: EgressPolicy, new: NewProvider
) -> Provider:
    """Create a provider; raise InvalidInput for a bad value and Conflict for a taken name."""
    name = check_name(new.name)
    protocol = check_protocol(new.protocol)
    base_url = check_base_url(new.base_url or DEFAULT_BASE_URLS[protocol], policy)
    models = check_models(new.models)
    secret_id = None if new.secret_id is None else _provider_key(session, new.secret_id)
    _check_name_free(session, name, None)

    now = utc_now()
    provider = Provider(
        name=name,
        protocol=protocol.value,
        base_url=base_url,
        secret_id=secret_id,
        created_at=now,
        updated_at=now,
    )
    provider.models = [_model_row(model) for model in models]
    session.add(provider)
    _flush(session, name)

    record_as(
        session,
        origin,
        AuditEvent.PROVIDER_CREATED,
        Target.of("provider", provider.id),
        {
            "name": name,
            "protocol": protocol.value,
            "base_url": base_url,
            "key_id": secret_id,
            "models": [model.name for model in models],
        },
    )
    return provider


def update_provider(
    session: Session,
    origin: Origin,
    policy: EgressPolicy,
    provider_id: int,
    changes: ProviderChanges,
) -> Provider:
    """Apply ``changes``; a new base URL detaches the secret (recorded as its own event)."""
    provider = get_provider(session, provider_id)
    checked = _checked_changes(session, policy, provider, changes)
    changed = sorted(field for field, value in checked.items() if _differs(provider, field, value))
    if not changed:
        return provider

    detached_secret = None
    if "base_url" in changed and provider.secret_id is not None:
        detached_secret = provider.secret_id
        provider.secret_id = None
    for field in changed:
        if field == "models":
            _replace_models(provider, checked["models"])
        else:
            setattr(provider, field, checked[field])
    provider.updated_at = utc_now()
    _flush(session, provider.name)

    target = Target.of("provider", provider.id)
    detail: dict[str, Any] = {"name": provider.name, "changed": changed}
    if "base_url" in changed:
        detail["base_url"] = provider.base_url
    record_as(session, origin, AuditEvent.PROVIDER_UPDATED, target, detail)
    if detached_secret is not None:
        _record_detached(session, origin, provider, detached_secret, "base_url_changed")
    return provider


def attach_secret(session: Session, origin: Origin, provider_id: int, secret_id: int) -> Provider:
    """Make ``secret_id`` the provider's key; it must be a provider API key."""
    provider = get_provider(session, provider_id)
    provider.secret_id = _provider_key(session, secret_id)
    provider.updated_at = utc_now()
    _flush(session, provider.name)
    record_as(
        session,
        origin,
        AuditEvent.PROVIDER_SECRET_ATTACHED,
        Target.of("provider", provider.id),
        {"name": provider.name, "key_id": secret_id, "base_url": provider.base_url},
    )
    return provider


def detach_secret(session: Session, origin: Origin, provider_id: int) -> Provider:
    """Remove the provider's key; calls then go without one until a key is attached."""
    provider = get_provider(session, provider_id)
    if provider.secret_id is None:
        return provider
    detached = provider.secret_id
    provider.secret_id = None
    provider.updated_at = utc_now()
    _flush(session, provider.name)
    _record_detached(session, origin, provider, detached, "detached")
    return provider


def _record_detached(
    session: Session, origin: Origin, provider: Provider, key_id: int, reason: str
) -> None:
    record_as(
        session,
        origin,
        AuditEvent.PROVIDER_SECRET_DETACHED,
        Target.of("provider", provider.id),
        {"name": provider.name, "key_id": key_id, "reason": reason},
    )


def delete_provider(session: Session, origin: Origin, provider_id: int) -> None:
    """Delete a provider that no agent uses; raise Conflict naming the agents otherwise."""
    provider = get_provider(session, provider_id)
    _check_unused(session, provider, "deleted")
    name = provider.name
    session.delete(provider)
    session.flush()
    record_as(
        session,
        origin,
        AuditEvent.PROVIDER_DELETED,
        Target.of("provider", provider_id),
        {"name": name},
    )


# Helpers.


def _checked_changes(
    session: Session, policy: EgressPolicy, provider: Provider, changes: ProviderChanges
) -> dict[str, Any]:
    unknown = sorted(set(changes) - {"name", "protocol", "base_url", "models"})
    if unknown:
        raise _invalid(unknown[0], "is not a field that can be changed")
    checked: dict[str, Any] = {}
    if "name" in changes:
        checked["name"] = check_name(changes["name"])
        if checked["name"] != provider.name:
            _check_name_free(session, checked["name"], provider.id)
            _check_unused(session, provider, "renamed")
    if "protocol" in changes:
        checked["protocol"] = check_protocol(changes["protocol"]).value
    if "base_url" in changes:
        checked["base_url"] = check_base_url(changes["base_url"], policy)
    if "models" in changes:
        checked["models"] = check_models(changes["models"])
    return checked


def _differs(provider: Provider, field: str, value: Any) -> bool:
    if field == "models":
        current = [_price_of(row) for row in provider.models]
        return sorted(current, key=lambda m: m.name) != sorted(value, key=lambda m: m.name)
    return bool(getattr(provider, field) != value)


def _price_of(row: ProviderModel) -> ModelPrice:
    return ModelPrice(row.name, row.input_micros_per_million, row.output_micros_per_million)


def _model_row(model: ModelPrice) -> ProviderModel:
    return ProviderModel(
        name=model.name,
        input_micros_per_million=model.input_micros_per_million,
        output_micros_per_million=model.output_micros_per_million,
    )


def _replace_models(provider: Provider, models: Sequence[ModelPrice]) -> None:
    # Rows are updated in place by name, because deleting and re-inserting a name in one flush
    # can insert before it deletes and hit the unique constraint.
    wanted = {model.name: model for model in models}
    provider.models = [row for row in provider.models if row.name in wanted]
    rows = {row.name: row for row in provider.models}
    for name, model in wanted.items():
        row = rows.get(name)
        if row is None:
            provider.models.append(_model_row(model))
            continue
        row.input_micros_per_million = model.input_micros_per_million
        row.output_micros_per_million = model.output_micros_per_million


def _check_name_free(session: Session, name: str, provider_id: int | None) -> None:
    owner = session.scalar(select(Provider.id).where(Provider.name == name))
    if owner is not None and owner != provider_id:
        raise Conflict(
            f"a provider named {name!r} already exists; choose another name",
            details=[Violation("name", "is already used by another provider")],
        )


def _check_unused(session: Session, provider: Provider, action: str) -> None:
    """Raise Conflict when agents name the provider, since they name it by its name."""
    names = list(
        session.scalars(
            select(Agent.name)
            .where(Agent.provider == provider.name)
            .order_by(Agent.name)
            .limit(_NAMES_SHOWN + 1)
        )
    )
    if not names:
        return
    shown = ", ".join(names[:_NAMES_SHOWN]) + (", ..." if len(names) > _NAMES_SHOWN else "")
    raise Conflict(
        f"provider {provider.name!r} cannot be {action} while agents use it: {shown}; move "
        "those agents to another provider first"
    )


def _flush(session: Session, name: str) -> None:
    """Flush, turning a concurrent write that took the name into Conflict."""
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict(
            f"provider {name!r} was not saved because a concurrent change took its name or "
            "removed its secret; retry the request"
        ) from error
