"""Encrypted backups: a consistent database snapshot and the key files, and their restore."""
