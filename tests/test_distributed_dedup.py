"""Deduplication with concurrent writers (issue 20, point 2): two ingests on two connections store
near-duplicates (or exact copies) of a story at the same moment, many times over, against
PostgreSQL; every round ends with one story holding both appearances."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Integer, func, select

from crawler.items import ArticleItem
from pipeline.corpus.db import make_engine, session_factory, upgrade
from pipeline.corpus.models import Appearance, Article
from pipeline.ingest import Ingest
from pipeline.record import Outcome, SourceRef
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
