"""Fixtures of the Command Center tests."""

import gc
from collections.abc import Iterator

import pytest

from tests.command.provider_server import ProviderServer, serve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def provider_server() -> Iterator[ProviderServer]:
    yield from serve(ProviderServer())
    # Collect what the test left behind now, while its warnings filters still apply, rather
    # than at a random later point in another test.
    gc.collect()
