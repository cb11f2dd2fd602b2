"""Request and response bodies of the agent routes.

The text rules come from the service, so the HTTP layer accepts exactly the values that the
service accepts. The bounds are repeated here so that the OpenAPI document publishes them.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Self, cast

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from llero.barracks.models import DESCRIPTION_MAX, SYSTEM_PROMPT_MAX, Agent, AgentStatus
from llero.barracks.service import (
    ID_MAX,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    MODEL_MAX,
    OFFSET_MAX,
    PROVIDER_MAX,
    TOOLKIT_MAX,
    AgentChanges,
    AgentPage,
    is_runnable,
    line_problem,
    text_problem,
)
from llero.forge.models import NAME_MAX
from llero.web.schemas import RequestModel, ResponseModel


def _rule(problem_of: Callable[[str, int], str | None], max_length: int) -> AfterValidator:
    def check(value: str) -> str:
        problem = problem_of(value, max_length)
        if problem is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


def _require_text_or_datetime(value: object) -> object:
    # Lax mode would also read a number as seconds since 1970, so only text is passed on.
    if isinstance(value, str | datetime):
        return value
    raise ValueError("must be an ISO 8601 date and time with a time zone")


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX), _rule(line_problem, NAME_MAX)]
Provider = Annotated[
    str, Field(min_length=1, max_length=PROVIDER_MAX), _rule(line_problem, PROVIDER_MAX)
]
ModelName = Annotated[
    str, Field(min_length=1, max_length=MODEL_MAX), _rule(line_problem, MODEL_MAX)
]
Description = Annotated[
    str, Field(max_length=DESCRIPTION_MAX), _rule(text_problem, DESCRIPTION_MAX)
]
SystemPrompt = Annotated[
    str, Field(max_length=SYSTEM_PROMPT_MAX), _rule(text_problem, SYSTEM_PROMPT_MAX)
]
# JSON carries datetimes and enum members as strings, which strict mode rejects when FastAPI
# validates the parsed body, so these two fields are lax (as TypeField in llero.forge.spec is).
Expiry = Annotated[
    AwareDatetime,
    BeforeValidator(_require_text_or_datetime),
    Field(strict=False, examples=["2030-01-31T18:00:00Z"]),
]
Status = Annotated[AgentStatus, Field(strict=False)]
ToolId = Annotated[int, Field(ge=1, le=ID_MAX)]
ToolIds = Annotated[list[ToolId], Field(max_length=TOOLKIT_MAX)]


class AgentCreate(RequestModel):
    name: Name
    description: Description = ""
    system_prompt: SystemPrompt = ""
    provider: Provider
    model: ModelName
    status: Status = AgentStatus.ACTIVE
    expires_at: Expiry | None = None
    tool_ids: ToolIds = Field(default_factory=list)


class AgentUpdate(RequestModel):
    """A partial update: absent fields keep their values, and ``expires_at: null`` removes the
    expiry."""

    name: Name | None = None
    description: Description | None = None
    system_prompt: SystemPrompt | None = None
    provider: Provider | None = None
    model: ModelName | None = None
    expires_at: Expiry | None = None

    @field_validator("name", "description", "system_prompt", "provider", "model")
    @classmethod
    def _reject_null(cls, value: str | None) -> str:
        # Only values that were sent reach this validator, so None here is an explicit null.
        if value is None:
            raise ValueError("must not be null; omit the field to keep its value")
        return value

    def changes(self) -> AgentChanges:
        return cast(AgentChanges, self.model_dump(exclude_unset=True))


class ToolkitUpdate(RequestModel):
    tool_ids: ToolIds


class StatusUpdate(RequestModel):
    status: Status


class AgentQuery(BaseModel):
    """Query parameters of the agent list. They arrive as text, so they are not strict."""

    model_config = ConfigDict(extra="forbid")

    search: Annotated[str, Field(max_length=NAME_MAX)] | None = None
    status: AgentStatus | None = None
    provider: Annotated[str, Field(max_length=PROVIDER_MAX)] | None = None
    limit: Annotated[int, Field(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT
    offset: Annotated[int, Field(ge=0, le=OFFSET_MAX)] = 0


class ToolkitEntry(ResponseModel):
    id: int
    name: str
    status: str


class AgentSummary(ResponseModel):
    """An agent without its system prompt, as the list returns it."""

    id: int
    name: str
    description: str
    provider: str
    model: str
    status: AgentStatus
    expires_at: datetime | None
    runnable: bool = Field(description="Whether the agent is active and not expired now.")
    toolkit: list[ToolkitEntry]
    owner_user_id: int | None = Field(description="The creator; null for agents of the system.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, agent: Agent, now: datetime) -> Self:
        computed = {"runnable", "toolkit"}
        stored: dict[str, Any] = {
            name: getattr(agent, name) for name in cls.model_fields if name not in computed
        }
        toolkit = [ToolkitEntry.model_validate(tool) for tool in agent.toolkit]
        return cls(**stored, runnable=is_runnable(agent, now), toolkit=toolkit)


class AgentDetail(AgentSummary):
    system_prompt: str


class AgentList(ResponseModel):
    items: list[AgentSummary]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, page: AgentPage, now: datetime) -> Self:
        items = [AgentSummary.of(agent, now) for agent in page.items]
        return cls(items=items, total=page.total, limit=page.limit, offset=page.offset)
