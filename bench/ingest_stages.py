"""Where the ingest time goes: the article pages of the generated site run through the spider's
extraction (the crawl process's share) and the four item stages as the pipeline worker runs them
(one `SourceChain` over `BatchedSessions`, a commit every `MAX_BATCH` items), with a timer around
each stage and around the commits.

Run as `python -m bench.ingest_stages SITE_DIR CONFIG DATABASE_URL LIMIT`; the database must be
initialised. Prints one JSON line: seconds per stage (total) and the number of articles.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawler.items import STATE_OK, ArticleItem
from crawler.keys import site_key
from crawler.parsing.encoding import decode_checked
from crawler.parsing.site_article import extract_article
from pipeline.chain import SourceChain, SourceRef
from pipeline.corpus.db import BatchedSessions, make_engine, session_factory
from pipeline.tag import vocabulary_from_path
from pipeline.tagging.rules import warm_up_keywords
from pipeline.worker import MAX_BATCH

STAGES = ("extract", "normalize", "dedup", "tag", "store", "commit")


def main(argv: list[str]) -> int:
    site, config, url, limit = Path(argv[0]), argv[1], argv[2], int(argv[3])
    pages = sorted((site / "art").rglob("*.html"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))[:limit]
    sessions = BatchedSessions(session_factory(make_engine(url, immediate_transactions=True)))
    source = SourceRef(
        "stages", {"key": "stages", "kind": "site_column", "url": "http://127.0.0.1/col/all/index.html", "unit": None}
    )
    warm_up_keywords()
    chain = SourceChain(
        sessions, source, vocabulary_from_path(config), run_id=None, config_path=None, share_key="stages"
    )
    chain.open()
    sessions.commit()
    stages = (("normalize", chain.normalize), ("dedup", chain.dedup), ("tag", chain.tag), ("store", chain.store))
    spent = dict.fromkeys(STAGES, 0.0)
    for path in pages:
        page_url = f"http://127.0.0.1{path.as_posix().split(site.as_posix(), 1)[1]}"
        t0 = time.perf_counter()
        body = path.read_bytes()
        decoded = decode_checked(body, "text/html; charset=utf-8", None)
        article = extract_article(decoded.text, page_url, {})
        item: Any = ArticleItem(
            source_key="stages",
            source_kind="site_column",
            url=page_url,
            canonical_key=site_key(page_url),
            fetched_at=datetime.now(UTC),
            state=STATE_OK,
            title=article.title or "",
            author=article.author,
            byline=article.byline,
            source_label=article.source_label,
            published_at=article.published_at,
            body_html=article.body_html,
            body_text=article.body_text,
            http_status=200,
            headers={"Content-Type": "text/html"},
            raw_body=body,
            encoding=decoded.encoding,
        )
        t1 = time.perf_counter()
        spent["extract"] += t1 - t0
        for name, stage in stages:
            t0 = time.perf_counter()
            item = stage.process_item(item, source)
            spent[name] += time.perf_counter() - t0
        if sessions.units >= MAX_BATCH:
            t0 = time.perf_counter()
            sessions.commit()
            spent["commit"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    sessions.commit()
    spent["commit"] += time.perf_counter() - t0
    chain.close(0)
    sessions.commit()
    print(json.dumps({"articles": len(pages), "seconds": spent}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
