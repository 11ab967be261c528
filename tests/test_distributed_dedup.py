"""Deduplication with concurrent writers (issue 20, point 2): two ingests on two connections store
near-duplicates (or exact copies) of a story at the same moment, many times over, against
PostgreSQL; every round ends with one story holding both appearances. And many writers with full
batches at once hold no more dedup locks than the server's lock table takes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, Integer, func, select, text

from crawler.items import ArticleItem
from pipeline.corpus.db import make_engine, session_factory, upgrade
from pipeline.corpus.models import Appearance, Article
from pipeline.ingest import MAX_BATCH, Ingest
from pipeline.locks import (
    FIRST_BATCH_KEYS,
    KEYS_PER_PAGE,
    WRITERS_SHARE,
    first_batch_pages,
    pages_per_transaction,
    writers_and_table,
)
from pipeline.record import Outcome, Page, Prepared, SourceRef
from pipeline.tagging.vocabulary import Vocabulary
from tests.servers import postgresql_schema, require_postgresql
from tests.test_pipeline_support import SOURCE, article_item

ROUNDS = 40
WORDS = (
    "学习 贯彻 全会 精神 推动 机关 党建 高质量 发展 深入 调研 基层 群众 服务 能力 提升 作风 建设 "
    "理论 武装 持续 强化 责任 落实 统筹 协调 改革 创新 实践 成效 干部 队伍 政治 站位 思想 行动 "
    "组织 保障 工作 部署 扎实 开展 专题 研讨 交流 心得 体会 主题 教育 成果 转化 制度 规范 监督"
).split()


def story_text(seed: int) -> str:
    """A story of its own (about 1,000 characters): shares no run of words with another seed's."""
    rng = random.Random(seed)
    lines = []
    for _ in range(14):
        lines.append("".join(rng.choice(WORDS) for _ in range(14)) + "。")
    return "\n".join(lines)


def repost_of(body: str, seed: int) -> str:
    """The story as another site reposts it: its own header and footer around the same words."""
    return f"来源：市直机关工委第{seed}期学习简报\n{body}\n（责任编辑：王晓燕　审核：李明）"


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgresql_schema(require_postgresql()) as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


def _store(ingest: Ingest, item: ArticleItem, start: threading.Barrier, outcomes: list[Outcome | None], n: int) -> None:
    start.wait()  # both pages reach the deduplicate stage at the same moment
    outcomes[n] = ingest.handle(1, item)
    ingest.commit()


def test_two_writers_storing_near_duplicates_at_once_end_with_one_story(pg_url: str) -> None:
    published = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
    ingests = [Ingest.connect(pg_url, Vocabulary.empty()) for _ in range(2)]
    for n, ingest in enumerate(ingests):
        definition = {**SOURCE, "key": f"site-{n}", "url": f"https://site{n}.example.gov.cn/xxgk/"}
        ingest.open_source(1, SourceRef.from_definition(f"site-{n}", definition))
    try:
        for rnd in range(ROUNDS):
            body = story_text(rnd)
            # Even rounds: a repost with its own header and footer (the near-duplicate path);
            # odd rounds: the very same text (the content-hash path).
            bodies = [body, repost_of(body, rnd) if rnd % 2 == 0 else body]
            items = [
                article_item(
                    f"r{rnd}-w{n}",
                    bodies[n],
                    published_at=published + timedelta(days=rnd, minutes=n),
                    source_key=f"site-{n}",
                )
                for n in range(2)
            ]
            start = threading.Barrier(2)
            outcomes: list[Outcome | None] = [None, None]
            threads = [
                threading.Thread(target=_store, args=(ingests[n], items[n], start, outcomes, n)) for n in range(2)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert outcomes == [Outcome.STORED, Outcome.STORED], rnd
        engine = make_engine(pg_url)
        with session_factory(engine)() as session:
            stories = session.scalar(select(func.count(Article.id)))
            per_story = session.execute(
                select(
                    Appearance.article_id,
                    func.count(Appearance.id),
                    func.sum(func.cast(Appearance.is_original, type_=Integer)),
                ).group_by(Appearance.article_id)
            ).all()
        engine.dispose()
        assert stories == ROUNDS
        assert sorted(count for _, count, _ in per_story) == [2] * ROUNDS
        assert all(originals == 1 for _, _, originals in per_story)  # one 首发 each
    finally:
        for ingest in ingests:
            ingest.shutdown()


WRITERS = 6
FULL_BATCHES = 3


def distinct_story(seed: int) -> str:
    """About 1,000 characters drawn from the common Han block: no two seeds share a shingle, so two
    writers' pages never share a dedup lock and none waits for another's."""
    rng = random.Random(seed)
    return "\n".join("".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(60)) + "。" for _ in range(16))


def _lock_table(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        writers, table, _ = writers_and_table(connection)
        return writers, table


def _settled_writers(engine: Engine, expected: int = 0) -> int:
    """Writers connected now, once the backends of writers just shut down have exited (a writer
    another test left open stays counted)."""
    deadline = time.monotonic() + 5
    writers = _lock_table(engine)[0]
    while writers > expected and time.monotonic() < deadline:
        time.sleep(0.05)
        writers = _lock_table(engine)[0]
    return writers


def _ingests(pg_url: str, n: int, first: int = 0) -> list[Ingest]:
    ingests = [Ingest.connect(pg_url, Vocabulary.empty()) for _ in range(n)]
    for k, ingest in enumerate(ingests, first):
        definition = {**SOURCE, "key": f"site-{k}", "url": f"https://site{k}.example.gov.cn/xxgk/"}
        ingest.open_source(1, SourceRef.from_definition(f"site-{k}", definition))
    return ingests


def _page(n: int, seed: int) -> ArticleItem:
    published = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
    return article_item(f"w{n}-{seed}", distinct_story(seed), published_at=published, source_key=f"site-{n}")


def test_writers_holding_full_batches_at_once_stay_within_the_servers_lock_table(pg_url: str) -> None:
    """Six writers, each with a full batch open at the same moment, three times: every page is stored,
    and the advisory locks held at those moments fit in the server's lock table.

    With batches of 64 pages (52 dedup locks each) they held about 20,000 advisory locks at once, more
    than a default server's lock table (64 × (100 + 0) = 6,400 entries, about 12,000 in practice):
    lock statements failed with "out of shared memory" and whole batches were rolled back."""
    watcher = make_engine(pg_url)
    before = _settled_writers(watcher)
    ingests = _ingests(pg_url, WRITERS)
    _, table = _lock_table(watcher)
    held: list[int] = []

    def count_held() -> None:  # runs once every writer waits at the barrier, its batch open
        with watcher.connect() as connection:
            held.append(int(connection.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")) or 0))

    full = threading.Barrier(WRITERS, action=count_held, timeout=120)
    outcomes: list[list[Outcome]] = [[] for _ in range(WRITERS)]
    batches: list[list[int]] = [[] for _ in range(WRITERS)]
    errors: list[BaseException] = []

    def write(n: int) -> None:
        ingest = ingests[n]
        seed = n * 1000
        try:
            for _ in range(FULL_BATCHES):
                group: list[tuple[int, Page | Prepared]] = []
                for _ in range(ingest.room):  # what the pipeline worker hands it: a batch's worth
                    seed += 1
                    group.append((1, _page(n, seed)))
                batches[n].append(len(group))
                for sid, page in ingest.prepare(group):
                    outcomes[n].append(ingest.handle(sid, page))
                full.wait()
                ingest.commit()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
            full.abort()

    try:
        threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        # The first batch before the writers counted each other, then each one's share of the table.
        share = pages_per_transaction(table, before + WRITERS, MAX_BATCH)
        assert batches == [[first_batch_pages(MAX_BATCH), share, share]] * WRITERS
        assert all(o == [Outcome.STORED] * len(o) for o in outcomes)
        assert len(held) == FULL_BATCHES
        assert all(WRITERS * share <= h <= table for h in held), (held, table)
        with session_factory(watcher)() as session:
            assert session.scalar(select(func.count(Article.id))) == sum(map(sum, batches))
    finally:
        for ingest in ingests:
            ingest.shutdown()
        watcher.dispose()


def test_a_writer_takes_its_share_of_the_lock_table_as_writers_come_and_go(pg_url: str) -> None:
    watcher = make_engine(pg_url)
    before = _settled_writers(watcher)
    writer = _ingests(pg_url, 1)[0]
    others: list[Ingest] = []
    seeds = iter(range(1, 100))

    def store_one() -> int:  # a page and a commit: the writer counts the others afterwards
        writer.handle(1, _page(0, next(seeds)))
        writer.commit()
        return writer.max_batch

    try:
        assert writer.max_batch == first_batch_pages(MAX_BATCH) == FIRST_BATCH_KEYS // KEYS_PER_PAGE
        alone = store_one()
        writers, table = _lock_table(watcher)
        assert writers == before + 1  # the watcher's connections are not a writer's
        assert alone == pages_per_transaction(table, writers, MAX_BATCH)
        if not before and table * WRITERS_SHARE >= MAX_BATCH * KEYS_PER_PAGE:  # default: 4,800 of 6,400
            assert alone == MAX_BATCH
        others = _ingests(pg_url, 5, first=1)
        crowded = store_one()
        assert _lock_table(watcher)[0] == before + 6
        assert crowded == pages_per_transaction(table, before + 6, MAX_BATCH) < alone
        for other in others:
            other.shutdown()
        others = []
        assert _settled_writers(watcher, before + 1) == before + 1
        assert store_one() == alone
    finally:
        for other in others:
            other.shutdown()
        writer.shutdown()
        watcher.dispose()


def test_a_name_the_database_url_gives_is_kept_and_that_writer_counts_itself(pg_url: str) -> None:
    watcher = make_engine(pg_url)
    before = _settled_writers(watcher)
    name = f"zl_named_{random.randrange(10**9)}"
    url = f"{pg_url}&application_name={name}" if "?" in pg_url else f"{pg_url}?application_name={name}"
    writer = Ingest.connect(url, Vocabulary.empty())
    definition = {**SOURCE, "key": "site-0", "url": "https://site0.example.gov.cn/xxgk/"}
    writer.open_source(1, SourceRef.from_definition("site-0", definition))
    try:
        writer.handle(1, _page(0, 1))
        writer.commit()
        with watcher.connect() as connection:
            names = connection.scalars(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"), {"n": name}
            ).one()
        writers, table = _lock_table(watcher)
        assert names >= 1  # the operator's name, not a writer's
        assert writers == before
        assert writer.max_batch == pages_per_transaction(table, before + 1, MAX_BATCH)
    finally:
        writer.shutdown()
        watcher.dispose()


def test_a_batch_is_sized_to_its_share_of_the_lock_table() -> None:
    default = 64 * (100 + 0)  # max_locks_per_transaction × (max_connections + max_prepared_transactions)
    assert pages_per_transaction(default, 1, 64) == 64
    assert pages_per_transaction(default, 6, 64) == 15  # 800 keys each: 4,800 of the 6,400 in all
    assert pages_per_transaction(default, 100, 64) == 1  # never none: a crowd stores page by page
    assert pages_per_transaction(256 * 100, 20, 64) == 18
    for writers in (1, 2, 3, 6, 12, 24):
        pages = pages_per_transaction(default, writers, 64)
        assert pages == 64 or writers * pages * KEYS_PER_PAGE <= default * WRITERS_SHARE
    assert first_batch_pages(64) * KEYS_PER_PAGE * 6 <= default  # six writers starting at once fit
