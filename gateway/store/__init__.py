"""Persistence: schema, engine, migrations and the queries the core runs."""
