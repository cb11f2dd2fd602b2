"""Request and response bodies of the session routes."""

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, Field

from llero.command.models import TITLE_MAX, TOOL_CALL_ID_MAX, URL_MAX
from llero.command.run import ToolMode
from llero.web.schemas import RecordId, RequestModel, ResponseModel

# A message is what a person types or pastes; a whole document belongs in a tool, not a turn.
MESSAGE_MAX = 100_000
TOOL_RESULT_MAX = 200_000
TOOL_RESULTS_MAX = 64

Title = Annotated[str, Field(max_length=TITLE_MAX)]


class SessionCreate(RequestModel):
    agent_id: RecordId
    title: Title = ""
    expires_at: AwareDatetime | None = Field(default=None, strict=False)


class SessionOut(ResponseModel):
    id: int
    agent_id: int
    title: str
    status: str
    message_count: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


class SessionPage(ResponseModel):
    items: list[SessionOut]
    total: int


class ToolCallOut(ResponseModel):
    id: str
    name: str
    arguments: str


class MessageOut(ResponseModel):
    position: int
    role: str
    content: str
    tool_calls: list[ToolCallOut]
    tool_call_id: str | None


class SessionDetail(SessionOut):
    messages: list[MessageOut]


class MessageCreate(RequestModel):
    content: Annotated[str, Field(min_length=1, max_length=MESSAGE_MAX)]
    stream: bool = False


class ToolResultIn(RequestModel):
    tool_call_id: Annotated[str, Field(min_length=1, max_length=TOOL_CALL_ID_MAX)]
    content: Annotated[str, Field(max_length=TOOL_RESULT_MAX)]


class ToolResultsCreate(RequestModel):
    results: Annotated[list[ToolResultIn], Field(min_length=1, max_length=TOOL_RESULTS_MAX)]
    stream: bool = False


class UsageOut(ResponseModel):
    input_tokens: int
    output_tokens: int


class RunOut(ResponseModel):
    """How the run ended; ``pending`` lists the calls the client must run and answer."""

    status: str
    text: str
    error: str
    steps: int
    usage: UsageOut
    pending: list[ToolCallOut]


class ToolRunnerIn(RequestModel):
    # Strict mode would accept only ToolMode objects; JSON carries the enum's value as text.
    mode: Annotated[ToolMode, Field(strict=False)]
    url: Annotated[str, Field(max_length=URL_MAX)] | None = None
    signing_secret_id: RecordId | None = None


class ToolRunnerOut(ResponseModel):
    tool_id: int
    mode: str
    url: str | None
    signing_secret_id: int | None
