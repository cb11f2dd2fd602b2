"""The tamper-evident audit trail: every domain records its events through ``service.record``."""
