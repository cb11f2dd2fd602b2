"""Barracks: agents ("lleros") with a system prompt, a toolkit, a provider and a model."""
