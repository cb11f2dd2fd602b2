"""Apply and check Alembic migrations from inside the package, without an alembic.ini."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from llero.storage.registry import metadata

if TYPE_CHECKING:
    from llero.vault.fields import FieldKeys

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(
    engine: Engine, revision: str = "head", *, field_keys: "FieldKeys | None" = None
) -> None:
    """Apply every migration up to ``revision``.

    ``field_keys`` (llero.vault.fields.FieldKeys) lets a migration seal values that earlier
    versions stored in plain text. A migration that finds such values without them raises.
    """
    config = _config(engine)
    config.attributes["field_keys"] = field_keys
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str, *, field_keys: "FieldKeys | None" = None) -> None:
    """Undo every migration after ``revision``; ``field_keys`` as for ``upgrade``."""
    config = _config(engine)
    config.attributes["field_keys"] = field_keys
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config_for_scripts()).get_current_head()


def _config_for_scripts() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def pending_differences(engine: Engine) -> list[Any]:
    """Return the differences between the migrated database and the models (empty when equal)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))
