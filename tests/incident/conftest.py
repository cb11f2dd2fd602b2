from collections.abc import Iterator

import pytest

from tests.incident.helpers import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()
