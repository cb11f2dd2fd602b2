"""Base classes for request and response bodies.

Request bodies are strict: unknown fields are rejected, and every string and list has a bound, so
each route publishes the exact shape it accepts in the OpenAPI document.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Ids and counters are stored as 32-bit integers on PostgreSQL, so larger values are rejected
# as input instead of overflowing in the database driver.
ID_MAX = 2**31 - 1
RecordId = Annotated[int, Field(ge=1, le=ID_MAX)]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_max_length=65_536)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorDetail(ResponseModel):
    field: str
    problem: str


class ErrorResponse(ResponseModel):
    error: str
    message: str
    request_id: str
    details: list[ErrorDetail] = []
