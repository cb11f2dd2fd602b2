"""Dependencies shared by every route module."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from llero.config.settings import Settings
from llero.storage.db import Database


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_session(request: Request) -> Iterator[Session]:
    """Yield one session per request; commit when the route returns, roll back when it raises."""
    with get_database(request).transaction() as session:
        yield session


# Function scope commits when the route returns, before the response is sent. With FastAPI's
# default request scope the commit ran after the response. A client could then act on a 200
# before the change was stored (a revoked token still worked on the next request), and a failed
# commit would still have returned 200.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
