"""The HTTP API and, later, the web UI."""
