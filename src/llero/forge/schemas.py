"""Request and response bodies of the tool and category routes."""

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import Field, JsonValue, field_validator, model_validator

from llero.forge.models import DESCRIPTION_MAX, NAME_MAX, ToolStatus
from llero.forge.spec import MAX_PARAMETERS, TOOL_NAME_PATTERN, Parameter
from llero.web.schemas import ID_MAX, RecordId, RequestModel, ResponseModel

# Category names are shown in lists and error messages, so they are limited to letters, digits
# and a few separators.
CATEGORY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$"
MAX_ARGUMENTS = 256

ToolName = Annotated[str, Field(pattern=TOOL_NAME_PATTERN, max_length=NAME_MAX)]
CategoryName = Annotated[str, Field(pattern=CATEGORY_NAME_PATTERN, max_length=NAME_MAX)]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX)]
Parameters = Annotated[list[Parameter], Field(max_length=MAX_PARAMETERS)]
StatusField = Annotated[ToolStatus, Field(strict=False)]
ToolId = RecordId


class ToolCreate(RequestModel):
    name: ToolName
    description: Description = ""
    parameters: Parameters = Field(default_factory=list)
    category_id: ToolId | None = None
    status: StatusField = ToolStatus.DRAFT


def _reject_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null; leave the field out to keep its value")
    return value


class ToolUpdate(RequestModel):
    """Fields to change; a field left out keeps its value, and ``category_id: null`` clears it."""

    _not_null = field_validator("name", "description", "parameters", "status", mode="before")(
        _reject_null
    )

    name: ToolName | None = None
    description: Description | None = None
    parameters: Parameters | None = None
    category_id: ToolId | None = None
    status: StatusField | None = None
    expected_version: Annotated[
        int | None,
        Field(
            ge=1,
            le=ID_MAX,
            description="When given, the update is rejected with 409 unless the tool is still "
            "at this version, so that a client does not overwrite a change it has not seen.",
        ),
    ] = None


class ToolClone(RequestModel):
    name: ToolName


class ToolTestRequest(RequestModel):
    arguments: Annotated[dict[str, JsonValue], Field(max_length=MAX_ARGUMENTS)]


class CategoryCreate(RequestModel):
    name: CategoryName
    description: Description = ""


class CategoryUpdate(RequestModel):
    """Fields to change; a field left out keeps its value."""

    name: CategoryName | None = None
    description: Description | None = None

    _not_null = field_validator("name", "description", mode="before")(_reject_null)


class ShareCreate(RequestModel):
    """Whom to share a tool or agent with: one user (``user_id``) or everyone."""

    user_id: RecordId | None = None
    everyone: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if self.everyone and self.user_id is not None:
            raise ValueError("give either user_id or everyone: true, not both")
        if not self.everyone and self.user_id is None:
            raise ValueError("give user_id, or everyone: true to share with every user")
        return self


class ShareOut(ResponseModel):
    id: int
    user_id: int | None = Field(description="The user the share is for; null when everyone.")
    everyone: bool
    created_at: datetime


class CategoryOut(ResponseModel):
    id: int
    name: str
    description: str
    tool_count: int
    created_at: datetime


class ToolOut(ResponseModel):
    id: int
    name: str
    original_name: str | None
    description: str
    category_id: int | None
    category: str | None
    status: ToolStatus
    parameters: list[dict[str, Any]]
    version: int
    owner_user_id: int | None = Field(description="The creator; null for tools of the system.")
    created_at: datetime
    updated_at: datetime


class ToolSummaryOut(ResponseModel):
    id: int
    name: str
    description: str
    category_id: int | None
    category: str | None
    status: ToolStatus
    version: int
    owner_user_id: int | None


class ToolPageOut(ResponseModel):
    items: list[ToolSummaryOut]
    total: int
    limit: int
    offset: int


class ViolationOut(ResponseModel):
    field: str
    problem: str


class ToolTestOut(ResponseModel):
    ok: bool
    violations: list[ViolationOut]


class VersionSummaryOut(ResponseModel):
    version: int
    change: str
    created_at: datetime


class VersionOut(VersionSummaryOut):
    tool_id: int
    snapshot: dict[str, Any]


class FieldChangeOut(ResponseModel):
    field: str
    before: Any
    after: Any


class ParameterChangeOut(ResponseModel):
    name: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    fields: list[str]


class VersionDiffOut(ResponseModel):
    tool_id: int
    from_version: int
    to_version: int
    fields: list[FieldChangeOut]
    parameters_added: list[ParameterChangeOut]
    parameters_removed: list[ParameterChangeOut]
    parameters_changed: list[ParameterChangeOut]
    parameters_reordered: bool


class MappingOut(ResponseModel):
    code: str
    message: str
    field: str


class ImportedOut(ResponseModel):
    source: str
    name: str
    original_name: str | None
    mappings: list[MappingOut]
    tool_id: int
    version: int
    outcome: Literal["created", "new_version"]


class UnchangedOut(ResponseModel):
    source: str
    name: str
    tool_id: int
    version: int


class RefusedOut(ResponseModel):
    source: str
    name: str | None
    code: str
    reason: str


class ImportReportOut(ResponseModel):
    imported: list[ImportedOut]
    unchanged: list[UnchangedOut]
    refused: list[RefusedOut]
