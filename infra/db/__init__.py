"""Relational projections and materialisations (one schema, migrated with Alembic)."""
