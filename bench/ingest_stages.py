"""Where the ingest time goes: the article pages of the generated site run through the spider's
extraction and the four item pipelines in this process, with a timer around each stage.

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
from pipeline.db import make_engine, session_factory
from pipeline.dedup import DeduplicatePipeline
from pipeline.normalize import NormalizePipeline
from pipeline.store import StorePipeline
from pipeline.tagging import TagPipeline, vocabulary_from_path

STAGES = ("extract", "normalize", "dedup", "tag", "store")


class _Spider:
    def __init__(self, source: dict[str, Any]) -> None:
        self.source = source
        self.source_key = str(source["key"])


def main(argv: list[str]) -> int:
    site, config, url, limit = Path(argv[0]), argv[1], argv[2], int(argv[3])
    pages = sorted((site / "art").rglob("*.html"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))[:limit]
    sessions = session_factory(make_engine(url))
    spider = _Spider(
        {"key": "stages", "kind": "site_column", "url": "http://127.0.0.1/col/all/index.html", "unit": None}
    )
    normalize = NormalizePipeline()
    dedup = DeduplicatePipeline(sessions)
    tag = TagPipeline(vocabulary_from_path(config))
    store = StorePipeline(sessions, config_path=None)
    dedup.open_spider(spider)
    tag.open_spider(spider)
    store.open_spider(spider)
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
        for name, stage in (("normalize", normalize), ("dedup", dedup), ("tag", tag), ("store", store)):
            t0 = time.perf_counter()
            item = stage.process_item(item, spider)
            spent[name] += time.perf_counter() - t0
    store.close_spider(spider)
    print(json.dumps({"articles": len(pages), "seconds": spent}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
