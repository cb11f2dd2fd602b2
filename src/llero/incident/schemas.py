"""Request and response bodies of the incident routes."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from llero.barracks.quarantine import REASON_MAX
from llero.incident.models import LOCKDOWN_REASON_MAX
from llero.web.schemas import RequestModel, ResponseModel


class RevokeAllRequest(RequestModel):
    # Spelled out, so that a stray or replayed empty POST cannot sign everyone out.
    confirm: Literal["revoke-all"] = Field(description='Must be "revoke-all".')


class RevokeAllOut(ResponseModel):
    sessions: int
    api_tokens: int
    one_time_codes: int
    not_before: datetime = Field(description="Access tokens issued before this are rejected.")


class LockdownUpdate(RequestModel):
    enabled: bool
    reason: Annotated[str, Field(max_length=LOCKDOWN_REASON_MAX)] = ""


class LockdownOut(ResponseModel):
    enabled: bool
    reason: str
    changed_at: datetime | None


class QuarantineRequest(RequestModel):
    reason: Annotated[str, Field(min_length=1, max_length=REASON_MAX)]


class ReleaseRequest(RequestModel):
    confirm: Literal["release"] = Field(description='Must be "release".')


class SigningKeyRotation(RequestModel):
    confirm: Literal["rotate"] = Field(description='Must be "rotate".')


class SigningKeyRotated(ResponseModel):
    kid: str = Field(description="The key id of the new current signing key.")
    previous_kid: str
