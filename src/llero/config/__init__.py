"""Settings and key files: everything Llero reads before it starts."""

from llero.config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
