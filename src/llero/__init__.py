"""Llero: a self-hosted platform for building and running function-calling AI agents."""

__version__ = "0.1.0"
