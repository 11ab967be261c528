"""Tag rules: bylines, unit attribution, columns, topics, keywords, whole records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crawler.items import ArticleItem
from pipeline.record import Record, Tags
from pipeline.tagging.attribution import title_unit
from pipeline.tagging.rules import Vocabulary, compute_tags, merge_tags, score_topics, tag_record, top_keywords
from zhuanlan_config import ColumnConf, TopicConf, UnitConf

COLUMN = "学习贯彻党的二十届四中全会精神"

UNITS = (
    UnitConf("张掖市科学技术局", "市科技局", ("市科学技术局", "科技局")),
    UnitConf("张掖市财政局", None, ("市财政局",)),
    UnitConf("张掖市教育局", None, ("市教育局",)),
    UnitConf("张掖市民政局"),  # no alias: 「市民政局」 matches by its ending
    UnitConf("中共张掖市直属机关工作委员会", "市直机关工委", ("市直机关工委", "机关工委")),
    UnitConf("张掖市总工会", None, ("市总工会",)),
    UnitConf("张掖市人民政府办公室", None, ("市政府办公室", "市政府办")),
    UnitConf("共青团张掖市委员会", "团市委", ("团市委",)),
    UnitConf("中共张掖市委组织部", None, ("市委组织部",)),
    UnitConf("甘泉县科学技术局", None, ("甘泉县科技局",)),  # a county unit: more specific than 科技局
)
VOCAB = Vocabulary(
    units=UNITS,
    topics=(
        TopicConf("科技创新", {"科技创新": 1.0, "成果转化": 2.0}, min_score=3.0),
        TopicConf("作风建设", {"作风": 1.0, "八项规定": 2.0}, min_score=2.0),
        TopicConf("乡村振兴", {"乡村振兴": 1.0}, min_score=1.0),
    ),
    columns=(ColumnConf(COLUMN, title_keywords=("四中全会", "学习贯彻")),),
)

BODY = f"""{COLUMN}
编者按：为推动市直机关党员干部深入学习贯彻党的二十届四中全会精神，本公众号开设专栏，刊发各部门（单位）的学习体会。

凝心聚力 勇毅前行
奋力书写科技赋能高质量发展新答卷
市科学技术局党组书记、局长 叶其炎
全会为今后一个时期的科技工作指明了方向。我们将把学习成果转化为推动科技创新的具体举措，抓实成果转化这一关键环节。
一是强化企业创新主体地位，引导企业加大研发投入，培育一批科技型中小企业。
二是完善成果转化服务体系，办好科技成果对接活动，让更多实验室成果走上生产线。
三是锤炼过硬作风，严格落实中央八项规定精神，营造风清气正的科研环境。
"""


def _tags(body: str, *, kind: str = "wechat_album", owner: str | None = None, **fields: object) -> Tags:
    values: dict[str, object] = {"title": "学习心得", "body_text": body, "vocab": VOCAB}
    values.update(fields)
    return compute_tags(source_kind=kind, owning_unit=owner, **values)  # type: ignore[arg-type]


LEAD = "全会精神内涵丰富、意义重大，必须学深悟透、融会贯通，以实际行动推动全会精神在本部门落地见效、开花结果。"


@pytest.mark.parametrize(
    ("byline", "unit", "names", "positions"),
    [
        ("市科学技术局党组书记、局长 叶其炎", "张掖市科学技术局", ["叶其炎"], ["党组书记", "局长"]),
        ("市科学技术局党组书记、局长叶其炎", "张掖市科学技术局", ["叶其炎"], ["党组书记", "局长"]),
        ("市科学技术局副局长 马\u3000军", "张掖市科学技术局", ["马军"], ["副局长"]),
        ("——市民政局党组书记 赵文华", "张掖市民政局", ["赵文华"], ["党组书记"]),
        ("市教育局党组书记、局长 陈立平（执笔）", "张掖市教育局", ["陈立平"], ["党组书记", "局长"]),
        ("叶其炎（市科学技术局党组书记、局长）", "张掖市科学技术局", ["叶其炎"], ["党组书记", "局长"]),
        ("张掖市科学技术局（张掖市地震局）党组书记、局长 叶其炎", "张掖市科学技术局", ["叶其炎"], ["党组书记", "局长"]),
        ("市总工会党组书记、常务副主席 王红梅", "张掖市总工会", ["王红梅"], ["党组书记", "常务副主席"]),
        ("市政府办公室党组书记、主任 李国强", "张掖市人民政府办公室", ["李国强"], ["党组书记", "主任"]),
        ("团市委书记 张伟", "共青团张掖市委员会", ["张伟"], ["书记"]),
        ("市委常委、组织部部长 周晓明", "中共张掖市委组织部", ["周晓明"], ["市委常委", "组织部部长"]),
        (
            "市财政局党组书记、局长 王立新\u3000副局长 李敏",
            "张掖市财政局",
            ["王立新", "李敏"],
            ["党组书记", "局长", "副局长"],
        ),
        ("市教育局 刘文博 高远", "张掖市教育局", ["刘文博", "高远"], []),
        ("市科技局四级调研员 欧阳明华", "张掖市科学技术局", ["欧阳明华"], ["四级调研员"]),
        ("市教育局党组成员 阿依古丽·买买提", "张掖市教育局", ["阿依古丽·买买提"], ["党组成员"]),
        ("市直机关工委副书记 刘建国", "中共张掖市直属机关工作委员会", ["刘建国"], ["副书记"]),
        ("甘泉县科技局局长 马德明", "甘泉县科学技术局", ["马德明"], ["局长"]),
    ],
)
def test_bylines_on_top_name_the_unit_and_authors(
    byline: str, unit: str, names: list[str], positions: list[str]
) -> None:
    tags = _tags(f"{COLUMN}\n凝心聚力 勇毅前行\n{byline}\n{LEAD}\n编辑：李晓｜审核：许文杰")
    assert (tags.unit, tags.unit_from) == (unit, "byline")
    assert [a.name for a in tags.authors] == names
    assert tags.positions == positions
    assert tags.author == "、".join(names)


@pytest.mark.parametrize(
    "byline",
    ["甘州区科技局局长 王刚", "肃南县直机关工委书记 马林", "兰州市科学技术局局长 赵刚", "县农业农村局党组书记 马德明"],
)
def test_county_and_other_cities_units_never_match_the_citys_alias(byline: str) -> None:
    body = f"{byline}\n{LEAD}"
    album = _tags(body, owner="中共张掖市直属机关工作委员会")
    assert (album.unit, album.unit_from) == (None, None)
    # not even on the city unit's own site: the byline says the article is another unit's
    site = _tags(body, kind="site_column", owner="张掖市科学技术局")
    assert (site.unit, site.unit_from) == (None, None)
    assert site.authors and site.authors[0].name == byline.split()[-1]


def test_byline_only_at_the_end_and_author_unit_notes() -> None:
    tags = _tags(f"叶其炎\n{LEAD}\n（作者系市科学技术局党组书记、局长）")
    assert (tags.unit, tags.unit_from, tags.author, tags.positions) == (
        "张掖市科学技术局",
        "byline",
        "叶其炎",
        ["党组书记", "局长"],
    )
    tags = _tags(f"文/王立新\n{LEAD}\n（作者单位：张掖市财政局）")
    assert (tags.unit, tags.unit_from, tags.author) == ("张掖市财政局", "byline", "王立新")
    tags = _tags(f"{LEAD}\n——市民政局党组书记 赵文华")
    assert (tags.unit, tags.unit_from, tags.author) == ("张掖市民政局", "byline", "赵文华")


def test_source_lines_and_editing_tails() -> None:
    top = _tags(f"来源：市教育局\n{LEAD}\n编辑：李晓｜审核：许文杰")
    assert (top.unit, top.unit_from, top.authors) == ("张掖市教育局", "label", [])
    bottom = _tags(f"{LEAD}\n市民政局供稿\n初审：张敏　复审：李强　终审：王芳")
    assert (bottom.unit, bottom.unit_from, bottom.authors) == ("张掖市民政局", "label", [])
    credits = _tags(f"{LEAD}\n撰稿：刘洋\n文/陈静　图/高远\n来源：市教育局\n编辑：李晓")
    assert credits.author == "刘洋、陈静、高远"
    assert credits.unit == "张掖市教育局"


def test_reporters_are_authors_and_a_newspaper_is_no_unit() -> None:
    body = f"张掖日报记者 刘洋　通讯员 陈静\n{LEAD}"
    album = _tags(body, owner="中共张掖市直属机关工作委员会")
    assert (album.unit, album.author, album.positions) == (None, "刘洋、陈静", ["记者", "通讯员"])
    site = _tags(body, kind="site_column", owner="张掖市教育局")
    assert (site.unit, site.unit_from) == ("张掖市教育局", "source_owner")


def test_author_fields() -> None:
    # the WeChat author field holds the editor: never an author
    tags = _tags(f"{LEAD}\n编辑：李晓　审核：许文杰", author="李晓")
    assert tags.authors == []
    # ... and the author when nothing else names one
    assert _tags(LEAD, author="孙丽娟").author == "孙丽娟"
    # the author field names a unit
    tags = _tags(LEAD, author="市财政局")
    assert (tags.unit, tags.unit_from) == ("张掖市财政局", "author_field")
    # the account's name names nothing
    tags = _tags(LEAD, author="张掖机关党建", kind="site_column", owner="张掖市财政局")
    assert (tags.unit, tags.unit_from, tags.author) == ("张掖市财政局", "source_owner", None)


def test_order_of_trust_and_the_owner_only_on_unit_sites() -> None:
    body = f"市科学技术局党组书记、局长 叶其炎\n{LEAD}"
    # the byline beats the page's 来源 label and the author field
    tags = _tags(body, source_label="市财政局", author="市教育局", kind="site_column", owner="张掖市民政局")
    assert (tags.unit, tags.unit_from) == ("张掖市科学技术局", "byline")
    # the label beats the author field
    tags = _tags(LEAD, source_label="张掖市财政局", author="市教育局")
    assert (tags.unit, tags.unit_from) == ("张掖市财政局", "label")
    # a label naming the account or a newspaper is no unit
    assert _tags(LEAD, source_label="张掖日报", kind="site_column", owner="张掖市教育局").unit_from == "source_owner"
    # on the 工委's album nothing is credited to the album's owner
    tags = _tags(LEAD, owner="中共张掖市直属机关工作委员会")
    assert (tags.unit, tags.unit_from, tags.authors) == (None, None, [])


@pytest.mark.parametrize(
    ("title", "unit"),
    [
        # the lead-in, in its usual shapes
        ("市财政局：以全会精神引领财政工作提质增效", "张掖市财政局"),
        ("市财政局:以全会精神引领", "张掖市财政局"),
        ("【市教育局】办好人民满意的教育", "张掖市教育局"),
        ("［市教育局］办好人民满意的教育", "张掖市教育局"),
        ("学习贯彻党的二十届四中全会精神｜市民政局：兜牢民生底线", "张掖市民政局"),
        ("【学习贯彻党的二十届四中全会精神】团市委：青春建功新时代", "共青团张掖市委员会"),
        ("四中全会精神学习丨市总工会：凝聚职工力量", "张掖市总工会"),
        # the unit as the headline's subject, with its Party prefix or our city's name
        ("市科学技术局召开党组理论学习中心组学习会", "张掖市科学技术局"),
        ("中共张掖市委组织部召开部务会传达学习全会精神", "中共张掖市委组织部"),
        ("张掖市财政局机关党委开展主题党日活动", "张掖市财政局"),
        ("市财政局党组书记、局长王立新：以全会精神引领财政改革", "张掖市财政局"),
        ("甘泉县科技局召开专题学习会", "甘泉县科学技术局"),  # the most specific name
        # not read: a unit further in, or behind another place's name
        ("市委常委到市财政局调研", None),
        ("市教育局与市财政局联合开展专题调研", "张掖市教育局"),  # the subject, not the partner
        ("甘州区科技局召开专题学习会", None),
        ("肃南县直机关工委召开专题学习会", None),
        ("兰州市财政局召开专题学习会", None),
        ("市科技馆开展科普活动", None),
        ("全会精神应知应会学习问答", None),
        # a bare unit name after the last separator is a signature or a site's name
        ("以科技创新引领新质生产力发展｜张掖市科学技术局", None),
        ("以科技创新引领新质生产力发展｜市科技局召开推进会", "张掖市科学技术局"),
    ],
)
def test_the_unit_a_headline_names(title: str, unit: str | None) -> None:
    assert title_unit(title, VOCAB) == unit


def test_the_headline_ranks_after_labels_and_before_the_author_field_and_the_owner() -> None:
    title = "市财政局：以全会精神引领财政工作提质增效"
    # nothing else on the page: the headline names the unit, also on the 工委's album
    tags = _tags(LEAD, title=title, owner="中共张掖市直属机关工作委员会")
    assert (tags.unit, tags.unit_from, tags.authors) == ("张掖市财政局", "title", [])
    # it beats the author field and a portal's owner
    tags = _tags(LEAD, title=title, author="市教育局", kind="site_column", owner="张掖市人民政府办公室")
    assert (tags.unit, tags.unit_from) == ("张掖市财政局", "title")
    # the byline and a 来源 label beat it
    assert _tags(f"市科学技术局党组书记、局长 叶其炎\n{LEAD}", title=title).unit_from == "byline"
    assert _tags(LEAD, title=title, source_label="市教育局").unit == "张掖市教育局"
    # a byline of an unconfigured county unit names no unit of ours: as a 来源 label would, a headline
    # naming one of ours still reads, while the site's owner does not stand in without it
    county = f"甘州区科技局局长 武振华\n{LEAD}"
    titled = _tags(county, title="市科技局：推动科技创新", kind="site_column", owner="张掖市科学技术局")
    assert (titled.unit, titled.unit_from) == ("张掖市科学技术局", "title")
    untitled = _tags(county, title="推动科技创新", kind="site_column", owner="张掖市科学技术局")
    assert (untitled.unit, untitled.unit_from) == (None, None)


def test_column_membership_and_candidates() -> None:
    member = _tags(LEAD, item_column=COLUMN)
    assert (member.column, member.column_candidate, member.column_reason) == (COLUMN, None, "album")
    listed = _tags(LEAD, item_column="理论学习", kind="site_column")
    assert (listed.column, listed.column_reason) == ("理论学习", "list")
    # a title keyword only proposes: the routine news of a unit site is no column article by itself
    title = "市科技局召开党组理论学习中心组（扩大）会议传达学习党的二十届四中全会精神"
    news = _tags("会议传达学习了全会精神。", title=title, kind="site_column")
    assert (news.column, news.column_candidate, news.column_reason) == (None, COLUMN, "title")
    # a source's title filter too
    filtered = _tags(LEAD, item_column=COLUMN, kind="site_column", by_title_rule=True)
    assert (filtered.column, filtered.column_candidate) == (None, COLUMN)
    banner = _tags(f"{COLUMN}\n{LEAD}", title="凝心聚力 勇毅前行")
    assert (banner.column, banner.column_candidate, banner.column_reason) == (None, COLUMN, "banner")
    assert _tags("会议研究了预算执行情况。", title="市财政局召开季度工作会").column_candidate is None


def test_merge_tags_adds_membership_and_a_missing_unit() -> None:
    site = _tags(LEAD, kind="site_column", owner="张掖市教育局", title="深入学习贯彻四中全会精神")
    album = _tags(LEAD, item_column=COLUMN)
    merged = merge_tags(site, album)
    assert (merged.unit, merged.column, merged.column_candidate, merged.column_reason) == (
        "张掖市教育局",
        COLUMN,
        None,
        "album",
    )
    assert merge_tags(album, site).unit == "张掖市教育局"
    assert merge_tags(album, site).unit_from == "source_owner"


def test_score_topics_weights_title_hits_and_thresholds() -> None:
    scores = score_topics("推动科技创新", BODY, VOCAB)
    # 科技创新: body 1×1 + title 3×1 = 4; 成果转化: body 3×2 = 6 → 10
    assert scores["科技创新"] == 10.0
    # 作风 once (1) + 八项规定 once (2) = 3 ≥ 2
    assert scores["作风建设"] == 3.0
    assert "乡村振兴" not in scores
    assert score_topics("推动科技创新", BODY, VOCAB) == scores
    # below min_score: one 科技创新 only (1 < 3)
    assert "科技创新" not in score_topics("", "科技创新", VOCAB)
    assert score_topics("科技创新", BODY, Vocabulary.empty()) == {}


def test_top_keywords_non_empty_deterministic_and_clean() -> None:
    first = top_keywords(BODY)
    assert first == top_keywords(BODY)
    assert 0 < len(first) <= 8
    assert len(set(first)) == len(first)
    assert all(len(w) > 1 and not w.isdigit() for w in first)
    assert "科技" in "".join(first)
    assert len(top_keywords(BODY, k=3)) == 3
    assert top_keywords("2025 2026 一 二 三", k=5) == []
    assert top_keywords("   ") == []


def _record(**fields: object) -> Record:
    values: dict[str, object] = {
        "source_key": "kjj-site",
        "source_kind": "site_column",
        "url": "https://kjj.example.cn/art/1.html",
        "canonical_key": "https://kjj.example.cn/art/1.html",
        "fetched_at": datetime(2026, 11, 26, 2, 0, tzinfo=UTC),
        "title": "凝心聚力 勇毅前行 奋力书写科技赋能高质量发展新答卷",
        "body_text": BODY,
    }
    values.update(fields)
    item = ArticleItem(**values)  # type: ignore[arg-type]
    return Record(item=item, title=item.title, body_html="", body_text=item.body_text, content_hash="0" * 64)


def test_tag_record_from_the_body() -> None:
    tags = tag_record(_record(), VOCAB, owning_unit="张掖市教育局")
    assert tags.unit == "张掖市科学技术局"
    assert tags.author == "叶其炎"
    assert tags.positions == ["党组书记", "局长"]
    # the banner line proposes the column; only an album or a configured list makes a member
    assert (tags.column, tags.column_candidate) == (None, COLUMN)
    assert set(tags.topics) == {"科技创新", "作风建设"}
    assert tags.keywords


def test_tag_record_reads_the_byline_field_when_the_body_has_none() -> None:
    record = _record(byline="市财政局党组书记、局长 王立新", body_text="全会精神内涵丰富。")
    tags = tag_record(record, VOCAB, owning_unit=None)
    assert (tags.unit, tags.author, tags.positions) == ("张掖市财政局", "王立新", ["党组书记", "局长"])
    # not a column member by the source's word: its album name is not used
    record = _record(body_text="全会精神内涵丰富。", title="学习心得", column=COLUMN, in_column=False)
    assert tag_record(record, VOCAB, owning_unit=None).column is None
    # listed by a title filter: a candidate
    record = _record(body_text="全会精神内涵丰富。", title="学习心得", column=COLUMN, extra={"column_rule": "title"})
    tags = tag_record(record, VOCAB, owning_unit=None)
    assert (tags.column, tags.column_candidate) == (None, COLUMN)


def test_county_party_committees_and_governments_are_other_units() -> None:
    vocab = Vocabulary(units=(UnitConf("中共张掖市委组织部", None, ("市委组织部", "组织部")),))
    assert vocab.matcher.match("甘州区委组织部") is None
    assert vocab.matcher.match("肃南县委组织部") is None
    assert vocab.matcher.match("张掖市委组织部") == "中共张掖市委组织部"
