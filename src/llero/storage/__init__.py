"""Database engine, sessions, the declarative base, data classes and migrations."""
