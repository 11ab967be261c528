"""Migration 0017: the articles index on unit_id alone is gone, and lookups by unit walk the
unit/story-date index instead (its first column), on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from bench.corpus_gen import load
from pipeline.corpus.db import alembic_config, make_engine, upgrade
from tests.servers import postgresql_schema, require_postgresql


@pytest.fixture(params=["sqlite", "postgresql"])
def loaded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database holding 400 generated stories in a few dozen units."""

    def open_loaded(url: str) -> Engine:
        engine = make_engine(url)
        upgrade(engine)
        load(engine.url.render_as_string(hide_password=False), 400, seed=7)
        return engine

    if request.param == "sqlite":
        engine = open_loaded(f"sqlite:///{tmp_path / 'units.db'}")
        yield engine
        engine.dispose()
        return
    with postgresql_schema(require_postgresql()) as url:
        engine = open_loaded(url)
        yield engine
        engine.dispose()


def _indexes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            query = "SELECT indexname FROM pg_indexes WHERE tablename = 'articles' AND schemaname = current_schema()"
        else:
            query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'articles'"
        return set(conn.execute(text(query)).scalars())


def _plan(engine: Engine, query: str, params: dict[str, object]) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL enable_seqscan = off"))  # 400 rows: a scan is cheaper, rightly
            rows = conn.execute(text(f"EXPLAIN {query}"), params).scalars()
        else:
            rows = (row[-1] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {query}"), params))
        return "\n".join(rows)


def test_lookups_by_unit_use_the_unit_story_date_index_and_the_old_one_comes_back_on_downgrade(
    loaded: Engine,
) -> None:
    assert "ix_articles_unit_id" not in _indexes(loaded)
    assert "ix_articles_unit_story_date" in _indexes(loaded)
    with loaded.connect() as conn:
        unit = conn.execute(text("SELECT unit_id FROM articles WHERE unit_id IS NOT NULL LIMIT 1")).scalar_one()
        of_unit = conn.execute(text("SELECT count(*) FROM articles WHERE unit_id = :u"), {"u": unit}).scalar_one()
        every = conn.execute(text("SELECT count(*) FROM articles WHERE unit_id IS NOT NULL")).scalar_one()
    assert 0 < of_unit < every  # the lookup picks out some of the stories, not all

    # A unit's stories (the per-unit counts and lists) and the foreign key's check on deleting a unit.
    for query in (
        "SELECT count(*) FROM articles WHERE unit_id = :u",
        "SELECT 1 FROM articles WHERE unit_id = :u LIMIT 1",
    ):
        plan = _plan(loaded, query, {"u": unit})
        assert "ix_articles_unit_story_date" in plan, plan
        assert "SCAN articles\n" not in plan + "\n" and "Seq Scan" not in plan, plan

    # Deleting a unit that still has stories is refused by the foreign key, as before (make_engine
    # turns SQLite's foreign keys on).
    with loaded.connect() as conn, pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        conn.execute(text("DELETE FROM units WHERE id = :u"), {"u": unit})
        conn.commit()

    command.downgrade(alembic_config(loaded), "0016")
    assert "ix_articles_unit_id" in _indexes(loaded)
    upgrade(loaded)
    assert "ix_articles_unit_id" not in _indexes(loaded)
