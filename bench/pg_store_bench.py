"""PostgreSQL's store path with the search index (issue 20): GIN entries written one article at a
time (fastupdate off, as migration 0002 had it) against the pending list merged once per batch
(migration 0010 and `pipeline.corpus.search_index`), through the ingest's own code:
`BatchedSessions` (a SAVEPOINT per article, a commit per 64), an `Article` row and
`index_article` with the batch. Each variant runs twice, alternating, in a fresh schema.
"""

from __future__ import annotations

import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from bench.corpus_gen import make_body
from pipeline.corpus.db import BatchedSessions, batch_of, make_engine, session_factory, transaction, upgrade
from pipeline.corpus.models import Article
from pipeline.corpus.search_index import index_article

TITLE = "PostgreSQL store path: GIN entries per article vs the pending list merged per batch"
SERVER = os.environ.get("ZHUANLAN_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ARTICLES = 640
BATCH = 64


def _store(url: str, docs: list[str], fastupdate: str) -> tuple[float, float, int]:
    """(ms per article, client CPU ms per article, stories the index finds for 党建)."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            for index in ("ix_article_search_title", "ix_article_search_body"):
                conn.execute(text(f"ALTER INDEX {index} SET (fastupdate = {fastupdate})"))
        batched = BatchedSessions(session_factory(engine))
        now = datetime.now(UTC)
        start, cpu = time.perf_counter(), time.process_time()
        for i, body in enumerate(docs):
            with transaction(batched) as session:
                article = Article(
                    guid=f"s{i}", title=body[:20], body_text=body, body_html="", content_hash=f"s{i}", positions=[],
                    published_at=now, created_at=now, updated_at=now,
                )  # fmt: skip
                session.add(article)
                session.flush()
                index_article(session, article.id, article.title, body, new=True, batch=batch_of(batched))
            if batched.units >= BATCH:
                batched.commit()
        batched.commit()
        batched.close()
        wall, used = time.perf_counter() - start, time.process_time() - cpu
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM article_search WHERE body_tsv @@ to_tsquery('simple', '党建')")
            ).scalar_one()
        return wall * 1000 / len(docs), used * 1000 / len(docs), int(found)
    finally:
        engine.dispose()


def run() -> list[str]:
    rng = random.Random(5)
    docs = [make_body(rng) for _ in range(ARTICLES)]
    admin = make_engine(SERVER)
    results: dict[str, list[tuple[float, float, int]]] = {"off": [], "on": []}
    try:
        for fastupdate in ("off", "on", "off", "on"):
            schema = f"bench_store_{uuid.uuid4().hex[:8]}"
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            try:
                sep = "&" if "?" in SERVER else "?"
                results[fastupdate].append(
                    _store(f"{SERVER}{sep}options={quote(f'-csearch_path={schema}')}", docs, fastupdate)
                )
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    except SQLAlchemyError as exc:
        return [f"No PostgreSQL server answers at ZHUANLAN_BENCH_PG_URL ({type(exc).__name__}): not measured."]
    finally:
        admin.dispose()
    lines = [
        f"{ARTICLES} generated articles of 400–1500 characters, a commit per {BATCH}; ms per article "
        "(median of 2 runs), client CPU in brackets.",
        "",
        "| GIN upkeep | ms per article | stories found for 党建 | vs before |",
        "|---|---|---|---|",
    ]
    before = statistics.median(r[0] for r in results["off"])
    for key, label in (
        ("off", "every entry into the index (fastupdate off; before)"),
        ("on", "pending list, merged per batch (now)"),
    ):
        ms = statistics.median(r[0] for r in results[key])
        cpu = statistics.median(r[1] for r in results[key])
        lines.append(f"| {label} | {ms:.2f} ({cpu:.2f}) | {results[key][-1][2]} | {ms / before:.2f}× |")
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
