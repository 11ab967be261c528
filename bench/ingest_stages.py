"""Where the ingest time goes: the article pages of the generated site run through the spider's
extraction (the crawl process's share) and the stages of `pipeline.ingest.Ingest` as the pipeline
worker runs them (batched, a commit every `MAX_BATCH` pages), each stage called as `Ingest.handle`
calls it, with a timer around each stage and around the commits.

Run as `python -m bench.ingest_stages SITE_DIR CONFIG DATABASE_URL LIMIT`; the database must be
initialised. Prints one JSON line: seconds per stage (total) and the number of articles.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from crawler.items import STATE_OK, ArticleItem
from crawler.keys import site_key
from crawler.parsing.encoding import decode_checked
from crawler.parsing.site_article import extract_article
from pipeline.ingest import MAX_BATCH, Ingest
from pipeline.normalize import normalize
from pipeline.precompute import precompute
from pipeline.record import Record, SourceRef
from pipeline.tag import vocabulary_from_path
from pipeline.tagging.rules import warm_up_keywords

STAGES = ("extract", "normalize", "precompute", "dedup", "tag", "store", "commit")


def main(argv: list[str]) -> int:
    site, config, url, limit = Path(argv[0]), argv[1], argv[2], int(argv[3])
    pages = sorted((site / "art").rglob("*.html"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))[:limit]
    source = SourceRef("stages", "site_column", "http://127.0.0.1/col/all/index.html")
    warm_up_keywords()
    ingest = Ingest.connect(url, vocabulary_from_path(config))
    ingest.open_source(1, source)
    run = ingest.sources[1]
    spent = dict.fromkeys(STAGES, 0.0)
    for number, path in enumerate(pages, 1):
        page_url = f"http://127.0.0.1{path.as_posix().split(site.as_posix(), 1)[1]}"
        t0 = time.perf_counter()
        body = path.read_bytes()
        decoded = decode_checked(body, "text/html; charset=utf-8", None)
        article = extract_article(decoded.text, page_url, {})
        item = ArticleItem(
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
        t0 = time.perf_counter()
        record = normalize(item)
        assert isinstance(record, Record)
        t1 = time.perf_counter()
        precompute(record)
        t2 = time.perf_counter()
        with ingest.sessions() as session:
            ingest.deduplicator.decide(session, record)
        t3 = time.perf_counter()
        ingest.tagger.tag(record, source)
        t4 = time.perf_counter()
        ingest.store.write(record, run.run, run.row)
        t5 = time.perf_counter()
        for name, seconds in zip(STAGES[1:6], (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            spent[name] += seconds
        if number % MAX_BATCH == 0:
            t0 = time.perf_counter()
            ingest.commit()
            spent["commit"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    ingest.commit()
    spent["commit"] += time.perf_counter() - t0
    ingest.close_source(1, 0)
    ingest.shutdown()
    print(json.dumps({"articles": len(pages), "seconds": spent}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
