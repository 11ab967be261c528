"""Search and feeds when the corpus is large (issue 20), on a corpus small enough for a test and a
lowered `exact_limit`: a common lone term lists the newest matching stories with an estimated
total; rare terms, phrases the index over-estimates and filtered searches stay exact and ranked;
the feed and digest queries read the story-date indexes of migration 0010."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select, text

import archive.search
from archive.search import Filters, search
from archive.search_syntax import parse_query
from bench.corpus_gen import load
from pipeline.corpus.db import BatchedSessions, batch_of, transaction
from pipeline.corpus.models import Article, Unit
from pipeline.corpus.search_index import index_article
from tests.test_archive_corpus import SHANGHAI

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

N = 400
FILLER = ("建设", "建工", "群众", "服务", "落实", "推进", "基层", "治理")


def _corpus() -> list[tuple[str, str, datetime | None]]:
    """(title, body, published) per story: 党建 in three of four (always as 党建引领, so never
    followed by 建工), 河湖长制 in one of four, 粮食 in one of forty, the phrase 党建工 (bigrams 党建 and 建工, both in most
    stories) in exactly one; some stories undated."""
    rng = random.Random(7)
    docs = []
    for i in range(N):
        words = [rng.choice(FILLER) for _ in range(40)]
        if i % 4 != 0:
            words.insert(rng.randrange(40), "党建引领")
        if i % 40 == 5:
            words.insert(rng.randrange(40), "粮食")
        if i == 123:
            words.insert(3, "党建工")
        if i % 4 == 1:
            words.insert(rng.randrange(40), "河湖长制")
        if i % 5 == 2:  # every bigram of 水清岸绿 in 80 stories, the phrase itself in 16 of them
            if i % 25 == 2:
                words.append("水清岸绿")
            else:  # the bigrams apart, other words between them
                words[0:0], words[20:20] = ["水清"], ["清岸"]
                words.append("岸绿")
        published = None if i % 97 == 0 else datetime(2020, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(50_000))
        docs.append((f"第{i}篇", "，".join(words) + "。", published))
    return docs


DOCS = _corpus()


@pytest.fixture
def db(sessions: sessionmaker[Session]) -> Iterator[Session]:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    with sessions() as session, session.begin():
        unit = Unit(name="临江市委组织部", aliases=[])
        session.add(unit)
        articles = [
            Article(
                guid=f"g{i}",
                title=title,
                body_text=body,
                body_html="",
                content_hash=f"h{i}",
                positions=[],
                unit=unit if i % 2 else None,
                published_at=published,
                created_at=now,
                updated_at=now,
            )
            for i, (title, body, published) in enumerate(DOCS)
        ]
        session.add_all(articles)
        session.flush()
        for article in articles:
            index_article(session, article.id, article.title, article.body_text, new=True)
    with sessions() as session:
        session.execute(text("ANALYZE"))
        session.commit()
        yield session


def _newest(word: str) -> list[str]:
    """The guids holding `word`, newest first (undated last), as the common-term path lists them."""
    held = [(published, i) for i, (_, body, published) in enumerate(DOCS) if word in body]
    dated = sorted(((p, i) for p, i in held if p is not None), reverse=True)
    return [f"g{i}" for _, i in dated]


def test_common_term_lists_newest_first_with_an_estimated_total(db: Session) -> None:
    exact = sum("党建" in body for _, body, _ in DOCS)
    first = search(db, "党建", Filters(), per_page=5, tz=SHANGHAI, exact_limit=50)
    second = search(db, "党建", Filters(), page=2, per_page=5, tz=SHANGHAI, exact_limit=50)
    assert first.estimated and second.estimated
    assert [h.guid for h in first.hits] + [h.guid for h in second.hits] == _newest("党建")[:10]
    # An estimate: from where the 51st match by id lies (SQLite), from the GIN statistics (PostgreSQL).
    assert exact / 2 <= first.total <= 2 * exact and first.total > 50
    assert "<mark>党建</mark>" in first.hits[0].snippet_html
    # The same query under the default limit: every match ranked, the exact total.
    ranked = search(db, "党建", Filters(), per_page=5, tz=SHANGHAI)
    assert not ranked.estimated and ranked.total == exact


@pytest.mark.parametrize("word", ["党建", "党建引领", "河湖长制"])
@pytest.mark.parametrize("walk", ["as a set", "by id"])
def test_the_walk_reads_the_matches_as_a_set_or_by_id_alike(
    db: Session, word: str, walk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A term in up to SET_MATCH_LIMIT stories is read from the index once (on PostgreSQL the stories
    with every bigram, the phrase checked on the page's candidates; 河湖长制, in a quarter of them,
    is read whole and walked as an array); above, story by story."""
    if walk == "by id":
        monkeypatch.setattr(archive.search, "SET_MATCH_LIMIT", 0)
    pages = [search(db, word, Filters(), page=p, per_page=5, tz=SHANGHAI, exact_limit=50) for p in (1, 2)]
    assert all(page.estimated for page in pages)
    assert [h.guid for page in pages for h in page.hits] == _newest(word)[:10]


def test_a_phrase_whose_bigrams_are_common_among_its_candidates_still_pages_newest_first(db: Session) -> None:
    """On PostgreSQL the 80 stories holding every bigram of 水清岸绿 are read whole and walked newest
    first; most lack the phrase, so the walk widens until the page is full. SQLite counts the
    phrase's 16 stories exactly and ranks them."""
    holders = _newest("水清岸绿")
    assert len(holders) == 16
    pages = [search(db, "水清岸绿", Filters(), page=p, per_page=5, tz=SHANGHAI, exact_limit=20) for p in (1, 2, 3)]
    shown = [h.guid for page in pages for h in page.hits]
    if db.get_bind().dialect.name == "postgresql":
        assert all(page.estimated for page in pages) and pages[0].total == 80  # every bigram's stories
        assert shown == holders[:15]
    else:
        assert not any(page.estimated for page in pages) and pages[0].total == 16
        assert len(shown) == 15 and set(shown) < set(holders)


def test_rare_terms_filters_and_overestimated_phrases_stay_exact(db: Session) -> None:
    rare = search(db, "粮食", Filters(), per_page=5, tz=SHANGHAI, exact_limit=50)
    assert not rare.estimated and rare.total == sum("粮食" in body for _, body, _ in DOCS)
    # 党建 and 建工 are each in most stories, 党建工 in one: the walk finds too few, the exact path answers.
    phrase = search(db, "党建工", Filters(), per_page=5, tz=SHANGHAI, exact_limit=50)
    assert not phrase.estimated and [h.guid for h in phrase.hits] == ["g123"] and phrase.total == 1
    unit = search(db, "党建", Filters(unit="临江市委组织部"), per_page=5, tz=SHANGHAI, exact_limit=50)
    assert not unit.estimated
    assert unit.total == sum("党建" in body for i, (_, body, _) in enumerate(DOCS) if i % 2)
    public = search(db, "党建", Filters(hide_deleted=True), per_page=5, tz=SHANGHAI, exact_limit=50)
    assert public.estimated and [h.guid for h in public.hits] == _newest("党建")[:5]


def test_search_page_shows_an_estimate_as_about_n(db: Session) -> None:
    from flask import Flask

    from archive import web

    result = search(db, "党建", Filters(), per_page=5, tz=SHANGHAI, exact_limit=50)
    app = Flask("t", template_folder=str(web.__file__).rsplit("/", 1)[0] + "/templates")
    with app.test_request_context():
        app.jinja_env.filters["dt"] = lambda value, fmt: value.strftime(fmt) if value else ""
        source = app.jinja_env.loader.get_source(app.jinja_env, "search.html")[0]  # type: ignore[union-attr]
        line = next(line for line in source.splitlines() if 'class="count"' in line)
        rendered = app.jinja_env.from_string(line).render(result=result)
    assert f"共找到 约 {result.total} 条" in rendered


def test_generated_corpus_loads_and_feed_queries_use_the_story_date_indexes(engine: Engine) -> None:
    counts = load(engine.url.render_as_string(hide_password=False), 300, seed=3)
    assert counts.rows["articles"] == counts.rows["search"] == counts.rows["snapshots"] == 300
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM articles WHERE length(body_text) < 400")).scalar_one() == 0
        names = (
            conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'articles'")).scalars().all()
            if engine.dialect.name == "postgresql"
            else conn.execute(text("SELECT name FROM sqlite_master WHERE tbl_name = 'articles'")).scalars().all()
        )
    assert {"ix_articles_story_date", "ix_articles_unit_story_date"} <= set(names)
    if engine.dialect.name == "sqlite":
        from bench.scale_bench import plan_rows

        rows = plan_rows(engine, engine.url.render_as_string(hide_password=False))
        # (On 300 stories SQLite may rightly scan the small appearances table; the articles never.)
        assert "SCAN articles" not in rows and "SCAN articles USING INDEX ix_articles_story_date" in rows
        assert "SEARCH articles USING INDEX ix_articles_unit_story_date (unit_id=?)" in rows
        # The digest's week: a range over a date index of the articles (the 首发 date since issue 19).
        assert "SEARCH articles USING INDEX ix_articles_published_at_id (published_at>? AND published_at<?)" in rows


def test_a_batch_merges_its_search_entries_before_committing(sessions: sessionmaker[Session]) -> None:
    """PostgreSQL: the GIN indexes take new entries into their pending list and the batch merges
    the list before its commit, so no query meets one; the entries are found on both databases."""
    batched = BatchedSessions(sessions)
    now = datetime(2026, 11, 26, tzinfo=UTC)
    for i, (title, body, published) in enumerate(DOCS[:70]):
        with transaction(batched) as session:
            article = Article(
                guid=f"b{i}", title=title, body_text=body, body_html="", content_hash=f"b{i}", positions=[],
                published_at=published, created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(article)
            session.flush()
            index_article(session, article.id, title, body, new=True, batch=batch_of(batched))
    batched.commit()
    batched.close()
    with sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            options = session.execute(
                text("SELECT reloptions FROM pg_class WHERE oid = 'ix_article_search_body'::regclass")
            ).scalar_one()
            assert "fastupdate=on" in options
            left = session.execute(
                text("SELECT gin_clean_pending_list('ix_article_search_body'::regclass)")
            ).scalar_one()
            assert left == 0  # nothing was left pending after the commit
        found = search(session, "粮食", Filters(), tz=SHANGHAI)
        assert found.total == sum("粮食" in body for _, body, _ in DOCS[:70]) > 0


@pytest.mark.parametrize("hide_deleted", [False, True])
def test_ranked_pages_from_the_index_alone_equal_the_general_path(
    db: Session, hide_deleted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite an unfiltered ranked search counts and ranks in the FTS5 table and joins only the
    page (`_fts5_page`); every page, with ties of equal score (the corpus repeats bodies) and with
    deleted stories left out, is the one the general path gives."""
    import archive.search as module

    deleted = [a for a in db.scalars(select(Article).order_by(Article.id)) if "粮食" in a.body_text][::3]
    for article in deleted:
        article.state = "deleted"
    twin = db.scalars(select(Article).where(Article.guid == "g5")).one()
    for i in range(3):  # three stories with g5's body and title: their scores tie, the date decides
        copy = Article(
            guid=f"twin{i}", title=twin.title, body_text=twin.body_text, body_html="", content_hash=f"t{i}",
            positions=[], published_at=datetime(2021, 3, 1 + i, tzinfo=UTC), created_at=twin.created_at,
            updated_at=twin.created_at,
        )  # fmt: skip
        db.add(copy)
        db.flush()
        index_article(db, copy.id, copy.title, copy.body_text, new=True)
    db.commit()
    filters = Filters(hide_deleted=hide_deleted)
    for query in ("粮食", "粮食 OR 党建工", "群众 粮食"):
        fast = [search(db, query, filters, page=p, per_page=3, tz=SHANGHAI) for p in (1, 2, 3, 4)]
        monkeypatch.setattr(module, "_fts5_page", lambda *args, **kwargs: None)
        slow = [search(db, query, filters, page=p, per_page=3, tz=SHANGHAI) for p in (1, 2, 3, 4)]
        monkeypatch.undo()
        assert [[h.guid for h in r.hits] for r in fast] == [[h.guid for h in r.hits] for r in slow], query
        assert [r.total for r in fast] == [r.total for r in slow]
        assert all(
            h.score == pytest.approx(s.score)
            for r, q in zip(fast, slow, strict=True)
            for h, s in zip(r.hits, q.hits, strict=True)
        )
    held = sum("粮食" in body for _, body, _ in DOCS) + 3
    first = search(db, "粮食", filters, per_page=3, tz=SHANGHAI)
    assert first.total == held - (len(deleted) if hide_deleted else 0)
    if db.get_bind().dialect.name == "sqlite":  # the path taken: the page came from the index alone
        assert module._fts5_page(db, parse_query("粮食"), filters, 1, 3, "relevance") is not None
