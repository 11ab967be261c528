"""Search on both databases: the bigram index as `archive.search` uses it, against a LIKE / ILIKE
scan of the same articles (the baseline), for two- and four-character queries.

One generated corpus is loaded into a temporary SQLite file (FTS5) and into a private schema of
the local PostgreSQL (tsvector + GIN), which is dropped afterwards; without a PostgreSQL server
the PostgreSQL rows are replaced by one line saying so. For each query: the matching ids through
the index (the SQL `archive.search` builds) and through the scan, the same hit set checked, and
the page a user gets (`archive.search.search`, top 20 ranked, with snippets and the total).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, or_, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import Subquery

from archive.search import Filters, _statement, search
from archive.search_syntax import parse_query
from bench.common import Timing, make_text, measure
from pipeline.corpus.db import make_engine, session_factory, transaction, upgrade
from pipeline.corpus.models import Article
from pipeline.corpus.search_index import index_article

TITLE = "Search on SQLite (FTS5) and PostgreSQL (tsvector): bigram index vs LIKE / ILIKE scan"
PG_URL = os.environ.get("ZHUANLAN_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TZ = ZoneInfo("Asia/Shanghai")
# Rare words mixed into a share of the articles, so that some queries are selective: the common
# pool of bench.common makes 党建 or 乡村振兴 occur in most articles.
RARE = {"粮食": 0.05, "河湖长制": 0.01}
QUERIES = (("党建", "2 字, common"), ("粮食", "2 字, rare"), ("乡村振兴", "4 字, common"), ("河湖长制", "4 字, rare"))
N_ARTICLES = 3000
BODY_CHARS = 1200


@dataclass
class Row:
    query: str
    kind: str
    index: Timing
    scan: Timing
    page: Timing
    hits: int
    same: str


def _corpus(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        body = make_text(rng, BODY_CHARS)
        for word, share in RARE.items():
            if rng.random() < share:
                cut = rng.randrange(len(body))
                body = body[:cut] + f"，{word}工作，" + body[cut:]
        docs.append((make_text(rng, 20)[:20], body))
    return docs


def _load(engine: Engine, docs: list[tuple[str, str]]) -> tuple[float, float]:
    """Insert the articles, then index them; (insert seconds, index seconds)."""
    sessions = session_factory(engine)
    now = datetime(2026, 11, 26, tzinfo=UTC)
    start = time.perf_counter()
    with transaction(sessions) as session:
        articles = [
            Article(
                guid=f"g{i}",
                title=title,
                body_text=body,
                body_html="",
                content_hash=f"h{i}",
                positions=[],
                published_at=datetime(2026, 1, 1, tzinfo=UTC).replace(day=1 + i % 28),
                created_at=now,
                updated_at=now,
            )
            for i, (title, body) in enumerate(docs)
        ]
        session.add_all(articles)
        session.flush()
        inserted = time.perf_counter()
        for article in articles:
            index_article(session, article.id, article.title, article.body_text)
    indexed = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return inserted - start, indexed - inserted


def _index_size(engine: Engine) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            size = conn.execute(text("SELECT pg_total_relation_size('article_search')")).scalar_one()
        else:
            try:
                size = conn.execute(text("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'article_fts%'")).scalar_one()
            except SQLAlchemyError:
                return "n/a"
    return f"{int(size or 0) / 1024 / 1024:.1f} MiB"


def _measure_queries(engine: Engine) -> list[Row]:
    rows: list[Row] = []
    sessions = session_factory(engine)
    with sessions() as session:
        for q, kind in QUERIES:
            parsed = parse_query(q)
            stmt = _statement(session, parsed, []).subquery()
            index_ids: set[int] = set()
            scan_ids: set[int] = set()
            pattern = f"%{q}%"  # the queries are plain Han text: nothing to escape

            def by_index(session: Session = session, out: set[int] = index_ids, stmt: Subquery = stmt) -> None:
                out.clear()
                out.update(session.scalars(select(stmt.c.id)))

            def by_scan(session: Session = session, out: set[int] = scan_ids, pattern: str = pattern) -> None:
                out.clear()
                out.update(
                    session.scalars(
                        select(Article.id).where(or_(Article.title.ilike(pattern), Article.body_text.ilike(pattern)))
                    )
                )

            totals: list[int] = []

            def page(session: Session = session, q: str = q, totals: list[int] = totals) -> None:
                totals.append(search(session, q, Filters(), per_page=20, tz=TZ).total)

            for warm in (by_index, by_scan, page):
                warm()
            t_index, t_scan, t_page = measure(by_index, repeat=9), measure(by_scan, repeat=5), measure(page, repeat=9)
            same = index_ids == scan_ids and set(totals) == {len(scan_ids)}
            verdict = "yes" if same else f"NO ({len(index_ids)} vs {len(scan_ids)}, page total {totals[-1]})"
            rows.append(Row(q, kind, t_index, t_scan, t_page, len(scan_ids), verdict))
            session.rollback()
    return rows


def _section(
    name: str,
    engine: Engine,
    docs: list[tuple[str, str]],
    method: str,
    scan: str,
    *,
    before_load: Callable[[Engine], None] | None = None,
    after_load: Callable[[Engine], None] | None = None,
) -> list[str]:
    if before_load is not None:
        before_load(engine)
    insert_s, index_s = _load(engine, docs)
    if after_load is not None:
        after_load(engine)
    rows = _measure_queries(engine)
    lines = [
        f"**{name}** — index: {method}; baseline: {scan}. Load: insert {insert_s:.2f} s, "
        f"index build {index_s:.2f} s, index size {_index_size(engine)}.",
        "",
        f"| query | hits / {len(docs)} | index: all matching ids | {scan}: all ids | speed-up | "
        "search() page: top 20 + snippets + total | same hit set |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.query} ({r.kind}) | {r.hits} | {r.index.fmt()} | {r.scan.fmt()} | "
            f"{r.scan.median / r.index.median:.1f}× | {r.page.fmt()} | {r.same} |"
        )
    lines.append("")
    return lines


def _vacuum(engine: Engine) -> None:
    """What autovacuum does eventually: merge the GIN pending lists into the index proper."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE article_search"))


def _fastupdate_off(engine: Engine) -> None:
    """GIN without a pending list: every insert goes into the index proper."""
    with engine.begin() as conn:
        for index in ("ix_article_search_title", "ix_article_search_body"):
            conn.execute(text(f"ALTER INDEX {index} SET (fastupdate = off)"))


def _with_pg_schema(body: Callable[[Engine], list[str]]) -> list[str]:
    """Run `body` on a fresh private schema of the local PostgreSQL, dropped afterwards."""
    try:
        admin = make_engine(PG_URL, connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0][:160]
        return [f"**PostgreSQL** — skipped: no server answered at {PG_URL} ({reason}).", ""]
    schema = f"bench_search_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    engine = make_engine(f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}")
    try:
        upgrade(engine)
        return body(engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run(n_articles: int = N_ARTICLES, seed: int = 11) -> list[str]:
    docs = _corpus(n_articles, seed)
    lines = [
        f"Corpus: {n_articles} generated articles of ~{BODY_CHARS:,} characters (the word pool of "
        f"bench/search_bench.py, plus {', '.join(f'{w} in {s:.0%}' for w, s in RARE.items())} of them), "
        "the same texts in both databases. Times are per query, warm cache.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            upgrade(engine)
            lines += _section("SQLite", engine, docs, "FTS5 over bigrams (phrase MATCH)", "LIKE scan")
        finally:
            engine.dispose()
    method = "tsvector of bigrams, GIN, phrase tsquery (<->)"
    Hook = Callable[[Engine], None] | None
    variants: list[tuple[str, Hook, Hook]] = [
        ("PostgreSQL, as migrated (GIN fastupdate on), right after the load", None, None),
        ("PostgreSQL, as migrated, after VACUUM (GIN pending lists merged)", None, _vacuum),
        ("PostgreSQL, GIN with fastupdate = off, right after the load", _fastupdate_off, None),
    ]
    for name, before, after in variants:
        section = _with_pg_schema(
            partial(_section, name, docs=docs, method=method, scan="ILIKE scan", before_load=before, after_load=after)
        )
        lines += section
        if "skipped" in section[0]:
            break
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
