"""The Command Center: sessions in which a user talks to an agent that calls providers."""
