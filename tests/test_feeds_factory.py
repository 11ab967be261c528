"""Row factory shared by the feeds and digest tests, plus its own sanity test.

All Chinese text here is written for these tests in the column's style; the people are invented.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pipeline.corpus.models import (
    Appearance,
    Article,
    ArticleTag,
    CrawlRun,
    Recipient,
    Source,
    SourceRun,
    Tag,
    Unit,
)
from zhuanlan_config import Config, parse_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

SHANGHAI = ZoneInfo("Asia/Shanghai")
COLUMN = "学习贯彻党的二十届四中全会精神"
BASE_URL = "https://zl.example.org"

PARAGRAPHS = (
    "党的二十届四中全会为今后一个时期的发展指明了前进方向。我们要把学习贯彻全会精神作为当前和今后一个时期的首要政治任务，"
    "坚持学思用贯通、知信行统一，切实把思想和行动统一到党中央决策部署上来。",
    "一是强化理论武装，通过党组理论学习中心组专题学习、支部主题党日等形式，引导党员干部深刻领会全会精神实质。",
    "二是坚持问题导向，聚焦群众急难愁盼，推动各项工作提质增效，以实干实绩检验学习成效。",
)


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "public_dir": str(tmp_path / "public"),
        "web": {"base_url": BASE_URL},
        "feeds": {"items_per_feed": 50, "title_prefix": "专栏"},
        "columns": [{"name": COLUMN}],
        "topics": [{"name": "科技创新", "keywords": ["科技"]}, {"name": "乡村振兴", "keywords": ["乡村"]}],
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data, base_dir=tmp_path)


def body_html(lead: str) -> str:
    return f"<p>{lead}</p>" + "".join(f"<p>{p}</p>" for p in PARAGRAPHS)


def body_text(lead: str) -> str:
    return "\n".join((lead, *PARAGRAPHS))


class Factory:
    """Inserts rows directly with the models; every helper flushes so ids are known."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.s = session
        self.now = now
        self.seq = itertools.count(1)

    def unit(self, name: str, sort_order: int = 0) -> Unit:
        unit = Unit(name=name, sort_order=sort_order, aliases=[])
        self.s.add(unit)
        self.s.flush()
        return unit

    def source(self, key: str, unit: Unit | None = None, kind: str = "wechat_album") -> Source:
        source = Source(
            key=key, kind=kind, url=f"https://{key}.example.org/list", unit_id=unit.id if unit else None, options={}
        )
        self.s.add(source)
        self.s.flush()
        return source

    def tag(self, kind: str, name: str) -> Tag:
        tag = self.s.query(Tag).filter_by(kind=kind, name=name).one_or_none()
        if tag is None:
            tag = Tag(kind=kind, name=name)
            self.s.add(tag)
            self.s.flush()
        return tag

    def article(
        self,
        title: str,
        unit: Unit | None,
        source: Source,
        published: datetime,
        *,
        author: str | None = "王立新",
        positions: tuple[str, ...] = ("党组书记", "局长"),
        column: str | None = COLUMN,
        lead: str | None = None,
        html: str | None = None,
        topics: tuple[str, ...] = (),
    ) -> Article:
        n = next(self.seq)
        lead = lead or f"{title}。"
        text = body_text(lead)
        article = Article(
            guid=hashlib.sha256(f"story-{n}-{title}".encode()).hexdigest()[:32],
            title=title,
            author=author,
            positions=list(positions),
            unit_id=unit.id if unit else None,
            column=column,
            published_at=published,
            body_html=html if html is not None else body_html(lead),
            body_text=text,
            content_hash=hashlib.sha256(text.encode()).hexdigest(),
            state="live",
            created_at=self.now,
            updated_at=self.now,
        )
        self.s.add(article)
        self.s.flush()
        first = self.appearance(article, source, f"https://mp.example.org/s/{article.guid}", published, original=True)
        article.first_appearance_id = first.id
        for topic in topics:
            self.s.add(ArticleTag(article_id=article.id, tag_id=self.tag("topic", topic).id, origin="rule"))
        self.s.flush()
        return article

    def appearance(
        self, article: Article, source: Source, url: str, published: datetime, *, original: bool = False
    ) -> Appearance:
        app = Appearance(
            article_id=article.id,
            source_id=source.id,
            canonical_key=url,
            url=url,
            title=article.title,
            published_at=published,
            fetched_at=self.now,
            content_hash=article.content_hash,
            is_original=original,
            meta={},
        )
        self.s.add(app)
        self.s.flush()
        return app

    def recipient(
        self, unit: Unit, name: str, email: str, *, active: bool = True, opted_out_at: datetime | None = None
    ) -> Recipient:
        r = Recipient(
            unit_id=unit.id,
            name=name,
            email=email,
            active=active,
            opted_out_at=opted_out_at,
            unsubscribe_token=hashlib.sha256(email.encode()).hexdigest()[:24],
        )
        self.s.add(r)
        self.s.flush()
        return r

    def source_run(self, source: Source, started: datetime, status: str, error: str | None = None) -> SourceRun:
        run = CrawlRun(started_at=started, finished_at=started + timedelta(minutes=5), status="partial", summary={})
        self.s.add(run)
        self.s.flush()
        sr = SourceRun(
            crawl_run_id=run.id,
            source_id=source.id,
            started_at=started,
            finished_at=started + timedelta(minutes=5),
            status=status,
            problems=[],
            error_summary=error,
        )
        self.s.add(sr)
        self.s.flush()
        return sr


def test_factory_builds_a_story_with_its_first_appearance(sessions: Any, now: datetime) -> None:
    with sessions() as session:
        f = Factory(session, now)
        unit = f.unit("市科学技术局")
        article = f.article("以科技创新引领高质量发展", unit, f.source("kjj", unit), now - timedelta(days=1))
        session.commit()
        assert article.first_appearance_id == article.appearances[0].id
        assert article.published_at is not None and article.published_at.tzinfo is not None
