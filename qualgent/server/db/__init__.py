"""Storage: the one way to run SQL (database.py), every statement (*.sql), the current functions, triggers and
views (schema.sql), the tables for Alembic (models.py), migrations (migrate.py) and the embedded PostgreSQL."""
