"""Academy: the secrets agents use (provider API keys, webhook signing keys), who may use them,
and a record of every use. Values are stored by llero.vault; this package holds the rules."""
