"""Persistence (SQLite in WAL mode through aiosqlite): schema, migrations, repositories. No business rules."""

from storage.db import Database

__all__ = ["Database"]
