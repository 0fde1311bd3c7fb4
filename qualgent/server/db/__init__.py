"""Storage: SQLAlchemy models, the engine, the embedded PostgreSQL, migrations and named SQL."""
