"""Request and response bodies of the egress allowlist routes."""

from datetime import datetime
from typing import Annotated

from pydantic import Field

from llero.academy.allowlist import VALUE_MAX, EntryKind
from llero.web.schemas import RequestModel, ResponseModel


class EntryCreate(RequestModel):
    """A host such as ``llm.example.org``, or an endpoint ``host:port`` such as
    ``127.0.0.1:11434``."""

    # JSON carries enum members as strings, which strict mode rejects, so the kind is lax.
    kind: Annotated[EntryKind, Field(strict=False)]
    value: Annotated[str, Field(min_length=1, max_length=VALUE_MAX, examples=["127.0.0.1:11434"])]


class EntryOut(ResponseModel):
    id: int
    kind: EntryKind
    value: str
    created_by_user_id: int | None
    created_at: datetime


class ConfiguredEgress(ResponseModel):
    """The allowlist of LLERO_EGRESS_ALLOWED_HOSTS and LLERO_EGRESS_ALLOWED_ENDPOINTS."""

    hosts: list[str]
    endpoints: list[str]


class EgressOut(ResponseModel):
    settings: ConfiguredEgress
    entries: list[EntryOut]
