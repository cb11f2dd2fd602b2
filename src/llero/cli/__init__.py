"""The `llero` command."""
