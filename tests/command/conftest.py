"""Fixtures of the Command Center tests."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
