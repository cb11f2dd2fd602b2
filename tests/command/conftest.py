"""Fixtures of the Command Center tests."""

import pytest

from tests.command.provider_server import running_provider


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


provider_server = pytest.fixture(running_provider, name="provider_server")
