"""Database layer: connections (psycopg 3 + embedded PostgreSQL) and the migration runner.

The repository (all SQL of the feature) lives in ``lorafiles.db.repository``.
"""
from .connect import (
    Database,
    connect,
    database_url,
    default_home,
    embedded_server,
    ensure_database,
    get_database,
    url_with_database,
)
from .migrate import MigrationError, applied_migrations, apply_migrations, default_migrations_dir

__all__ = [
    "Database",
    "MigrationError",
    "applied_migrations",
    "apply_migrations",
    "connect",
    "database_url",
    "default_home",
    "default_migrations_dir",
    "embedded_server",
    "ensure_database",
    "get_database",
    "url_with_database",
]
