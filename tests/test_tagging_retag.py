"""apply_tags and retag_corpus on a migrated database (SQLite, or PostgreSQL via the conftest)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from pipeline.corpus.models import Appearance, Article, ArticleTag, Source, Tag, Unit
from pipeline.corpus.retag import retag_corpus
from pipeline.corpus.tagstore import apply_tags
from pipeline.record import Tags
from pipeline.tagging.rules import Vocabulary
from zhuanlan_config import ColumnConf, TopicConf, UnitConf

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

# unit name, author, positions, column, sorted (kind, name, origin) of its tags
State = tuple[str | None, str | None, list[str], str | None, tuple[tuple[str, str, str], ...]]

COLUMN = "学习贯彻党的二十届四中全会精神"
UNITS = (
    UnitConf("张掖市科学技术局", None, ("市科学技术局",)),
    UnitConf("张掖市财政局", None, ("市财政局",)),
    UnitConf("张掖市教育局", None, ("市教育局",)),
)
VOCAB_1 = Vocabulary(
    units=UNITS,
    topics=(
        TopicConf("科技创新", {"科技创新": 1.0, "成果转化": 2.0}, min_score=2.0),
        TopicConf("作风建设", {"作风": 1.0}, min_score=1.0),
    ),
    columns=(ColumnConf(COLUMN, ("四中全会",)),),
)
# The office renamed a topic, dropped one and added one; the 财政局 left the config.
VOCAB_2 = Vocabulary(
    units=(UNITS[0], UNITS[2]),
    topics=(
        TopicConf("创新驱动", {"科技创新": 1.0, "成果转化": 2.0}, min_score=2.0),
        TopicConf("预算管理", {"预算": 1.0}, min_score=1.0),
    ),
    columns=(ColumnConf(COLUMN, ("四中全会",)),),
)
VOCAB_3 = Vocabulary(units=UNITS, topics=(TopicConf("全会精神", {"全会": 1.0}, min_score=1.0),))

ARTICLES = [
    # (title, body, meta of its appearance, source key)
    (
        "以四中全会精神引领科技创新",
        "市科学技术局党组书记、局长 叶其炎\n全会对科技创新作出部署。我们将打通成果转化堵点，锤炼务实作风。",
        {},
        "kjj",
    ),
    (
        "财政局党组理论学习中心组专题学习全会精神",
        "会议强调，要把全会精神落实到预算编制和执行全过程，坚持过紧日子，改进工作作风。",
        {"source_label": "市财政局"},
        "wx",
    ),
    (
        "教育局召开专题会议",
        "会议传达学习全会精神，研究部署全市教育系统学习宣传工作，推进教育科技创新。",
        {"source_label": "张掖日报"},
        "jyj",
    ),
    (
        "市教育局党员干部谈学习体会",
        "文/市教育局 张晓燕\n全会精神催人奋进。我们将立足岗位，把学习成果转化为立德树人的实际行动。",
        {},
        "wx",
    ),
    (
        "财政系统学习四中全会精神",
        "全市财政系统认真学习全会精神，聚焦预算绩效管理，推动财政科技创新。",
        {"source_label": "张掖市财政局"},
        "wx",
    ),
]


def _seed(sessions: sessionmaker[Session], now: datetime) -> list[int]:
    with sessions() as session, session.begin():
        units = {u.name: Unit(name=u.name, aliases=list(u.aliases)) for u in UNITS}
        session.add_all(units.values())
        sources = {
            "kjj": Source(key="kjj", kind="site_column", url="https://kjj.example.cn/", unit=units["张掖市科学技术局"]),
            "jyj": Source(key="jyj", kind="site_column", url="https://jyj.example.cn/", unit=units["张掖市教育局"]),
            "wx": Source(key="wx", kind="wechat_album", url="https://mp.example.cn/album", column=COLUMN),
        }
        session.add_all(sources.values())
        session.flush()
        ids = []
        for n, (title, body, meta, source) in enumerate(ARTICLES):
            article = Article(
                guid=f"g{n}", title=title, body_text=body, content_hash=f"{n:064d}", created_at=now, updated_at=now
            )
            session.add(article)
            session.flush()
            appearance = Appearance(
                article_id=article.id,
                source_id=sources[source].id,
                canonical_key=f"https://example.cn/{n}",
                url=f"https://example.cn/{n}",
                fetched_at=now,
                content_hash=article.content_hash,
                meta=meta,
            )
            session.add(appearance)
            session.flush()
            article.first_appearance_id = appearance.id
            ids.append(article.id)
        return ids


def _snapshot(sessions: sessionmaker[Session]) -> dict[int, State]:
    """Per article: unit name, author, positions, column, sorted (kind, name, origin)."""
    with sessions() as session:
        result: dict[int, State] = {}
        for article in session.scalars(select(Article).order_by(Article.id)):
            rows = tuple(sorted((t.tag.kind, t.tag.name, t.origin) for t in article.tags))
            unit = article.unit.name if article.unit else None
            result[article.id] = (unit, article.author, article.positions, article.column, rows)
        return result


def _topics(state: State) -> set[str]:
    return {name for kind, name, _ in state[4] if kind == "topic"}


def _add_manual(sessions: sessionmaker[Session], article_id: int, kind: str, name: str) -> None:
    with sessions() as session, session.begin():
        tag = session.scalar(select(Tag).where(Tag.kind == kind, Tag.name == name))
        if tag is None:
            tag = Tag(kind=kind, name=name)
            session.add(tag)
            session.flush()
        session.add(ArticleTag(article_id=article_id, tag_id=tag.id, origin="manual", weight=1.0))


def test_retag_corpus_end_to_end(sessions: sessionmaker[Session], now: datetime) -> None:
    ids = _seed(sessions, now)
    seen: list[tuple[int, int]] = []
    result = retag_corpus(sessions, VOCAB_1, batch_size=2, progress=lambda d, t: seen.append((d, t)), now=now)
    assert (result.articles, result.batches, result.changed) == (5, 3, 5)
    assert seen == [(2, 5), (4, 5), (5, 5)]
    state = _snapshot(sessions)
    kjj, fin, edu, edu2, fin2 = (state[i] for i in ids)
    # byline > 来源 > owning unit
    # a unit site's page whose title names the column is a candidate, not a column article
    assert kjj[:4] == ("张掖市科学技术局", "叶其炎", ["党组书记", "局长"], None)
    with sessions() as session:
        first = session.get(Article, ids[0])
        assert first is not None and (first.column_candidate, first.column_reason) == (COLUMN, "title")
    assert fin[:4] == ("张掖市财政局", None, [], COLUMN)  # 来源 alias; album column
    assert edu[:4] == ("张掖市教育局", None, [], None)  # newspaper 来源 ignored: owning unit
    assert edu2[:4] == ("张掖市教育局", "张晓燕", [], COLUMN)
    assert fin2[0] == "张掖市财政局"
    assert _topics(kjj) == {"科技创新", "作风建设"}
    assert any(kind == "keyword" and origin == "keyword" for kind, _, origin in kjj[4])
    assert ("position", "局长", "rule") in kjj[4]

    # manual tags: one the rules never produce, one the rules would also produce
    _add_manual(sessions, ids[0], "topic", "创新驱动")
    _add_manual(sessions, ids[1], "topic", "精品推荐")

    later = now + timedelta(days=1)
    result = retag_corpus(sessions, VOCAB_2, batch_size=2, now=later)
    assert result.changed > 0
    state = _snapshot(sessions)
    kjj, fin = state[ids[0]], state[ids[1]]
    assert _topics(kjj) == {"创新驱动"}
    assert ("topic", "创新驱动", "manual") in kjj[4]
    assert ("topic", "创新驱动", "rule") not in kjj[4]
    assert ("topic", "精品推荐", "manual") in fin[4]
    assert _topics(fin) == {"预算管理", "精品推荐"}
    assert fin[0] is None and state[ids[4]][0] is None  # the unit left the config; the album has none
    assert state[ids[2]][0] == "张掖市教育局"
    with sessions() as session:
        article = session.get(Article, ids[0])
        assert article is not None and article.updated_at == later

    # a rerun with the same vocabulary changes nothing
    again = retag_corpus(sessions, VOCAB_2, batch_size=2, now=later + timedelta(hours=1))
    assert (again.articles, again.changed) == (5, 0)
    assert _snapshot(sessions) == state
    with sessions() as session:
        article = session.get(Article, ids[0])
        assert article is not None and article.updated_at == later


def test_retag_interrupted_then_rerun_completes(sessions: sessionmaker[Session], now: datetime) -> None:
    ids = _seed(sessions, now)
    retag_corpus(sessions, VOCAB_1, batch_size=2, now=now)
    _add_manual(sessions, ids[3], "topic", "精品推荐")

    def stop_after_first_batch(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        retag_corpus(sessions, VOCAB_3, batch_size=2, progress=stop_after_first_batch, now=now)
    state = _snapshot(sessions)
    assert [_topics(state[i]) for i in ids[:2]] == [{"全会精神"}, {"全会精神"}]  # batch 1 committed
    assert "全会精神" not in _topics(state[ids[2]])  # batch 2 never ran

    rerun = retag_corpus(sessions, VOCAB_3, batch_size=2, now=now)
    assert rerun.articles == 5 and 0 < rerun.changed <= 3
    state = _snapshot(sessions)
    assert all("全会精神" in _topics(state[i]) for i in ids)
    assert "精品推荐" in _topics(state[ids[3]])
    assert retag_corpus(sessions, VOCAB_3, batch_size=2, now=now).changed == 0
    # resuming from a known point does only the rest
    tail = retag_corpus(sessions, VOCAB_3, batch_size=2, now=now, after_id=ids[2])
    assert (tail.articles, tail.changed) == (2, 0)


def test_apply_tags_writes_fields_and_rows_once(sessions: sessionmaker[Session], now: datetime) -> None:
    tags = Tags(
        unit="张掖市审计局",  # configured but not yet in the units table: a bare row is made
        author="王立新",
        positions=["党组书记", "局长"],
        column=COLUMN,
        topics={"科技创新": 4.0},
        keywords=["审计", "预算", "审计"],
    )
    with sessions() as session, session.begin():
        article = Article(guid="a", title="t", body_text="b", content_hash="0" * 64, created_at=now, updated_at=now)
        session.add(article)
        session.flush()
        assert apply_tags(session, article, tags, now=now) is True
        article_id = article.id
    with sessions() as session, session.begin():
        stored = session.get(Article, article_id)
        assert stored is not None
        article = stored
        assert apply_tags(session, article, tags, now=now) is False
        rows = {(t.tag.kind, t.tag.name): (t.origin, t.weight) for t in article.tags}
        assert rows == {
            ("topic", "科技创新"): ("rule", 4.0),
            ("column", COLUMN): ("rule", 1.0),
            ("position", "党组书记"): ("rule", 1.0),
            ("position", "局长"): ("rule", 1.0),
            ("keyword", "审计"): ("keyword", 1.0),
            ("keyword", "预算"): ("keyword", round(2 / 3, 6)),
        }
        assert article.unit is not None and article.unit.name == "张掖市审计局"
        assert (article.author, article.positions, article.column) == ("王立新", ["党组书记", "局长"], COLUMN)
        # clearing the tags removes the machine rows and the fields
        assert apply_tags(session, article, Tags(), now=now) is True
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ArticleTag)) == 0
        assert session.scalar(select(func.count()).select_from(Tag)) == 6  # tags stay for reuse
