"""Request and response bodies of the secret routes.

A value goes in as a write-only string and never comes back out: the response models below have
no field that could carry it, and a test walks the OpenAPI document to check that.
"""

from datetime import datetime
from typing import Annotated, Self

from pydantic import ConfigDict, Field, SecretStr

from llero.academy.models import PURPOSE_MAX
from llero.academy.purposes import PURPOSE_PATTERN_TEXT
from llero.academy.service import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, SecretPage, SecretView
from llero.barracks.schemas import Expiry
from llero.vault.models import DESCRIPTION_MAX, NAME_MAX, SecretKind
from llero.vault.service import MAX_VALUE_BYTES, NAME_PATTERN, VersionInfo
from llero.web.schemas import ID_MAX, RecordId, RequestModel, ResponseModel

# A value is at most MAX_VALUE_BYTES in UTF-8; the service checks the byte length, and this bound
# on characters lets the OpenAPI document publish a limit.
Value = Annotated[
    SecretStr,
    Field(
        min_length=1,
        max_length=MAX_VALUE_BYTES,
        description="The secret value. Write-only: no response ever contains it.",
        json_schema_extra={"writeOnly": True},
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=f"^{NAME_PATTERN.pattern}$")]
Kind = Annotated[SecretKind, Field(strict=False)]
Purpose = Annotated[
    str,
    Field(
        min_length=1,
        max_length=PURPOSE_MAX,
        pattern=f"^{PURPOSE_PATTERN_TEXT}$",
        description="provider:<name> for a provider API key (the agent's own provider), "
        "webhook:<name> for a webhook signing key, generic:<name> for a generic secret.",
        examples=["provider:openai"],
    ),
]


class SecretCreate(RequestModel):
    name: Name
    kind: Kind = SecretKind.GENERIC
    value: Value
    description: Annotated[str, Field(max_length=DESCRIPTION_MAX)] = ""
    expires_at: Expiry | None = None


class SecretRotate(RequestModel):
    """A new value, which becomes the current version; the expiry applies to it alone."""

    value: Value
    expires_at: Expiry | None = None


class GrantCreate(RequestModel):
    agent_id: RecordId
    purpose: Purpose


class SecretQuery(RequestModel):
    model_config = ConfigDict(extra="forbid", strict=False)

    limit: Annotated[int, Field(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT
    offset: Annotated[int, Field(ge=0, le=ID_MAX)] = 0


class SecretVersionOut(ResponseModel):
    version: int
    hint: str = Field(description="The last four characters, empty for values under 16.")
    created_at: datetime
    rotated_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None
    destroyed: bool
    destroyed_at: datetime | None

    @classmethod
    def of(cls, info: VersionInfo) -> Self:
        return cls.model_validate(info)


class SecretSummary(ResponseModel):
    id: int
    name: str
    kind: str
    description: str
    owner_user_id: int | None
    current_version: int
    hint: str
    created_at: datetime
    rotated_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def of(cls, view: SecretView) -> Self:
        return cls(**{name: getattr(view, name) for name in SecretSummary.model_fields})


class SecretDetail(SecretSummary):
    versions: list[SecretVersionOut]

    @classmethod
    def of(cls, view: SecretView) -> Self:
        fields = {name: getattr(view, name) for name in SecretSummary.model_fields}
        return cls(**fields, versions=[SecretVersionOut.of(info) for info in view.versions])


class SecretList(ResponseModel):
    items: list[SecretSummary]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, page: SecretPage) -> Self:
        items = [SecretSummary.of(view) for view in page.items]
        return cls(items=items, total=page.total, limit=page.limit, offset=page.offset)


class GrantOut(ResponseModel):
    id: int
    secret_id: int
    agent_id: int
    purpose: str
    granted_by_user_id: int | None
    created_at: datetime


class GrantList(ResponseModel):
    items: list[GrantOut]
