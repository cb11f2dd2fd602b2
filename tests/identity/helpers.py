"""Helpers for the identity tests: a password hashed once, a clock the test moves, TOTP codes."""

import dataclasses
import functools
from datetime import UTC, datetime, timedelta

import httpx
import pyotp
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from llero.identity.context import IdentityContext
from llero.identity.models import User
from llero.identity.passwords import hash_password
from llero.identity.throttle import ThrottleLimits
from llero.storage.db import Database

PASSWORD = "plum kettle orbit lantern harbour"


@functools.cache
def password_hash() -> str:
    """Return an argon2id hash of PASSWORD, computed once per test process."""
    return hash_password(PASSWORD)


class FrozenClock:
    """A clock that stands still until the test moves it."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


def freeze_clock(app: FastAPI) -> FrozenClock:
    """Replace the app's identity clock with a frozen one at the current time."""
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    context: IdentityContext = app.state.identity
    context.clock = clock
    return clock


def loosen_throttle(app: FastAPI) -> None:
    """Let an account fail 50 times before any delay, for tests of other limits."""
    context: IdentityContext = app.state.identity
    context.throttle = dataclasses.replace(context.throttle, account=ThrottleLimits(50, 100))


def user_row(database: Database, user_id: int) -> User:
    with database.reader() as session:
        user = session.scalars(select(User).where(User.id == user_id)).one()
        session.expunge(user)
        return user


def totp_code(database: Database, user_id: int, at: datetime) -> str:
    """Return the TOTP code of the user's enrolled seed at ``at``."""
    seed = user_row(database, user_id).totp_seed
    assert seed is not None
    return pyotp.TOTP(seed).at(at)


def sign_in(
    client: TestClient, email: str, password: str = PASSWORD, **extra: object
) -> httpx.Response:
    return client.post("/api/auth/signin", json={"email": email, "password": password, **extra})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
