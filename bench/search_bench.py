"""Search: the bigram FTS index against a LIKE scan (the baseline), on one SQLite database."""

from __future__ import annotations

import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from bench.common import make_text, measure
from pipeline.corpus.db import make_engine, session_factory, transaction, upgrade
from pipeline.corpus.models import Article
from pipeline.corpus.search_index import index_article
from pipeline.corpus.textsplit import split_runs

TITLE = "Search: bigram FTS index vs LIKE scan"
QUERIES = ("党建", "乡村振兴", "科技创新", "营商环境")


def fts_match(term: str) -> str:
    return " ".join('"' + " ".join(run) + '"' for run in split_runs(term))


def run(n_articles: int = 5000, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        sessions = session_factory(engine)
        now = datetime(2026, 11, 26, tzinfo=UTC)
        with transaction(sessions) as session:
            for i in range(n_articles):
                body = make_text(rng, 1200)
                art = Article(
                    guid=f"g{i}",
                    title=make_text(rng, 20)[:20],
                    body_text=body,
                    body_html="",
                    content_hash=f"h{i}",
                    positions=[],
                    created_at=now,
                    updated_at=now,
                )
                session.add(art)
                session.flush()
                index_article(session, art.id, art.title, body)
        lines.append(f"Corpus: {n_articles} synthetic articles of ~1,200 characters (SQLite, FTS5 over bigrams).")
        lines.append("")
        lines.append("| query | FTS5 bigram (ids) | LIKE scan (baseline) | speed-up | same hits |")
        lines.append("|---|---|---|---|---|")
        with engine.connect() as conn:
            for q in QUERIES:
                fts_ids: set[int] = set()
                like_ids: set[int] = set()

                def fts(q: str = q, out: set[int] = fts_ids) -> None:
                    out.clear()
                    out.update(
                        r[0]
                        for r in conn.execute(
                            text("SELECT rowid FROM article_fts WHERE article_fts MATCH :m"), {"m": fts_match(q)}
                        )
                    )

                def like(q: str = q, out: set[int] = like_ids) -> None:
                    out.clear()
                    out.update(
                        r[0]
                        for r in conn.execute(
                            text("SELECT id FROM articles WHERE title LIKE :p OR body_text LIKE :p"), {"p": f"%{q}%"}
                        )
                    )

                t_fts = measure(fts, repeat=7)
                t_like = measure(like, repeat=5)
                lines.append(
                    f"| {q} | {t_fts.fmt()} | {t_like.fmt()} | {t_like.median / t_fts.median:.1f}× | "
                    f"{'yes' if fts_ids == like_ids else f'NO ({len(fts_ids)} vs {len(like_ids)})'} |"
                )
        engine.dispose()
    return lines
