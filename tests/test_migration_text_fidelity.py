"""Migration 0004 (text fidelity) on SQLite and PostgreSQL: a database at 0003 holding text that the
older normalize folded gets the page's characters back, from the stored HTML or, when that has no
text, from the newest snapshot; hashes stay; the title index is folded; the downgrade folds again.

Upgrades go to "0004" by name, not to head: later revisions build on it.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine

from pipeline.corpus.db import alembic_config, make_engine
from pipeline.corpus.models import UTCDateTime
from pipeline.corpus.textsplit import split_text
from tests.test_text_fidelity import FOLDED, PAGE_HASH, STORED, TITLE, old_normalize_text

WHEN = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
HTML = "".join(f"<p>{line}</p>" for line in STORED.split("\n"))
OTHER = "其他单位的体会，与本文无关：（一）抓好落实；（二）见到实效。"

_articles = sa.table(
    "articles",
    *(
        sa.column(name)
        for name in ("id", "guid", "title", "summary", "body_html", "body_text", "content_hash", "state")
    ),
    sa.column("positions", sa.JSON()),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
_sources = sa.table(
    "sources",
    *(sa.column(name) for name in ("id", "key", "kind", "url", "enabled", "status", "consecutive_failures")),
    sa.column("options", sa.JSON()),
)
_appearances = sa.table(
    "appearances",
    *(
        sa.column(name)
        for name in (
            "id",
            "article_id",
            "source_id",
            "canonical_key",
            "url",
            "title",
            "http_status",
            "content_hash",
            "is_original",
            "state",
            "in_column",
            "snapshot_id",
        )
    ),
    sa.column("meta", sa.JSON()),
    sa.column("fetched_at", UTCDateTime()),
)
_snapshots = sa.table(
    "snapshots",
    *(sa.column(name) for name in ("id", "appearance_id", "sha256", "url", "http_status", "encoding", "size")),
    sa.column("headers", sa.JSON()),
    sa.column("content", sa.LargeBinary()),
    sa.column("fetched_at", UTCDateTime()),
)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    command.upgrade(alembic_config(eng), "0003")
    yield eng
    eng.dispose()


_OLD_TOKEN = re.compile(r"[\u4e00-\u9fff]+|[A-Za-z0-9]+")


def _old_split(text: str) -> str:
    """How the index split a title before 0004: Han runs as bigrams, ASCII words whole, nothing folded."""
    tokens: list[str] = []
    for run in _OLD_TOKEN.findall(text):
        han = "\u4e00" <= run[0] <= "\u9fff"
        tokens += [run[i : i + 2] for i in range(len(run) - 1)] if han and len(run) > 1 else [run.lower()]
    return " ".join(tokens)


def _article(conn: sa.Connection, article_id: int, title: str, body: str, html: str, summary: str | None) -> None:
    conn.execute(
        _articles.insert().values(
            id=article_id,
            guid=f"g{article_id}",
            title=title,
            summary=summary,
            body_html=html,
            body_text=body,
            content_hash=f"{article_id:064d}" if body != FOLDED else PAGE_HASH,
            state="live",
            positions=[],
            created_at=WHEN,
            updated_at=WHEN,
        )
    )
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text(
                "INSERT INTO article_search (article_id, title_tsv, body_tsv) "
                "VALUES (:id, to_tsvector('simple', :t), to_tsvector('simple', :b))"
            ),
            {"id": article_id, "t": _old_split(title), "b": split_text(body)},
        )
    else:
        conn.execute(
            sa.text("INSERT INTO article_fts (rowid, title, body) VALUES (:id, :t, :b)"),
            {"id": article_id, "t": _old_split(title), "b": split_text(body)},
        )


def _snapshot(conn: sa.Connection, article_id: int, page: bytes, encoding: str) -> None:
    conn.execute(
        _appearances.insert().values(
            id=article_id,
            article_id=article_id,
            source_id=1,
            canonical_key=f"https://x.example/{article_id}",
            url=f"https://x.example/{article_id}",
            title="",
            http_status=200,
            content_hash="h",
            is_original=True,
            state="ok",
            in_column=True,
            meta={},
            fetched_at=WHEN,
        )
    )
    conn.execute(
        _snapshots.insert().values(
            id=article_id,
            appearance_id=article_id,
            sha256=f"{article_id:064d}",
            url="https://x.example/",
            http_status=200,
            encoding=encoding,
            size=len(page),
            headers={},
            content=zlib.compress(page),
            fetched_at=WHEN,
        )
    )
    conn.execute(sa.text("UPDATE appearances SET snapshot_id = :id WHERE id = :id"), {"id": article_id})


def _rows(engine: Engine) -> dict[int, Any]:
    with engine.connect() as conn:
        return {
            row.id: row
            for row in conn.execute(sa.text("SELECT id, title, summary, body_text, content_hash FROM articles"))
        }


def _title_hits(engine: Engine, token: str) -> list[int]:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            sql = "SELECT article_id FROM article_search WHERE title_tsv @@ to_tsquery('simple', :q) ORDER BY 1"
            return list(conn.execute(sa.text(sql), {"q": token}).scalars())
        sql = "SELECT rowid FROM article_fts WHERE article_fts MATCH :q ORDER BY 1"
        return list(conn.execute(sa.text(sql), {"q": f'title:"{token}"'}).scalars())


def test_upgrade_puts_the_page_characters_back(engine: Engine) -> None:
    other_folded = old_normalize_text(OTHER)
    page = f"<html><head><title>t</title></head><body><div>导航</div><p>{OTHER}</p></body></html>"
    with engine.begin() as conn:
        conn.execute(
            _sources.insert().values(
                id=1,
                key="s",
                kind="site_column",
                url="https://x.example/",
                enabled=True,
                status="ok",
                consecutive_failures=0,
                options={},
            )
        )
        _article(conn, 1, TITLE, FOLDED, HTML, FOLDED[:200])
        _article(conn, 2, "无正文ＨＴＭＬ", other_folded, "", "页面自带的摘要")  # text only in the snapshot
        _snapshot(conn, 2, page.encode("gb18030"), "gb18030")
        _article(conn, 3, "不相干", "与HTML不同的正文,保持原样。", "<p>完全另一篇，文字不同。</p>", None)
        _article(conn, 4, "空", "", "", None)
    before = _rows(engine)
    assert _title_hits(engine, "ai") == []  # the old index did not fold titles

    command.upgrade(alembic_config(engine), "0004")

    after = _rows(engine)
    assert after[1].body_text == STORED
    assert after[1].summary == STORED[:200]
    assert after[2].body_text == OTHER
    assert after[2].summary == "页面自带的摘要"  # the page's own summary is not the text's start
    assert after[3].body_text == "与HTML不同的正文,保持原样。"  # nothing to align with: left alone
    assert after[4].body_text == ""
    for article_id, row in before.items():
        assert after[article_id].content_hash == row.content_hash
        assert after[article_id].title == row.title
    assert after[1].content_hash == PAGE_HASH
    assert _title_hits(engine, "ai") == [1]
    assert _title_hits(engine, "html") == [2]
    assert _title_hits(engine, "2025") == [1]

    command.downgrade(alembic_config(engine), "0003")
    folded = _rows(engine)
    assert folded[1].body_text == FOLDED and folded[1].summary == FOLDED[:200]
    assert folded[2].body_text == other_folded


def test_upgrade_walks_a_corpus_larger_than_a_batch(engine: Engine) -> None:
    with engine.begin() as conn:
        for article_id in range(1, 1203):
            _article(conn, article_id, f"标题{article_id}", FOLDED, HTML, None)
    command.upgrade(alembic_config(engine), "0004")
    rows = _rows(engine)
    assert len(rows) == 1202
    assert all(row.body_text == STORED and row.content_hash == PAGE_HASH for row in rows.values())
