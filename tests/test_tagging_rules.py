"""Tag rules: bylines, unit attribution, columns, topics, keywords, whole records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crawler.items import ArticleItem
from pipeline.record import Record
from pipeline.tagrules import (
    Byline,
    Vocabulary,
    attribute_unit,
    column_for,
    find_byline,
    parse_byline,
    score_topics,
    tag_record,
    top_keywords,
)
from zhuanlan_config import ColumnConf, TopicConf, UnitConf

COLUMN = "学习贯彻党的二十届四中全会精神"

UNITS = (
    UnitConf("张掖市科学技术局", "市科技局", ("市科学技术局", "科技局")),
    UnitConf("张掖市财政局", None, ("市财政局",)),
    UnitConf("张掖市教育局", None, ("市教育局",)),
    UnitConf("张掖市民政局"),  # no alias: 「市民政局」 matches by its ending
    UnitConf("中共张掖市直属机关工作委员会", "市直机关工委", ("市直机关工委",)),
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


@pytest.mark.parametrize(
    ("line", "unit", "positions", "author"),
    [
        # the seed's byline
        ("市科学技术局党组书记、局长 叶其炎", "张掖市科学技术局", ["党组书记", "局长"], "叶其炎"),
        # full-width space
        ("市科学技术局党组书记、局长\u3000叶其炎", "张掖市科学技术局", ["党组书记", "局长"], "叶其炎"),
        # no space between the last position and the name
        ("市科学技术局党组书记、局长叶其炎", "张掖市科学技术局", ["党组书记", "局长"], "叶其炎"),
        # a short alias
        ("市科技局党组成员、副局长 陈晓东", "张掖市科学技术局", ["党组成员", "副局长"], "陈晓东"),
        # two people: the first is the author; positions of both, same unit
        ("市财政局党组书记、局长 王立新 副局长 李敏", "张掖市财政局", ["党组书记", "局长", "副局长"], "王立新"),
        # two people, commas and no spaces
        ("市财政局党组书记、局长王立新，副局长李敏", "张掖市财政局", ["党组书记", "局长", "副局长"], "王立新"),
        # 文/ prefix, unit and name only
        ("文/市教育局 张晓燕", "张掖市教育局", [], "张晓燕"),
        ("文｜市教育局 张晓燕", "张掖市教育局", [], "张晓燕"),
        # a signature with a dash, unit configured without alias
        ("——市民政局党组书记 赵文华", "张掖市民政局", ["党组书记"], "赵文华"),
        # 作者： label, an office position
        ("作者：市财政局办公室主任 孙丽娟", "张掖市财政局", ["办公室主任"], "孙丽娟"),
        # qualified position and a two-character name
        ("市教育局一级主任科员 王芳", "张掖市教育局", ["一级主任科员"], "王芳"),
        # 机关党委书记 is one position, not 机关党委 + 书记 of an organisation 「市科学技术局机关」
        ("市科学技术局机关党委书记 周文斌", "张掖市科学技术局", ["机关党委书记"], "周文斌"),
        # compound surname: four characters
        ("市科技局四级调研员 欧阳明华", "张掖市科学技术局", ["四级调研员"], "欧阳明华"),
        # name first, positions in brackets
        ("叶其炎（市科学技术局党组书记、局长）", "张掖市科学技术局", ["党组书记", "局长"], "叶其炎"),
        # the whole byline in brackets
        ("（市教育局党组书记、局长 陈立平）", "张掖市教育局", ["党组书记", "局长"], "陈立平"),
        # a space between unit and positions
        ("市科学技术局 党组书记、局长 叶其炎", "张掖市科学技术局", ["党组书记", "局长"], "叶其炎"),
        # a configured unit glued to the name
        ("市教育局张晓燕", "张掖市教育局", [], "张晓燕"),
        # the second person is from another unit: only the first unit's positions
        ("市财政局党组书记、局长 王立新 市教育局副局长 李敏", "张掖市财政局", ["党组书记", "局长"], "王立新"),
        # the 工委 itself, by its short name
        ("市直机关工委副书记 刘建国", "中共张掖市直属机关工作委员会", ["副书记"], "刘建国"),
        # an unconfigured organisation: positions and author, no unit
        ("县农业农村局党组书记 马德明", None, ["党组书记"], "马德明"),
        # a name with a middle dot
        ("市教育局党组成员 阿依古丽·买买提", "张掖市教育局", ["党组成员"], "阿依古丽·买买提"),
    ],
)
def test_parse_byline(line: str, unit: str | None, positions: list[str], author: str) -> None:
    byline = parse_byline(line, VOCAB)
    assert (byline.unit, byline.positions, byline.author) == (unit, positions, author)


def test_parse_byline_keeps_the_written_unit_and_works_without_units() -> None:
    byline = parse_byline("市科学技术局党组书记、局长 叶其炎", ())
    assert byline == Byline(unit=None, positions=["党组书记", "局长"], author="叶其炎", unit_text="市科学技术局")


@pytest.mark.parametrize("line", ["乘势而上 担当实干", COLUMN, "张掖机关党建", "市科技局", "局长"])
def test_parse_byline_finds_no_author_in_other_lines(line: str) -> None:
    assert parse_byline(line, VOCAB).author is None


def test_longest_alias_wins() -> None:
    units = (UnitConf("张掖市技术中心", None, ("技术局",)), UnitConf("张掖市科学技术局", None, ("科学技术局",)))
    assert parse_byline("市科学技术局局长 叶其炎", units).unit == "张掖市科学技术局"


def test_find_byline_after_banner_editor_note_and_two_line_title() -> None:
    title = "凝心聚力 勇毅前行 奋力书写科技赋能高质量发展新答卷"
    assert find_byline(BODY, title) == "市科学技术局党组书记、局长 叶其炎"
    assert find_byline(BODY, "") == "市科学技术局党组书记、局长 叶其炎"


def test_find_byline_signature_at_the_end_and_none() -> None:
    body = (
        "全会精神内涵丰富、意义重大，必须学深悟透。\n我们将以实际行动推动全会精神落地见效。\n——市民政局党组书记 赵文华"
    )
    assert find_byline(body, "") == "——市民政局党组书记 赵文华"
    assert find_byline("全会精神内涵丰富。\n我们将推动全会精神落地见效。", "") is None
    # a bare 「unit name」 line is not a byline unless labelled or the unit is configured
    assert find_byline("奋进新征程 李白\n正文内容很长很长。", "") is None
    assert find_byline("文/奋进新征程 李白\n正文。", "") == "文/奋进新征程 李白"


def test_attribute_unit_order_of_trust() -> None:
    byline = parse_byline("市科学技术局党组书记、局长 叶其炎", VOCAB)
    # byline first
    assert attribute_unit(byline, "市财政局", "张掖市教育局", VOCAB) == "张掖市科学技术局"
    # then the 来源 label
    assert attribute_unit(None, "张掖市财政局", "张掖市教育局", VOCAB) == "张掖市财政局"
    assert attribute_unit(Byline(author="王立新"), "市财政局", None, VOCAB) == "张掖市财政局"
    # a 来源 naming the WeChat account or a newspaper is ignored: the source's owning unit
    assert attribute_unit(None, "张掖机关党建", "张掖市教育局", VOCAB) == "张掖市教育局"
    assert attribute_unit(None, "张掖日报", "张掖市教育局", VOCAB) == "张掖市教育局"
    assert attribute_unit(None, None, None, VOCAB) is None
    # an unconfigured byline organisation does not block the next rules
    other = parse_byline("县农业农村局党组书记 马德明", VOCAB)
    assert attribute_unit(other, "市教育局", None, VOCAB) == "张掖市教育局"


def test_column_for() -> None:
    assert column_for("学习贯彻党的二十届四中全会精神", "任意标题", "", VOCAB) == COLUMN
    assert column_for("理论学习", "任意标题", "", VOCAB) == "理论学习"  # the source's own column
    assert column_for(None, "深入学习贯彻四中全会精神 推动科技创新", "", VOCAB) == COLUMN
    assert column_for(None, "凝心聚力 勇毅前行", BODY, VOCAB) == COLUMN  # banner line in the body
    assert column_for(None, "市财政局召开季度工作会", "会议研究了预算执行情况。", VOCAB) is None
    assert column_for(None, "四中全会", "", Vocabulary.empty()) is None


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
    assert tags.column == COLUMN
    assert set(tags.topics) == {"科技创新", "作风建设"}
    assert tags.keywords


def test_tag_record_prefers_the_spiders_byline_and_falls_back() -> None:
    record = _record(byline="市财政局党组书记、局长 王立新", body_text="全会精神内涵丰富。")
    tags = tag_record(record, VOCAB, owning_unit=None)
    assert (tags.unit, tags.author, tags.positions) == ("张掖市财政局", "王立新", ["党组书记", "局长"])
    # author field only (a name), 来源 names a unit
    record = _record(author="孙丽娟", source_label="市教育局", body_text="全会精神内涵丰富。", title="学习心得")
    tags = tag_record(record, VOCAB, owning_unit="张掖市财政局")
    assert (tags.unit, tags.author, tags.positions, tags.column) == ("张掖市教育局", "孙丽娟", [], None)
    # WeChat author field holding the account name: no author; the owning unit decides
    record = _record(author="张掖机关党建", body_text="全会精神内涵丰富。", title="学习心得", column="理论学习")
    tags = tag_record(record, VOCAB, owning_unit="张掖市财政局")
    assert (tags.unit, tags.author, tags.column) == ("张掖市财政局", None, "理论学习")
    # not a column member by the source's word: its album name is not used
    record = _record(body_text="全会精神内涵丰富。", title="学习心得", column=COLUMN, in_column=False)
    assert tag_record(record, VOCAB, owning_unit=None).column is None


def test_tag_record_byline_field_with_a_unit_only_takes_the_name_from_the_body() -> None:
    record = _record(byline="市教育局")
    tags = tag_record(record, VOCAB, owning_unit=None)
    assert (tags.unit, tags.author, tags.positions) == ("张掖市教育局", "叶其炎", ["党组书记", "局长"])
