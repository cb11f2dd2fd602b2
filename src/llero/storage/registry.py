"""Import every model module so ``Base.metadata`` is complete for migrations and checks."""

from llero.academy import allowlist as allowlist_models
from llero.academy import budgets as budget_models
from llero.academy import models as academy_models
from llero.academy import providers as provider_models
from llero.academy import usage as usage_models
from llero.audit import models as audit_models
from llero.barracks import models as barracks_models
from llero.command import models as command_models
from llero.forge import models as forge_models
from llero.identity import models as identity_models
from llero.incident import models as incident_models
from llero.storage import generation as generation_models
from llero.storage.base import Base
from llero.vault import models as vault_models

MODEL_MODULES = (
    forge_models,
    barracks_models,
    identity_models,
    audit_models,
    vault_models,
    provider_models,
    command_models,
    usage_models,
    budget_models,
    allowlist_models,
    academy_models,
    incident_models,
    generation_models,
)

metadata = Base.metadata
