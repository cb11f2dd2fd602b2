import os

import pytest

from llero.audit.keys import AuditKeys


@pytest.fixture
def audit_keys() -> AuditKeys:
    return AuditKeys.from_material(os.urandom(32))
