"""Attribution in the corpus: provenance and authors stored, column membership from any appearance,
and the operator's corrections recorded, kept by retag and by a re-crawl of the story."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crawler.items import ArticleItem
from pipeline.corpus.corrections import Change, CorrectionError, correct_story, history, parse_author
from pipeline.corpus.models import Article, ArticleTag, Correction, Unit
from pipeline.corpus.retag import retag_corpus
from pipeline.record import Author
from pipeline.tagging.rules import Vocabulary
from tests.test_pipeline_support import Crawl, article_item
from zhuanlan_config import ColumnConf, UnitConf

COLUMN = "学习贯彻党的二十届四中全会精神"
OWNER = "中共临溪市直机关工作委员会"
VOCAB = Vocabulary(
    units=(
        UnitConf(OWNER, "市直机关工委", ("市直机关工委",)),
        UnitConf("临溪市财政局", "财政局", ("市财政局", "财政局")),
        UnitConf("临溪市教育局", "教育局", ("市教育局",)),
    ),
    columns=(ColumnConf(COLUMN, ("四中全会",)),),
)
PARAGRAPHS = (
    "全会擘画了今后五年发展的宏伟蓝图，我们把学习贯彻全会精神作为首要政治任务，组织党员干部逐章逐节研读。",
    "一是抓实理论武装，党组理论学习中心组开展专题研讨三次，青年理论学习小组开展读书分享活动。",
    "二是抓实成果转化，围绕预算绩效管理、过紧日子要求和财会监督列出十二项重点任务清单，逐项明确责任人。",
    "三是抓实作风建设，深化模范机关创建，推动全会精神在财政系统落地生根、开花结果。",
)
ALBUM = {"key": "gw-album", "kind": "wechat_album", "url": "https://mp.weixin.qq.com/mp/appmsgalbum?album_id=9",
         "unit": OWNER, "column": COLUMN, "options": {}}  # fmt: skip
SITE = {"key": "czj-site", "kind": "site_column", "url": "https://czj.example.gov.cn/xxgk/",
        "unit": "临溪市财政局", "column": None, "options": {"list_type": "html"}}  # fmt: skip


def _units(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        for order, unit in enumerate(VOCAB.units):
            s.add(Unit(name=unit.name, short_name=unit.short_name, aliases=list(unit.aliases), sort_order=order))


def _item(
    key: str,
    body: str,
    *,
    kind: str,
    now: datetime,
    column: str | None = None,
    author: str | None = None,
    title: str = "以全会精神为指引 推动财政工作高质量发展",
) -> ArticleItem:
    item = article_item(key, body, title=title, published_at=now - timedelta(days=2), fetched_at=now)
    item.author = author
    item.source_kind = kind
    item.source_key = ALBUM["key"] if kind == "wechat_album" else SITE["key"]
    item.column = column
    return item


def _store(sessions: sessionmaker[Session], now: datetime, item: ArticleItem) -> None:
    source = ALBUM if item.source_kind == "wechat_album" else SITE
    chain = Crawl(sessions, now, source=dict(source), vocab=VOCAB)
    chain.run(item)
    chain.close()


def _article(s: Session) -> Article:
    return s.scalars(select(Article)).one()


def test_unattributed_album_story_corrected_and_kept_by_retag_and_recrawl(
    sessions: sessionmaker[Session], now: datetime
) -> None:
    _units(sessions)
    body = "\n".join(PARAGRAPHS)
    _store(sessions, now, _item("a1", body, kind="wechat_album", now=now, column=COLUMN, author="临溪机关党建"))
    with sessions() as s:
        article = _article(s)
        # on the 工委's album nothing names a unit: unattributed, never the album owner's
        assert (article.unit_id, article.unit_from, article.authors) == (None, None, [])
        assert (article.column, article.column_reason) == (COLUMN, "album")
        guid = article.guid

    with sessions.begin() as s:
        rows = correct_story(
            s,
            guid,
            Change(unit="临溪市财政局", authors=(parse_author("顾清远：党组书记、局长"),)),
            actor="周敏",
            now=now,
            note="财政局报送的稿件",
        )
        assert [r.field for r in rows] == ["unit", "authors"]
    with sessions() as s:
        article = _article(s)
        assert article.unit is not None and article.unit.name == "临溪市财政局"
        assert (article.unit_from, article.author, article.positions) == ("manual", "顾清远", ["党组书记", "局长"])
        assert article.authors == [{"name": "顾清远", "positions": ["党组书记", "局长"]}]
        position_tags = {row.tag.name for row in article.tags if row.tag.kind == "position"}
        assert position_tags == {"党组书记", "局长"}
        changes = history(s, article.id)
        assert [(c.field, c.actor, c.note) for c in changes] == [
            ("unit", "周敏", "财政局报送的稿件"),
            ("authors", "周敏", "财政局报送的稿件"),
        ]
        assert changes[0].old_value == {"unit": None, "from": None}
        assert changes[0].new_value == {"unit": "临溪市财政局"}
        assert changes[1].old_value == {"authors": []} and changes[0].created_at == now

    # retag: the rules still read no unit, the correction stays in force
    result = retag_corpus(sessions, VOCAB, now=now + timedelta(hours=1))
    assert result.articles == 1
    with sessions() as s:
        article = _article(s)
        assert article.unit is not None and article.unit.name == "临溪市财政局"
        assert (article.unit_from, article.author) == ("manual", "顾清远")

    # a re-crawl finds the page edited at the source: the story is rewritten, the correction stays
    edited = body + "\n下一步，我们将把全会精神转化为推动财政工作高质量发展的实际成效。"
    _store(sessions, now, _item("a1", edited, kind="wechat_album", now=now, column=COLUMN, author="临溪机关党建"))
    with sessions() as s:
        article = _article(s)
        assert article.state == "edited"
        assert article.unit is not None and article.unit.name == "临溪市财政局"
        assert (article.unit_from, article.author, article.column) == ("manual", "顾清远", COLUMN)
        assert len(history(s, article.id)) == 2


def test_column_candidate_confirmed_then_rejected(sessions: sessionmaker[Session], now: datetime) -> None:
    _units(sessions)
    title = "市财政局召开党组理论学习中心组会议传达学习党的二十届四中全会精神"
    body = "市财政局党组书记、局长 顾清远\n" + "\n".join(PARAGRAPHS)
    _store(sessions, now, _item("n1", body, kind="site_column", now=now, title=title))
    with sessions() as s:
        article = _article(s)
        assert article.unit is not None and (article.unit.name, article.unit_from) == ("临溪市财政局", "byline")
        # routine news matching a title keyword: a candidate, not a column article
        assert (article.column, article.column_candidate, article.column_reason) == (None, COLUMN, "title")
        guid = article.guid
    with sessions.begin() as s:
        correct_story(s, guid, Change(in_column=True), actor="周敏", now=now)
    with sessions() as s:
        article = _article(s)
        assert (article.column, article.column_candidate, article.column_reason) == (COLUMN, None, "manual")
        assert any(row.tag.kind == "column" and row.tag.name == COLUMN for row in article.tags)
    retag_corpus(sessions, VOCAB, now=now)
    with sessions() as s:
        assert _article(s).column == COLUMN
    with sessions.begin() as s:
        correct_story(s, guid, Change(in_column=False), actor="李华", now=now + timedelta(minutes=5))
    with sessions() as s:
        article = _article(s)
        assert (article.column, article.column_candidate, article.column_reason) == (None, None, "manual")
        assert not any(row.tag.kind == "column" for row in article.tags)
        rows = history(s, article.id)
        assert [(r.old_value, r.new_value) for r in rows] == [
            ({"in": False, "name": COLUMN}, {"in": True, "name": COLUMN}),
            ({"in": True, "name": COLUMN}, {"in": False, "name": None}),
        ]


def test_the_album_copy_makes_a_site_story_a_column_member(sessions: sessionmaker[Session], now: datetime) -> None:
    _units(sessions)
    body = "市财政局党组书记、局长 顾清远\n" + "\n".join(PARAGRAPHS)
    _store(sessions, now, _item("s1", body, kind="site_column", now=now, title="以全会精神为指引 推动财政工作"))
    with sessions() as s:
        assert (_article(s).column, _article(s).column_candidate) == (None, None)
    album = _item("w1", body, kind="wechat_album", now=now, column=COLUMN, title="以全会精神为指引 推动财政工作")
    album.canonical_key = "wx:MzA:2247480001:1"
    album.url = "https://mp.weixin.qq.com/s?__biz=MzA&mid=2247480001&idx=1"
    _store(sessions, now, album)
    with sessions() as s:
        article = _article(s)
        assert len(article.appearances) == 2
        assert (article.column, article.column_reason) == (COLUMN, "album")
        assert article.unit is not None and article.unit.name == "临溪市财政局"
        assert article.author == "顾清远"
        assert s.scalars(select(ArticleTag).where(ArticleTag.article_id == article.id)).all()
    # retag computes the same from the stored appearances
    retag_corpus(sessions, VOCAB, now=now)
    with sessions() as s:
        article = _article(s)
        assert (article.column, article.column_reason, article.unit_from) == (COLUMN, "album", "byline")


def test_bad_corrections_are_refused_and_write_nothing(sessions: sessionmaker[Session], now: datetime) -> None:
    _units(sessions)
    _store(sessions, now, _item("b1", "\n".join(PARAGRAPHS), kind="wechat_album", now=now, column=COLUMN))
    with sessions() as s:
        guid = _article(s).guid
    with pytest.raises(CorrectionError, match="no configured unit"), sessions.begin() as s:
        correct_story(s, guid, Change(unit="临溪市不存在局"), actor="周敏", now=now)
    with pytest.raises(CorrectionError, match="no story"), sessions.begin() as s:
        correct_story(s, "nope", Change(unit="临溪市财政局"), actor="周敏", now=now)
    with pytest.raises(CorrectionError, match="who makes it"), sessions.begin() as s:
        correct_story(s, guid, Change(unit="临溪市财政局"), actor=" ", now=now)
    with sessions() as s:
        assert s.scalars(select(Correction)).all() == []
        assert _article(s).unit_id is None
    # asking for what is already there records nothing
    with sessions.begin() as s:
        assert correct_story(s, guid, Change(unattributed=True), actor="周敏", now=now)  # unit None → None: recorded
    with sessions.begin() as s:
        assert correct_story(s, guid, Change(unattributed=True), actor="周敏", now=now) == []


def test_parse_author() -> None:
    assert parse_author("叶其炎") == Author("叶其炎")
    assert parse_author("叶其炎：党组书记、局长") == Author("叶其炎", ("党组书记", "局长"))
    assert parse_author("叶其炎:党组书记,局长") == Author("叶其炎", ("党组书记", "局长"))
    with pytest.raises(CorrectionError):
        parse_author("：局长")
