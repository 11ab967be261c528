"""A small invented corpus for the archive tests (search, exports, web), plus its sanity test.

All text is written for these tests in the style of the column; the names are invented.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pipeline.corpus.models import Appearance, Article, ArticleTag, Snapshot, Source, Tag, Unit
from pipeline.corpus.search_index import index_article, indexed_count

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Doc:
    key: str
    unit: str
    author: str
    positions: tuple[str, ...]
    title: str
    body: str
    published: datetime
    state: str = "live"
    topics: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    column: str = "学习贯彻党的二十届四中全会精神"
    encoding: str = "utf-8"


DOCS = (
    Doc(
        key="edu",
        unit="市教育局",
        author="陈思远",
        positions=("党组书记", "局长"),
        title="以全会精神为指引 推动教育事业高质量发展",
        body=(
            "党的二十届四中全会对建设教育强国作出重要部署。我们要把学习贯彻全会精神同推进党建工作结合起来，"
            "以高质量党建引领教育事业发展。一是坚持立德树人，深化思政课程改革。二是推动人工智能赋能课堂教学，"
            "建设智慧校园。三是加强教师队伍建设，涵养师德师风。"
        ),
        published=datetime(2026, 11, 24, 9, 30, tzinfo=SHANGHAI),
        topics=("教育强国", "党的建设"),
        keywords=("教育", "党建工作"),
    ),
    Doc(
        key="party",
        unit="市直机关工委",
        author="周卫东",
        positions=("副书记",),
        title="党建引领 凝聚奋进力量",
        body=(
            "全会精神为机关工作指明了方向。各级党组织要发挥战斗堡垒作用，把学习成果转化为推动发展的实际成效，"
            "切实做到学思用贯通、知信行统一。"
        ),
        published=datetime(2026, 11, 20, 23, 30, tzinfo=SHANGHAI),  # late evening: tests the date filter in Shanghai
        topics=("党的建设",),
        keywords=("党组织",),
    ),
    Doc(
        key="fin",
        unit="市财政局",
        author="林秀英",
        positions=("党组成员", "副局长"),
        title="坚持人民至上 提升财政保障能力",
        body=(
            "我们将认真落实全会关于健全预算制度的要求，优化财政支出结构，兜牢基层三保底线，"
            "把更多财力用于保障和改善民生，做好粮食安全和乡村振兴资金保障。"
        ),
        published=datetime(2026, 11, 18, 15, 0, tzinfo=SHANGHAI),
        state="deleted",
        topics=("民生保障",),
        keywords=("财政",),
        encoding="gbk",
    ),
    Doc(
        key="sci",
        unit="市科学技术局",
        author="马志强",
        positions=("党组书记", "局长"),
        title="聚力科技创新 培育新质生产力",
        body=(
            "全会提出加快高水平科技自立自强。我们将实施AI赋能产业行动，推动2026年科技成果转化项目落地，"
            "完善科技计划体系，支持企业建设研发平台，促进创新链产业链深度融合。"
        ),
        published=datetime(2026, 11, 10, 10, 0, tzinfo=SHANGHAI),
        topics=("科技创新",),
        keywords=("新质生产力", "AI"),
    ),
    Doc(
        key="notice",
        unit="市直机关工委",
        author="周卫东",
        positions=("副书记",),
        title="关于征集学习心得体会的通知",
        body="请各单位围绕全会精神报送学习心得体会，字数控制在两千字以内，按时报送。<script>alert(1)</script>",
        published=datetime(2026, 11, 3, 8, 0, tzinfo=SHANGHAI),
        column="工作通知",
        keywords=("通知",),
    ),
)

UNITS: tuple[tuple[str, str, list[str]], ...] = (
    ("市教育局", "教育局", ["市教育局", "张掖市教育局"]),
    ("市直机关工委", "机关工委", []),
    ("市财政局", "财政局", []),
    ("市科学技术局", "科技局", ["市科技局"]),
    ("市水务局", "水务局", []),
)


def snapshot_bytes(doc: Doc, url: str) -> bytes:
    page = (
        f"<!-- {url} -->"
        f'<!DOCTYPE html><html><head><meta charset="{doc.encoding}"><title>{doc.title}</title>'
        f"<script>document.title='x'</script></head>"
        f"<body><h1>{doc.title}</h1><p>{doc.unit}{'、'.join(doc.positions)} {doc.author}</p><p>{doc.body}</p></body></html>"
    )
    return page.encode(doc.encoding)


def build_corpus(session: Session, now: datetime) -> dict[str, Article]:
    """Insert units, two sources, the DOCS (each with appearances, snapshots and tags) and index them."""
    units = {}
    for i, (name, short, aliases) in enumerate(UNITS):
        units[name] = Unit(name=name, short_name=short, aliases=aliases, sort_order=i)
        session.add(units[name])
    wechat = Source(key="jiguan-wx", kind="wechat_album", url="https://mp.weixin.qq.com/mp/appmsgalbum?x=1")
    site = Source(key="edu-site", kind="site_column", url="https://jyj.example.gov.cn/xxgk/", unit=units["市教育局"])
    session.add_all([wechat, site])
    session.flush()
    tags: dict[tuple[str, str], Tag] = {}
    articles: dict[str, Article] = {}
    for n, doc in enumerate(DOCS):
        body_html = "".join(f"<p>{part}</p>" for part in doc.body.split("。") if part)
        body_html += '<p><img src="https://mmbiz.qpic.cn/mmbiz_jpg/abc/640"></p>'
        article = Article(
            guid=f"guid-{doc.key}",
            title=doc.title,
            author=doc.author,
            positions=list(doc.positions),
            unit=units[doc.unit],
            column=doc.column,
            published_at=doc.published,
            body_html=body_html,
            body_text=doc.body,
            content_hash=hashlib.sha256(doc.body.encode()).hexdigest(),
            state=doc.state,
            created_at=now,
            updated_at=now,
        )
        session.add(article)
        session.flush()
        places = [(wechat, f"https://mp.weixin.qq.com/s?__biz=MzA{n}&mid=1000{n}&idx=1", True)]
        if doc.key == "edu":
            places.append((site, "https://jyj.example.gov.cn/xxgk/202611/t20261124_1.html", False))
        for i, (source, url, original) in enumerate(places):
            raw = snapshot_bytes(doc, url)
            fetched = doc.published + timedelta(hours=1 + i)
            appearance = Appearance(
                article_id=article.id,
                source_id=source.id,
                canonical_key=f"k:{url}",
                url=url,
                title=doc.title,
                published_at=doc.published,
                fetched_at=fetched,
                http_status=200,
                content_hash=article.content_hash,
                is_original=original,
            )
            session.add(appearance)
            session.flush()
            snapshot = Snapshot(
                appearance_id=appearance.id,
                sha256=hashlib.sha256(raw).hexdigest(),
                url=url,
                fetched_at=fetched,
                http_status=200,
                headers={"Content-Type": f"text/html; charset={doc.encoding}", "Content-Encoding": "gzip"},
                encoding=doc.encoding,
                content=zlib.compress(raw),
                size=len(raw),
            )
            session.add(snapshot)
            session.flush()
            appearance.snapshot_id = snapshot.id
            if i == 0:
                article.first_appearance_id = appearance.id
        for kind, names in (("topic", doc.topics), ("keyword", doc.keywords)):
            for name in names:
                if (kind, name) not in tags:
                    tags[(kind, name)] = Tag(kind=kind, name=name)
                    session.add(tags[(kind, name)])
                    session.flush()
                session.add(ArticleTag(article_id=article.id, tag_id=tags[(kind, name)].id))
        index_article(session, article.id, article.title, article.body_text)
        articles[doc.key] = article
    session.flush()
    return articles


def test_corpus_is_indexed(sessions: sessionmaker[Session], now: datetime) -> None:
    with sessions() as session, session.begin():
        articles = build_corpus(session, now)
        assert indexed_count(session) == len(articles) == len(DOCS)
