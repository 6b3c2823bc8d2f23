"""The database adapter: schema, engine, migrations and the state store."""
