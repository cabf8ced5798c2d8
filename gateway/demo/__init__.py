"""`meter-gateway demo`: the gateway on an embedded SQLite file with demo accounts and meters."""
