"""The search index follows the corpus: stories stored by the real pipeline (normalize → dedup →
store) are found at once; an edit replaces the old words; a story deleted at source stays
findable under the state filter; a retag moves the topic filter; a deleted story disappears."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from archive.search import Filters, search
from crawler.items import STATE_DELETED
from pipeline.corpus.models import Appearance, Article, ArticleTag, Snapshot, Unit
from pipeline.corpus.retag import retag_corpus
from pipeline.corpus.search_index import indexed_count, remove_article
from pipeline.tagging.rules import Vocabulary
from tests.test_archive_corpus import SHANGHAI
from tests.test_pipeline_support import Crawl, article_item, text
from zhuanlan_config import TopicConf, UnitConf

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

UNITS = (UnitConf("张掖市财政局", None, ("市财政局",)),)
VOCAB_A = Vocabulary(units=UNITS, topics=(TopicConf("预算管理", {"预算": 1.0}, min_score=1.0),))
VOCAB_B = Vocabulary(units=UNITS, topics=(TopicConf("民生保障", {"民生": 1.0}, min_score=1.0),))


def found(sessions: sessionmaker[Session], q: str, **filters: str) -> list[str]:
    with sessions() as session:
        return [hit.title for hit in search(session, q, Filters(**filters), per_page=100, tz=SHANGHAI).hits]  # type: ignore[arg-type]


def _delete_story(session: Session, article_id: int) -> None:
    """What deleting a story takes: its rows in dependency order (the foreign keys form a cycle)."""
    appearance_ids = list(session.scalars(select(Appearance.id).where(Appearance.article_id == article_id)))
    session.execute(update(Article).where(Article.id == article_id).values(first_appearance_id=None))
    session.execute(update(Appearance).where(Appearance.id.in_(appearance_ids)).values(snapshot_id=None))
    session.execute(delete(Snapshot).where(Snapshot.appearance_id.in_(appearance_ids)))
    session.execute(delete(Appearance).where(Appearance.id.in_(appearance_ids)))
    session.execute(delete(ArticleTag).where(ArticleTag.article_id == article_id))
    session.execute(delete(Article).where(Article.id == article_id))


def test_insert_edit_and_deleted_at_source(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    assert found(sessions, "十分重要") == []
    chain.run(article_item("a1", text("original"), published_at=now - timedelta(days=1)))
    title = "以全会精神为指引 推动财政工作高质量发展"
    assert found(sessions, "十分重要") == [title]  # inserted: searchable in the same transaction's commit
    assert found(sessions, "冲锋在前") == []

    # The source edits the page: the new words are found, the removed ones no longer.
    chain.run(article_item("a1", text("small_edits"), published_at=now, fetched_at=now + timedelta(hours=5)))
    assert found(sessions, "冲锋在前") == [title]
    assert found(sessions, "十分重要") == [] and found(sessions, '"不折不扣"') == []
    assert found(sessions, "冲锋在前", state="edited") == [title]

    # Deleted at source: our copy stays in the index, reachable under its state.
    chain.run(article_item("a1", "", published_at=now, state=STATE_DELETED))
    chain.close()
    assert found(sessions, "冲锋在前", state="deleted") == [title]
    assert found(sessions, "冲锋在前", state="live") == []
    assert found(sessions, "冲锋在前") == [title]
    with sessions() as session:
        assert indexed_count(session) == 1


def test_retag_moves_the_topic_filter_and_leaves_the_text_index_alone(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    with sessions() as session, session.begin():
        session.add(Unit(name="张掖市财政局", aliases=["市财政局"]))
    chain = Crawl(sessions, now)
    chain.run(article_item("r1", text("original"), published_at=now, source_label="张掖市财政局"))
    chain.close()
    title = "以全会精神为指引 推动财政工作高质量发展"

    retag_corpus(sessions, VOCAB_A, batch_size=10, now=now)
    assert found(sessions, "", topic="预算管理") == [title]
    assert found(sessions, "零基预算", topic="预算管理", unit="市财政局") == [title]
    assert found(sessions, "", topic="民生保障") == []

    retag_corpus(sessions, VOCAB_B, batch_size=10, now=now + timedelta(hours=1))
    assert found(sessions, "", topic="预算管理") == []
    assert found(sessions, "零基预算", topic="民生保障") == [title]
    assert found(sessions, "零基预算") == [title]
    with sessions() as session:
        assert indexed_count(session) == 1


def test_deleted_story_leaves_results_and_index(sessions: sessionmaker[Session], now: datetime) -> None:
    chain = Crawl(sessions, now)
    chain.run(article_item("d1", text("original"), published_at=now - timedelta(days=2)))
    chain.run(
        article_item("d2", text("notice_lecture"), title="关于举办专题讲座的通知", published_at=now - timedelta(days=1))
    )
    chain.close()
    with sessions() as session:
        ids = {title: id_ for title, id_ in session.execute(select(Article.title, Article.id))}
        assert indexed_count(session) == 2
    gone = ids["以全会精神为指引 推动财政工作高质量发展"]

    with sessions() as session, session.begin():
        _delete_story(session, gone)
        remove_article(session, gone)
    assert found(sessions, "十分重要") == []
    assert found(sessions, "", state="any") == ["关于举办专题讲座的通知"]
    with sessions() as session:
        assert indexed_count(session) == 1


def test_a_lingering_index_entry_never_brings_a_deleted_story_back(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    """A deleter that forgets `remove_article` (PostgreSQL cascades; SQLite's FTS5 table cannot):
    results come from the articles table, so the orphan entry shows nowhere."""
    chain = Crawl(sessions, now)
    chain.run(article_item("o1", text("original"), published_at=now))
    chain.close()
    with sessions() as session, session.begin():
        _delete_story(session, session.scalars(select(Article.id)).one())
    assert found(sessions, "十分重要") == []
    assert found(sessions, "十分重要 OR 粮") == []  # the mixed index + scan path too
    with sessions() as session:
        result = search(session, "十分重要", Filters(), tz=SHANGHAI)
        assert result.total == 0 and result.hits == []
