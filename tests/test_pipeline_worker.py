"""The pipeline worker and its batches: units of work as SAVEPOINTs of one transaction, what a
failed batch records, the tag id cache across a rolled-back savepoint, and a crawl whose worker
process is killed (the crawl says so, nothing is left half-done, the next crawl completes).

Runs on SQLite, and on PostgreSQL with ZHUANLAN_TEST_DATABASE_URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from crawler.items import ListPageItem
from crawler.samples.server import SampleSources
from pipeline.corpus.db import BatchedSessions, DatabaseError, make_engine, session_factory, transaction
from pipeline.corpus.models import Appearance, Article, ArticleTag, CrawlRun, Snapshot, SourceRun, Tag, Unit
from pipeline.corpus.runs import count
from pipeline.corpus.tagstore import insert_new_article_tags, tag_ids
from pipeline.ingest import Ingest
from pipeline.record import Record, SourceRef, Tags
from pipeline.tag import Tagger
from pipeline.tagging.vocabulary import Vocabulary
from pipeline.worker.server import PROCESS_NAME
from pipeline.worker.shell import prepare
from tests.faults_support import (
    integrity_problems,
    log_tail,
    read_corpus,
    run_cli,
    start_cli,
    wait_for,
    write_config,
)
from tests.test_pipeline_support import SOURCE, SOURCE_KEY, SOURCE_URL, article_item, text


@pytest.fixture
def batch_engine(db_url: str, engine: Engine) -> Iterator[Engine]:
    """A second engine on the migrated test database, made as the worker makes its own."""
    eng = make_engine(db_url, immediate_transactions=True)
    yield eng
    eng.dispose()


def _units(sessions: sessionmaker[Session]) -> set[str]:
    with sessions() as s:
        return set(s.scalars(select(Unit.name)))


def _add_unit(session: Session, name: str) -> None:
    session.execute(insert(Unit).values(name=name, aliases=[], sort_order=0))


def test_a_failed_unit_rolls_back_alone_and_the_batch_commits_the_rest(
    batch_engine: Engine, sessions: sessionmaker[Session]
) -> None:
    batch = BatchedSessions(session_factory(batch_engine))
    with transaction(batch) as s:
        _add_unit(s, "市财政局")
    with pytest.raises(IntegrityError), transaction(batch) as s:
        _add_unit(s, "市教育局")
        _add_unit(s, "市财政局")  # unique name: this unit fails, with its first insert
    with transaction(batch) as s:
        _add_unit(s, "市商务局")
        # a later unit sees what earlier units of the batch wrote
        assert set(s.scalars(select(Unit.name))) == {"市财政局", "市商务局"}
    assert batch.units == 2
    assert _units(sessions) == set()  # nothing is visible before the commit
    batch.commit()
    assert _units(sessions) == {"市财政局", "市商务局"}
    batch.close()


def _fail_statements(engine: Engine, prefix: str, times: int) -> list[int]:
    """The next `times` statements starting with `prefix` fail as if the database refused them."""
    left = [times]

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(prefix) and left[0] > 0:
            left[0] -= 1
            raise OperationalError(statement, params, Exception("database or disk is full"))

    event.listen(engine, "before_cursor_execute", before)
    return left


def test_a_database_failure_abandons_the_whole_batch_and_says_so(
    batch_engine: Engine, sessions: sessionmaker[Session]
) -> None:
    abandoned: list[str] = []
    batch = BatchedSessions(session_factory(batch_engine), on_abandon=abandoned.append)
    with transaction(batch) as s:
        _add_unit(s, "市财政局")
    left = _fail_statements(batch_engine, "INSERT INTO UNITS", 1)
    with pytest.raises(DatabaseError, match="database or disk is full"), transaction(batch) as s:
        _add_unit(s, "市教育局")
    assert left == [0]
    assert len(abandoned) == 1 and "database or disk is full" in abandoned[0]
    assert batch.units == 0
    # the next unit starts a new transaction; the abandoned one is gone entirely
    with transaction(batch) as s:
        _add_unit(s, "市商务局")
    batch.commit()
    assert _units(sessions) == {"市商务局"}
    batch.close()


def test_a_commit_that_fails_reports_the_batch_lost(batch_engine: Engine, sessions: sessionmaker[Session]) -> None:
    abandoned: list[str] = []
    batch = BatchedSessions(session_factory(batch_engine), on_abandon=abandoned.append)
    with transaction(batch) as s:
        _add_unit(s, "市财政局")

    def refuse(conn: Any) -> None:
        raise OperationalError("COMMIT", {}, Exception("database is locked"))

    event.listen(batch_engine, "commit", refuse)
    with pytest.raises(DatabaseError, match="locked"):
        batch.commit()
    event.remove(batch_engine, "commit", refuse)
    assert abandoned and "locked" in abandoned[0]
    assert _units(sessions) == set()
    batch.close()


def _insert_article(s: Session, guid: str, body: str, now: datetime) -> int:
    """A bare article row (no appearance): enough for tag and search-index rows to refer to."""
    inserted = (
        s.connection()
        .execute(
            insert(Article).values(
                guid=guid,
                title=f"标题{guid}",
                body_html=f"<p>{body}</p>",
                body_text=body,
                content_hash=guid,
                state="live",
                created_at=now,
                updated_at=now,
                positions=[],
            )
        )
        .inserted_primary_key
    )
    assert inserted is not None
    return int(inserted[0])


def test_tag_ids_stay_right_across_a_rolled_back_savepoint(
    batch_engine: Engine, sessions: sessionmaker[Session], now: datetime
) -> None:
    batch = BatchedSessions(session_factory(batch_engine))
    with transaction(batch) as s:
        kept = tag_ids(s, [("keyword", "保留词")], batch.batch)[("keyword", "保留词")]
    with pytest.raises(RuntimeError), transaction(batch) as s:
        tag_ids(s, [("keyword", "回滚词")], batch.batch)  # inserted, then rolled back with its savepoint
        raise RuntimeError("the store failed after inserting a tag")
    with transaction(batch) as s:
        # the id of the rolled-back row must not be reused from a cache
        ids = tag_ids(s, [("keyword", "回滚词"), ("keyword", "保留词")], batch.batch)
        assert ids[("keyword", "保留词")] == kept
        article_id = _insert_article(s, "g1", "正文", now)
        insert_new_article_tags(s, article_id, Tags(keywords=["回滚词", "保留词"]), batch.batch)
    batch.commit()
    assert batch.batch.cache.ids.tags[("keyword", "回滚词")] != 0  # committed ids are shared from now on
    # Then the whole next batch is lost: ids it only read in a tainted transaction are not trusted.
    with pytest.raises(RuntimeError), transaction(batch) as s:
        tag_ids(s, [("keyword", "新词")], batch.batch)
        raise RuntimeError("rolled back")
    with transaction(batch) as s:
        tag_ids(s, [("keyword", "新词")], batch.batch)
    batch.close()  # rolls back: 新词 never committed (SQLite)
    cached = batch.batch.cache.ids.tags.get(("keyword", "新词"))
    if batch_engine.dialect.name == "postgresql":
        # New names are committed at once there, on their own connection (concurrent writers).
        with sessions() as s:
            assert cached is not None and s.get(Tag, cached) is not None
    else:
        assert cached is None
    with transaction(session_factory(batch_engine)) as s:
        fresh = tag_ids(s, [("keyword", "新词")])[("keyword", "新词")]
        assert s.get(Tag, fresh) is not None
    with sessions() as s:
        names = set(s.scalars(select(Tag.name).join(ArticleTag, ArticleTag.tag_id == Tag.id)))
        assert names == {"回滚词", "保留词"}


SOURCE_REF = SourceRef.from_definition(SOURCE_KEY, SOURCE)


def refuse_commits(worker: Ingest) -> list[bool]:
    """A switch: set its one element and the worker's next commit is refused ("database is locked")."""
    refuse = [False]

    def on_commit(conn: Any) -> None:
        if refuse[0]:
            refuse[0] = False
            raise OperationalError("COMMIT", {}, Exception("database is locked"))

    event.listen(worker.engine, "commit", on_commit)
    return refuse


def _ingest(db_url: str) -> Ingest:
    """The ingest as the pipeline worker runs it: batched, on its own engine."""
    ingest = Ingest.connect(db_url, Vocabulary.empty())
    ingest.open_source(1, SOURCE_REF)
    return ingest


def test_the_worker_records_every_page_of_a_lost_batch_and_the_next_run_stores_them(
    db_url: str, engine: Engine, sessions: sessionmaker[Session], now: datetime
) -> None:
    names = ["original", "notice_lecture", "notice_reading_class", "same_unit_other"]
    items = [
        article_item(f"w{i}", text(name), title=f"标题{i}", published_at=now - timedelta(days=i + 1))
        for i, name in enumerate(names)
    ]
    worker = _ingest(db_url)
    worker.handle(1, items[0])
    worker.commit()  # the first page is stored
    refuse = refuse_commits(worker)
    for item in items[1:]:
        worker.handle(1, item)
    # The batch's commit is refused (not a commit made while handling: on PostgreSQL new tag
    # names are committed at once on their own connection).
    refuse[0] = True
    worker.commit()  # refused: three pages lost
    assert worker.pending == 0  # settled: stored, or recorded as lost
    worker.close_source(1, requests=5)
    worker.shutdown()
    with sessions() as s:
        assert set(s.scalars(select(Appearance.canonical_key))) == {items[0].canonical_key}
        run = s.scalars(select(SourceRun)).one()
        assert run.status == "error" and "could not store the page" in (run.error_summary or "")
        lost = [p for p in run.problems if p["kind"] == "database"]
        assert sorted(p["url"] for p in lost) == sorted(item.url for item in items[1:])
        assert integrity_problems(s) == []
    again = _ingest(db_url)
    for item in items:
        again.handle(1, item)
    again.close_source(1, requests=5)
    again.shutdown()
    with sessions() as s:
        assert set(s.scalars(select(Appearance.canonical_key))) == {item.canonical_key for item in items}
        assert s.scalars(select(SourceRun.status).order_by(SourceRun.id)).all() == ["error", "ok"]
        assert s.scalar(select(func.count()).select_from(Article)) == len(items)
        assert integrity_problems(s) == []


def test_a_lost_batch_logs_its_pages_apart_from_list_pages_whose_validators_are_let_go(
    db_url: str, sessions: sessionmaker[Session], now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    worker = _ingest(db_url)
    refuse = refuse_commits(worker)

    def lose(*pages: Any) -> list[str]:
        caplog.clear()
        for page in pages:
            worker.handle(1, page)
        refuse[0] = True
        with caplog.at_level(logging.WARNING, logger="pipeline.ingest"):
            worker.commit()
        return [record.getMessage() for record in caplog.records if record.name == "pipeline.ingest"]

    def list_page(n: int) -> ListPageItem:
        return ListPageItem(
            source_key=SOURCE_KEY, url=f"{SOURCE_URL}?page={n}", etag=f'"e{n}"', last_modified=None, fetched_at=now
        )

    # Only list pages: nothing is recorded on the run, and the log does not say pages were lost.
    said = lose(list_page(1), list_page(2))
    assert not any("pages rolled back" in line for line in said), said
    assert any("validators of 2 list pages were rolled back" in line for line in said), said
    # An article with a list page: the article is the page rolled back, and it is recorded.
    article = article_item("lost1", text("original"), title="标题", published_at=now - timedelta(days=1))
    said = lose(list_page(3), article)
    assert any(line.startswith("1 pages rolled back: ") for line in said), said
    assert any("validators of 1 list pages were rolled back" in line for line in said), said
    worker.close_source(1, requests=4)
    worker.shutdown()
    with sessions() as s:
        run = s.scalars(select(SourceRun)).one()
        assert [p["url"] for p in run.problems if p["kind"] == "database"] == [article.url]


def test_run_counters_of_a_batch_are_written_with_it_and_a_failed_unit_takes_its_counts_back(
    db_url: str, sessions: sessionmaker[Session], now: datetime
) -> None:
    names = ["original", "notice_lecture", "same_unit_other"]
    items = [
        article_item(f"c{i}", text(name), title=f"标题{i}", published_at=now - timedelta(days=i + 1))
        for i, name in enumerate(names)
    ]
    repost = article_item("c9", text("original"), title="标题0", published_at=now)  # same text, another page
    worker = _ingest(db_url)
    for item in [*items, repost]:
        worker.handle(1, item)
    run_id = worker.sources[1].run.source_run_id
    batch = worker.sessions.batch if isinstance(worker.sessions, BatchedSessions) else None
    with pytest.raises(RuntimeError), transaction(worker.sessions) as s:
        count(s, run_id, {"new_stories": 5, "unchanged": 2}, batch)
        raise RuntimeError("a unit that fails after counting")

    def counters() -> tuple[int | None, ...]:
        with sessions() as s:
            run = s.scalars(select(SourceRun)).one()
            return (run.new_stories, run.new_appearances, run.reposts, run.unchanged)

    assert counters() == (0, 0, 0, 0)  # written with the batch, not before
    worker.commit()
    assert counters() == (3, 4, 1, 0)
    worker.handle(1, items[0])  # fetched again, unchanged: a batch of its own
    worker.close_source(1, requests=6)
    worker.shutdown()
    assert counters() == (3, 4, 1, 1)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Article)) == 3
        assert s.scalar(select(func.count()).select_from(Appearance)) == 4


# --- a crawl whose worker dies ------------------------------------------------------------------


def _workers(pid: int) -> list[int]:
    """Pipeline worker processes of the crawl process `pid` (its children named `PROCESS_NAME`)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            name = Path(f"/proc/{entry}/comm").read_bytes().strip()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and name == PROCESS_NAME:
            found.append(int(entry))
    return found


@contextmanager
def _initialised_samples(tmp_path: Path, db_url: str) -> Iterator[tuple[SampleSources, Path, sessionmaker[Session]]]:
    """The sample sources served, their config written and its database initialised."""
    with SampleSources(port=0) as samples:
        cfg = write_config(tmp_path / "zhuanlan.toml", samples)
        assert run_cli(cfg, db_url, "init").returncode == 0
        engine = make_engine(db_url)
        try:
            yield samples, cfg, session_factory(engine)
        finally:
            engine.dispose()


def _crawl_killing_its_worker(cfg: Path, db_url: str, when: Callable[[int], None]) -> subprocess.Popen[bytes]:
    """`zhuanlan crawl --json` whose pipeline worker is SIGKILLed once `when(crawl pid)` returns; finished."""
    proc = start_cli(cfg, db_url, "crawl", "--json")
    try:
        assert wait_for(lambda: bool(_workers(proc.pid)), 60), "no pipeline worker process started"
        when(proc.pid)
        for child in _workers(proc.pid):
            os.kill(child, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc


def _run_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(CrawlRun)) or 0)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker process through /proc (Linux)")
def test_a_crawl_whose_worker_is_killed_says_so_and_the_next_crawl_completes(tmp_path: Path, db_url: str) -> None:
    def planned(pid: int) -> None:
        # killed as soon as it has planned the run (the worker plans it: the run's row is there),
        # before it stores anything, whatever the machine's speed
        assert wait_for(lambda: _run_count(sessions) == 1, 60), "the worker did not plan the run"
        # `zhuanlan crawl` forks its worker (one thread when it starts it): same command line
        crawl_command = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert [Path(f"/proc/{w}/cmdline").read_bytes() for w in _workers(pid)] == [crawl_command]

    with _initialised_samples(tmp_path, db_url) as (samples, cfg, sessions):
        proc = _crawl_killing_its_worker(cfg, db_url, planned)
        said = log_tail(proc, 100_000)
        assert "the pipeline worker stopped unexpectedly" in said, said[-3000:]
        assert proc.returncode == 1
        with sessions() as s:
            assert integrity_problems(s) == []
            run = s.scalars(select(CrawlRun)).one()
            assert run.status == "failed", run.summary
            assert any("pipeline worker stopped" in line for line in run.summary["failures"]), run.summary
            assert "running" not in set(s.scalars(select(SourceRun.status)))
            before = len(read_corpus(s).keys)
        assert before < samples.truth()["appearance_count"]
        again = run_cli(cfg, db_url, "crawl", "--json")
        assert again.returncode == 0, again.stderr[-3000:]
        assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "ok"
        with sessions() as s:
            assert len(read_corpus(s).keys) == samples.truth()["appearance_count"]
            assert integrity_problems(s) == []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker process through /proc (Linux)")
def test_a_worker_killed_before_it_planned_the_run_is_one_plain_error(tmp_path: Path, db_url: str) -> None:
    with _initialised_samples(tmp_path, db_url) as (samples, cfg, sessions):
        # The worker plans the run in one transaction that writes the run's row: held up by a
        # transaction that locked the table (PostgreSQL) or the database (SQLite), it cannot have
        # planned when it is killed.
        engine = make_engine(db_url)
        with engine.connect() as holder:
            if engine.dialect.name == "postgresql":
                holder.execute(sql_text("LOCK TABLE crawl_runs IN EXCLUSIVE MODE"))
            else:
                holder.execute(update(Unit).values(sort_order=Unit.sort_order))
            # by half a second after it started, it waits for the lock (as long as the lock is held)
            proc = _crawl_killing_its_worker(cfg, db_url, lambda pid: time.sleep(0.5))
            holder.rollback()
        engine.dispose()
        said = log_tail(proc, 100_000)
        assert proc.returncode == 1, said[-3000:]
        assert "zhuanlan: the pipeline worker stopped before it planned the crawl" in said, said[-3000:]
        assert "Traceback" not in said, said[-3000:]
        assert _run_count(sessions) == 0  # nothing was planned, so nothing is left half done
        again = run_cli(cfg, db_url, "crawl", "--json")
        assert again.returncode == 0, again.stderr[-3000:]
        with sessions() as s:
            assert len(read_corpus(s).keys) == samples.truth()["appearance_count"]


# --- the crawl process's share: prepare ---------------------------------------------------------


def test_the_crawl_process_normalizes_and_tags_and_turns_bad_pages_into_problems(now: datetime) -> None:
    from crawler.items import STATE_VERIFY, ProblemItem

    tagger = Tagger(Vocabulary.empty())

    def here(page: Any, *, tag: bool = True) -> Any:
        return prepare(page, SOURCE_REF, tagger, precompute_here=False, tag_here=tag)

    good = here(article_item("p1", text("original"), published_at=now))
    assert isinstance(good, Record) and good.body_text and good.content_hash
    assert good.tags is not None and good.tags.keywords  # tagged here: the worker keeps these tags
    assert good.minhash is None  # signed by the worker, with deduplication

    empty = here(article_item("p2", "", published_at=now))
    assert isinstance(empty, ProblemItem) and empty.kind == "parse" and not empty.fatal

    verify = here(article_item("p3", "x", published_at=now, state=STATE_VERIFY))
    assert isinstance(verify, ProblemItem) and verify.kind == STATE_VERIFY

    broken = article_item("p4", text("original"), published_at=now)
    broken.body_html = None  # type: ignore[assignment]  # a spider bug: the stage raises
    failed = here(broken)
    assert isinstance(failed, ProblemItem) and failed.fatal and failed.kind == "pipeline"
    assert failed.url == broken.url and "could not process the page" in failed.reason

    other = ProblemItem(source_key=SOURCE_KEY, url="https://x.example/", kind="timeout", reason="timed out")
    assert here(other) is other


def test_work_done_ahead_by_the_crawl_process_stores_what_the_worker_would_have(
    db_url: str, sessions: sessionmaker[Session], now: datetime
) -> None:
    """Pages signed, hashed and split in the crawl process (while the worker is behind) are stored
    exactly as pages the worker completes itself: a new story, a repost, and an edit of each kind."""
    import zlib

    from archive.search import Filters, search
    from pipeline.similarity import signature

    tagger = Tagger(Vocabulary.empty())
    pages = {
        "plain": article_item("a1", text("original"), title="标题甲", published_at=now - timedelta(days=3)),
        "ahead": article_item("a2", text("notice_lecture"), title="标题乙", published_at=now - timedelta(days=2)),
        "repost ahead": article_item("a3", text("original"), title="标题甲", published_at=now - timedelta(days=1)),
    }
    edits = {
        "plain": article_item(
            "a1", text("original") + "\n文末补充一段新的学习体会。", title="标题甲", published_at=now
        ),
        "ahead": article_item("a2", text("notice_lecture") + "\n文末补充通知事项。", title="标题乙", published_at=now),
    }
    worker = _ingest(db_url)
    records = []
    for batch in (pages, edits):
        for name, item in batch.items():
            record = prepare(item, SOURCE_REF, tagger, precompute_here="ahead" in name, tag_here=True)
            assert isinstance(record, Record)
            assert (record.minhash is not None) == ("ahead" in name)
            assert (record.search is not None) == (record.snapshot is not None) == ("ahead" in name)
            records.append(record)
            worker.handle(1, record)
        worker.commit()
    worker.close_source(1, requests=5)
    worker.shutdown()
    with sessions() as s:
        for record in records:
            item = record.item
            digest = hashlib.sha256(item.raw_body).hexdigest()
            stored = s.scalars(select(Snapshot).where(Snapshot.sha256 == digest)).one()  # the repost's bytes: reused
            assert zlib.decompress(stored.content) == item.raw_body
            appearance = s.scalars(select(Appearance).where(Appearance.canonical_key == item.canonical_key)).one()
            if record in records[3:]:  # the edits: their appearance shows the new bytes
                assert appearance.snapshot_id == stored.id
        articles = {a.title: a for a in s.scalars(select(Article))}
        assert len(articles) == 2  # the repost joined the first story
        for article in articles.values():
            assert article.minhash == signature(article.body_text)
            assert article.state == "edited"
        hits = search(s, "新的学习体会", Filters(), tz=UTC).hits
        assert [hit.article_id for hit in hits] == [articles["标题甲"].id]
        hits = search(s, "补充通知事项", Filters(), tz=UTC).hits
        assert [hit.article_id for hit in hits] == [articles["标题乙"].id]
        assert integrity_problems(s) == []


def test_the_work_split_moves_work_to_the_side_with_time_to_spare() -> None:
    from pipeline.worker.split import WORKER_IDLE_SHARE, WorkSplit

    split = WorkSplit(span=3, tags_move_after=2)
    split.worker_idled(0.9)  # too early in the crawl: loading the keyword model would not pay
    assert [split.next_page() for _ in range(2)] == [(False, True)] * 2  # the default: tag here, nothing ahead
    split.worker_idled(WORKER_IDLE_SHARE / 2)  # a busy worker keeps what it has
    assert split.next_page() == (False, True)
    split.worker_idled(WORKER_IDLE_SHARE)  # a worker waiting that share of its time tags the next pages
    assert [split.next_page() for _ in range(4)] == [(False, False)] * 3 + [(False, True)]
    split.worker_idled(0.9)
    assert split.next_page() == (False, False)
    split.crawl_waited()  # the window filled: the crawl process tags again and works ahead
    assert [split.next_page() for _ in range(4)] == [(True, True)] * 3 + [(False, True)]
    split.crawl_waited()
    split.worker_idled(0.5)  # the latest signal wins
    assert split.next_page() == (False, False)


def test_pages_the_worker_tags_get_the_tags_the_crawl_process_would_give(
    db_url: str, sessions: sessionmaker[Session], now: datetime
) -> None:
    import copy

    tagger = Tagger(Vocabulary.empty())
    item = article_item("t1", text("original"), title="以全会精神为指引 推动财政工作高质量发展", published_at=now)
    untagged = prepare(item, SOURCE_REF, tagger, precompute_here=False, tag_here=False)
    tagged_here = prepare(copy.deepcopy(item), SOURCE_REF, tagger, precompute_here=False, tag_here=True)
    assert isinstance(untagged, Record) and untagged.tags is None
    assert isinstance(tagged_here, Record) and tagged_here.tags is not None and tagged_here.tags.keywords
    worker = _ingest(db_url)
    worker.handle(1, untagged)
    worker.close_source(1, requests=1)
    worker.shutdown()
    with sessions() as s:
        article = s.scalars(select(Article)).one()
        keywords = set(
            s.scalars(
                select(Tag.name)
                .join(ArticleTag, ArticleTag.tag_id == Tag.id)
                .where(ArticleTag.article_id == article.id, Tag.kind == "keyword")
            )
        )
        assert keywords == set(tagged_here.tags.keywords)
        assert article.author == tagged_here.tags.author


def test_acknowledgements_say_how_long_the_worker_waited_for_pages(
    db_url: str, sessions: sessionmaker[Session], now: datetime
) -> None:
    import multiprocessing
    import threading
    import time

    from pipeline.worker.protocol import Close, Closed, Open, Opened, Pages, Settled, Stop
    from pipeline.worker.server import serve

    worker = Ingest.connect(db_url, Vocabulary.empty())
    ours, theirs = multiprocessing.Pipe()
    server = threading.Thread(target=serve, args=(theirs, worker), daemon=True)
    server.start()
    ours.send(Open(1, SOURCE_REF))
    assert ours.recv() == Opened(1, None)
    time.sleep(1.0)  # the worker has nothing to do
    ours.send(Pages(((1, article_item("i1", text("original"), published_at=now)),)))
    settled = ours.recv()
    assert isinstance(settled, Settled) and settled.pages == 1
    assert 1.0 <= settled.idle_seconds <= 10
    ours.send(Pages(((1, article_item("i2", text("notice_lecture"), published_at=now)),)))
    settled = ours.recv()
    # counted afresh: about the wait before this commit
    assert isinstance(settled, Settled) and settled.pages == 1 and settled.idle_seconds < 1.0
    ours.send(Close(1, 2))
    assert ours.recv() == Closed(1, None)
    ours.send(Stop())
    server.join(10)
    worker.shutdown()


def test_pages_waiting_in_the_pipe_are_prepared_as_one_group(
    db_url: str, sessions: sessionmaker[Session], now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing
    import threading

    from pipeline.worker.protocol import Close, Closed, Open, Opened, Pages, Settled, Stop
    from pipeline.worker.server import serve

    groups: list[int] = []
    prepare_group = Ingest.prepare

    def counted(self: Ingest, pages: Any) -> Any:
        groups.append(len(pages))
        return prepare_group(self, pages)

    monkeypatch.setattr(Ingest, "prepare", counted)
    worker = Ingest.connect(db_url, Vocabulary.empty())
    ours, theirs = multiprocessing.Pipe()
    ours.send(Open(1, SOURCE_REF))
    bodies = (
        "original",
        "notice_lecture",
        "notice_reading_class",
        "same_unit_other",
        "brief_news",
        "repost_header_footer",
    )
    for n in range(3):  # three messages wait before the worker reads any
        pair = bodies[2 * n : 2 * n + 2]
        ours.send(Pages(tuple((1, article_item(f"g{n}-{b}", text(b), published_at=now)) for b in pair)))
    ours.send(Close(1, 6))
    server = threading.Thread(target=serve, args=(theirs, worker), daemon=True)
    server.start()
    assert ours.recv() == Opened(1, None)
    closed, settled = ours.recv(), ours.recv()  # the Close after the pages is answered in its turn
    assert closed == Closed(1, None)
    assert isinstance(settled, Settled) and settled.pages == 6
    assert groups == [6]
    ours.send(Stop())
    server.join(10)
    worker.shutdown()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Appearance)) == 6


def test_search_entries_of_a_batch_are_written_with_it_and_not_for_a_failed_unit(
    batch_engine: Engine, sessions: sessionmaker[Session], now: datetime
) -> None:
    from pipeline.corpus.search_index import index_article, indexed_count

    batch = BatchedSessions(session_factory(batch_engine))
    with transaction(batch) as s:
        first = _insert_article(s, "g1", "粮食安全是国之大者", now)
        index_article(s, first, "标题g1", "粮食安全是国之大者", new=True)
    with pytest.raises(RuntimeError), transaction(batch) as s:
        lost = _insert_article(s, "g2", "河湖长制全面推行", now)
        index_article(s, lost, "标题g2", "河湖长制全面推行", new=True)
        raise RuntimeError("this unit fails after indexing")
    with transaction(batch) as s:
        second = _insert_article(s, "g3", "科技创新引领发展", now)
        index_article(s, second, "标题g3", "科技创新引领发展", new=True)
        index_article(s, second, "标题g3", "科技创新引领高质量发展")  # an edit in the same batch
    with sessions() as s:
        assert indexed_count(s) == 0  # nothing before the commit
    batch.commit()
    batch.close()
    with sessions() as s:
        assert indexed_count(s) == 2
        ids = set(s.scalars(select(Article.id)))
        assert ids == {first, second}
    from archive.search import Filters, search

    def found(s: Session, query: str) -> list[int]:
        return [hit.article_id for hit in search(s, query, Filters(), tz=now.tzinfo or UTC).hits]

    with sessions() as s:
        assert found(s, "粮食") == [first]
        assert found(s, "高质量") == [second]  # the edit's entry, once
        assert found(s, "河湖") == []


def test_the_worker_is_forked_only_while_the_process_runs_one_thread() -> None:
    """Forking copies only the calling thread: a lock another thread held would stay held in the
    worker. With a second thread alive the worker is spawned; alone, it is forked."""
    import subprocess
    import sys
    import threading

    from pipeline.worker.client import start_method

    alone = subprocess.run(
        [sys.executable, "-c", "from pipeline.worker.client import start_method; print(start_method())"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert alone.stdout.strip() == "fork"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert start_method() == "spawn"
    finally:
        stop.set()
        other.join()
