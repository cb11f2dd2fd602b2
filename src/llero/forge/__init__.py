"""Forge and Armory: tools, their parameters, JSON Schema, import, export and versions."""
