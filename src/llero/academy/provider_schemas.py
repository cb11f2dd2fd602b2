"""Request and response bodies of the provider routes.

Prices are integers of micro-dollars per million tokens: $2.50 per million input tokens is
``"input_micros_per_million": 2500000``. Readers without provider:update get ``ProviderView``,
which leaves out the base URL and the secret id: where a key goes, and which key, is admin
business.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Self, cast

from pydantic import ConfigDict, Field, field_validator

from llero.academy.providers import (
    MODELS_MAX,
    NAME_MAX,
    PRICE_MAX,
    ModelPrice,
    Provider,
    ProviderChanges,
)
from llero.barracks.service import MODEL_MAX
from llero.command.providers.client import WireProtocol
from llero.egress import URL_MAX
from llero.web.schemas import RecordId, RequestModel, ResponseModel

Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, examples=["openai"])]
Price = Annotated[int, Field(ge=0, le=PRICE_MAX)]
# JSON carries enum members as strings, which strict mode rejects, so the protocol is lax.
Protocol = Annotated[WireProtocol, Field(strict=False)]
BaseUrl = Annotated[str, Field(min_length=1, max_length=URL_MAX)]


class ModelIn(RequestModel):
    name: Annotated[str, Field(min_length=1, max_length=MODEL_MAX, examples=["gpt-4o"])]
    input_micros_per_million: Price
    output_micros_per_million: Price

    def price(self) -> ModelPrice:
        return ModelPrice(self.name, self.input_micros_per_million, self.output_micros_per_million)


Models = Annotated[list[ModelIn], Field(max_length=MODELS_MAX)]


def prices_of(models: Sequence[ModelIn]) -> list[ModelPrice]:
    return [model.price() for model in models]


class ProviderCreate(RequestModel):
    """A new provider; without ``base_url`` it gets the protocol's official URL."""

    name: Name
    protocol: Protocol
    base_url: BaseUrl | None = None
    secret_id: RecordId | None = None
    models: Models = Field(default_factory=list)


class ProviderUpdate(RequestModel):
    """A partial update; ``models`` replaces the whole list. A new ``base_url`` detaches the
    secret until an admin attaches one again."""

    name: Name | None = None
    protocol: Protocol | None = None
    base_url: BaseUrl | None = None
    models: Models | None = None

    @field_validator("name", "protocol", "base_url", "models")
    @classmethod
    def _reject_null(cls, value: object) -> object:
        # Only values that were sent reach this validator, so None here is an explicit null.
        if value is None:
            raise ValueError("must not be null; omit the field to keep its value")
        return value

    def changes(self) -> ProviderChanges:
        changes = self.model_dump(exclude_unset=True, exclude={"models"})
        if self.models is not None:
            changes["models"] = prices_of(self.models)
        return cast(ProviderChanges, changes)


class SecretAttach(RequestModel):
    secret_id: RecordId


class ModelOut(ResponseModel):
    name: str
    input_micros_per_million: int
    output_micros_per_million: int


class ProviderView(ResponseModel):
    """A provider as anyone with provider:read sees it."""

    # Unknown fields are rejected, so a detail never validates as a view and the union in a
    # response picks the right model.
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    id: int
    name: str
    protocol: WireProtocol
    models: list[ModelOut]
    secret_attached: bool

    @classmethod
    def of(cls, provider: Provider) -> Self:
        return cls(
            id=provider.id,
            name=provider.name,
            protocol=WireProtocol(provider.protocol),
            models=[ModelOut.model_validate(model) for model in provider.models],
            secret_attached=provider.secret_id is not None,
        )


class ProviderDetail(ProviderView):
    """A provider as an admin sees it, with where its calls go and with which key."""

    base_url: str
    secret_id: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, provider: Provider) -> Self:
        view = ProviderView.of(provider).model_dump()
        return cls(
            **view,
            base_url=provider.base_url,
            secret_id=provider.secret_id,
            created_at=provider.created_at,
            updated_at=provider.updated_at,
        )


class ProviderList(ResponseModel):
    items: list[ProviderDetail | ProviderView]
