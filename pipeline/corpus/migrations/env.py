"""Alembic environment: the engine is handed in by `pipeline.corpus.db.upgrade` (no ini file, no URL here)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from pipeline.corpus.models import Base

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):  # pragma: no cover - only when run through the alembic CLI
    raise RuntimeError("run migrations through `zhuanlan init`, which passes the engine in")

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
