"""The one byline reader (crawler.parsing.bylines): lines, bodies, credits, notes and sign-offs."""

from __future__ import annotations

import pytest

from crawler.parsing.bylines import (
    AT_END,
    author_names,
    find_byline,
    is_person_name,
    parse_byline,
    read_credit_line,
    read_credits,
    text_start,
)
from pipeline.tagging.vocabulary import UnitMatcher
from zhuanlan_config import UnitConf

UNITS = {"市科学技术局", "科技局", "市财政局", "市教育局", "市民政局", "市总工会", "市政府办公室", "团市委"}


def is_unit(text: str) -> bool:
    return text in UNITS


LEAD = "全会精神内涵丰富、意义重大，必须学深悟透、融会贯通，以实际行动推动全会精神在本部门落地见效、开花结果。"


@pytest.mark.parametrize(
    ("line", "org", "positions", "names"),
    [
        ("市科学技术局党组书记、局长 叶其炎", "市科学技术局", ("党组书记", "局长"), ["叶其炎"]),
        ("市科学技术局党组书记、局长\u3000叶其炎", "市科学技术局", ("党组书记", "局长"), ["叶其炎"]),
        ("市科学技术局党组书记、局长叶其炎", "市科学技术局", ("党组书记", "局长"), ["叶其炎"]),
        ("市财政局副局长 马\u3000军", "市财政局", ("副局长",), ["马军"]),
        ("市财政局副局长 王\u3000\u3000军", "市财政局", ("副局长",), ["王军"]),
        ("——市民政局局长 赵文华", "市民政局", ("局长",), ["赵文华"]),
        ("市民政局局长 赵文华（执笔）", "市民政局", ("局长",), ["赵文华"]),
        ("市民政局局长 赵文华 执笔", "市民政局", ("局长",), ["赵文华"]),
        ("叶其炎（市科学技术局党组书记、局长）", "市科学技术局", ("党组书记", "局长"), ["叶其炎"]),
        ("叶其炎，市科学技术局党组书记、局长", "市科学技术局", ("党组书记", "局长"), ["叶其炎"]),
        ("张掖市科学技术局（张掖市地震局）党组书记、局长 叶其炎", "张掖市科学技术局", ("党组书记", "局长"), ["叶其炎"]),
        ("市总工会党组书记、常务副主席 王红梅", "市总工会", ("党组书记", "常务副主席"), ["王红梅"]),
        ("市政府办公室党组书记、主任 李国强", "市政府办公室", ("党组书记", "主任"), ["李国强"]),
        ("团市委书记 张伟", "团市委", ("书记",), ["张伟"]),
        ("市委常委、组织部部长 周晓明", "市委组织部", ("市委常委", "组织部部长"), ["周晓明"]),
        ("市财政局党组书记、局长 王立新　副局长 李敏", "市财政局", ("党组书记", "局长", "副局长"), ["王立新", "李敏"]),
        ("市财政局党组书记、局长王立新，副局长李敏", "市财政局", ("党组书记", "局长", "副局长"), ["王立新", "李敏"]),
        ("市教育局 刘文博 高远", "市教育局", (), ["刘文博", "高远"]),
        ("张掖日报记者 刘洋　通讯员 陈静", "张掖日报", ("记者", "通讯员"), ["刘洋", "陈静"]),
        ("文/市教育局 张晓燕", "市教育局", (), ["张晓燕"]),
        ("文｜市教育局 张晓燕", "市教育局", (), ["张晓燕"]),
        ("作者：市财政局办公室主任 孙丽娟", "市财政局", ("办公室主任",), ["孙丽娟"]),
        ("（市教育局党组书记、局长 陈立平）", "市教育局", ("党组书记", "局长"), ["陈立平"]),
        ("市科学技术局 党组书记、局长 叶其炎", "市科学技术局", ("党组书记", "局长"), ["叶其炎"]),
        ("市教育局党组成员 阿依古丽·买买提", "市教育局", ("党组成员",), ["阿依古丽·买买提"]),
        ("市科技局四级调研员 欧阳明华", "市科技局", ("四级调研员",), ["欧阳明华"]),
        ("市科学技术局机关党委书记 周文斌", "市科学技术局", ("机关党委书记",), ["周文斌"]),
        ("市委宣传部部务委员 孔德明", "市委宣传部", ("部务委员",), ["孔德明"]),
        ("市财政局党组成员、局务会成员 宋雅琴", "市财政局", ("党组成员", "局务会成员"), ["宋雅琴"]),
        ("王立新、李敏（市财政局）", "市财政局", (), ["王立新", "李敏"]),
        ("作者：刘文博 高远（市教育局）", "市教育局", (), ["刘文博", "高远"]),
        ("叶其炎 | 市科学技术局党组书记、局长", "市科学技术局", ("党组书记", "局长"), ["叶其炎"]),
        # positions parted by a space inside the brackets, as by 、
        ("叶其炎（市科学技术局党组书记 局长）", "市科学技术局", ("党组书记", "局长"), ["叶其炎"]),
        ("王立新（市财政局 党组书记 局长）", "市财政局", ("党组书记", "局长"), ["王立新"]),
    ],
)
def test_parse_byline(line: str, org: str, positions: tuple[str, ...], names: list[str]) -> None:
    byline = parse_byline(line, is_unit)
    assert (byline.org, byline.positions, byline.names) == (org, positions, names)


def test_the_second_of_two_units_keeps_its_positions_apart() -> None:
    byline = parse_byline("市财政局党组书记、局长 王立新 市教育局副局长 李敏", is_unit)
    assert (byline.org, byline.positions, byline.names) == ("市财政局", ("党组书记", "局长"), ["王立新", "李敏"])
    assert byline.people[1].org == "市教育局"


@pytest.mark.parametrize(
    "line", ["乘势而上 担当实干", "学习贯彻党的二十届四中全会精神", "张掖机关党建", "市科技局", "局长"]
)
def test_no_person_in_other_lines(line: str) -> None:
    assert parse_byline(line, is_unit).people == ()


@pytest.mark.parametrize(
    ("token", "expected"),
    [("叶其炎", True), ("马军", True), ("欧阳明华", True), ("阿依古丽·买买提", True), ("奋斗", False), ("正文", False)],
)
def test_person_names_start_with_a_surname(token: str, expected: bool) -> None:
    assert is_person_name(token) is expected


def test_credit_lines() -> None:
    editors = read_credit_line("编辑：李晓｜审核：许文杰")
    assert editors is not None and (editors.authors, editors.editors) == ([], ["李晓", "许文杰"])
    reviews = read_credit_line("初审：张敏　复审：李强　终审：王芳")
    assert reviews is not None and reviews.editors == ["张敏", "李强", "王芳"]
    writers = read_credit_line("文/陈静　图/高远")
    assert writers is not None and writers.authors == ["陈静", "高远"]
    drafted = read_credit_line("撰稿：刘洋 陈静")
    assert drafted is not None and drafted.authors == ["刘洋", "陈静"]
    drafter = read_credit_line("供稿单位：市民政局　撰稿人：韩雪")
    assert drafter is not None and (drafter.labels, drafter.authors) == (["市民政局"], ["韩雪"])
    piped = read_credit_line("来源 | 市民政局")
    assert piped is not None and piped.labels == ["市民政局"]
    piped_names = read_credit_line("编辑 | 李晓　审核 | 许文杰")
    assert piped_names is not None and piped_names.editors == ["李晓", "许文杰"]
    for repost in ("转自：市民政局", "本文来源：市民政局", "（转载自“市民政局”微信公众号）", "转自「市民政局」"):
        taken = read_credit_line(repost)
        assert taken is not None and len(taken.labels) == 1 and "市民政局" in taken.labels[0], repost
    supplied = read_credit_line("市民政局供稿")
    assert supplied is not None and supplied.labels == ["市民政局"]
    labelled = read_credit_line("（来源：市教育局）")
    assert labelled is not None and labelled.labels == ["市教育局"]
    # a labelled byline is no credit line: it names an organisation (a unit and a person under one label)
    assert read_credit_line("文/市教育局 张晓燕") is None
    assert read_credit_line("文字：市教育局 张晓燕　图片：李敏") is None
    # 提供 is a verb of prose: only 供稿 and 供图 make a part of a credit line
    assert read_credit_line("为群众提供服务　编辑：李晓") is None
    assert read_credit_line(LEAD) is None


@pytest.mark.parametrize(
    ("line", "authors", "editors", "labels"),
    [
        # WeChat's bar 丨 between a label and its value
        ("来源丨市财政局　编辑丨李晓　审核丨许文杰", [], ["李晓", "许文杰"], ["市财政局"]),
        ("文丨王立新", ["王立新"], [], []),
        # author labels written together
        ("文/图：王立新", ["王立新"], [], []),
        ("图/文：王立新", ["王立新"], [], []),
        ("文字、图片：王立新", ["王立新"], [], []),
        ("图文：王立新　编辑：李晓", ["王立新"], ["李晓"], []),
        # a unit after an author label made the article and names no person: it supplied it
        ("文/图：市财政局", [], [], ["市财政局"]),
        ("文字、图片：市财政局", [], [], ["市财政局"]),
        ("来源：临溪机关党建　作者：市财政局", [], [], ["临溪机关党建", "市财政局"]),
        # the unit beside the author, the unit that sent it in, and other fields on the line
        ("作者：王立新　单位：市财政局", ["王立新"], [], ["市财政局"]),
        ("投稿单位：市财政局", [], [], ["市财政局"]),
        ("来源单位：市财政局", [], [], ["市财政局"]),
        ("撰稿：王立新　时间：2025年11月20日", ["王立新"], [], []),
        # a unit under one author label and a person under another
        ("文字：市财政局　图片：李敏", ["李敏"], [], ["市财政局"]),
        ("文字：李敏　图片：市财政局", ["李敏"], [], ["市财政局"]),
        # 「…供稿」 as one part of the line
        ("（市财政局供稿　撰稿：王立新）", ["王立新"], [], ["市财政局"]),
        ("市财政局供稿　编辑：李晓", [], ["李晓"], ["市财政局"]),
    ],
)
def test_credit_line_forms(line: str, authors: list[str], editors: list[str], labels: list[str]) -> None:
    credit = read_credit_line(line)
    assert credit is not None, line
    assert (credit.authors, credit.editors, credit.labels) == (authors, editors, labels)


@pytest.mark.parametrize("label", ["单位", "时间", "日期", "文字", "文章", "图文", "责编"])
def test_a_label_is_never_a_name(label: str) -> None:
    assert not is_person_name(label)
    credits = read_credits(f"{LEAD}\n作者：王立新 {label}：市财政局")
    assert label not in author_names(credits)


def test_a_body_with_banner_note_title_byline_and_tail() -> None:
    body = "\n".join(
        [
            "学习贯彻党的二十届四中全会精神",
            "编者按：为推动市直机关党员干部深入学习贯彻全会精神，本公众号开设专栏，刊发各部门（单位）的学习体会。",
            "凝心聚力 勇毅前行",
            "市科学技术局党组书记、局长 叶其炎",
            LEAD,
            "来源：市科学技术局",
            "编辑：李晓｜审核：许文杰",
        ]
    )
    credits = read_credits(body, "凝心聚力 勇毅前行", is_unit)
    assert credits.byline is not None and credits.byline.names == ["叶其炎"]
    assert credits.labels == ("市科学技术局",)
    assert credits.editors == frozenset({"李晓", "许文杰"})
    assert author_names(credits) == ["叶其炎"]
    assert find_byline(body, "凝心聚力 勇毅前行") == "市科学技术局党组书记、局长 叶其炎"


def test_byline_split_over_two_lines() -> None:
    body = f"市科学技术局党组书记、局长\n叶其炎\n{LEAD}"
    credits = read_credits(body, "", is_unit)
    assert credits.byline is not None
    assert (credits.byline.org, credits.byline.names) == ("市科学技术局", ["叶其炎"])


def test_a_name_on_top_and_the_author_note_at_the_end() -> None:
    credits = read_credits(f"叶其炎\n{LEAD}\n{LEAD}\n（作者系市科学技术局党组书记、局长）", "")
    assert credits.byline is not None and credits.byline.names == ["叶其炎"]
    assert credits.note is not None
    assert (credits.note.org, credits.note.positions) == ("市科学技术局", ("党组书记", "局长"))
    unit_note = read_credits(f"{LEAD}\n作者单位：张掖市财政局", "")
    assert unit_note.note is not None and unit_note.note.org == "张掖市财政局"


def test_signatures_and_sign_offs_at_the_end() -> None:
    credits = read_credits(f"{LEAD}\n{LEAD}\n——市民政局党组书记 赵文华", "")
    assert credits.byline is not None and credits.byline.where == "end"
    assert credits.byline.names == ["赵文华"]
    signoff = read_credits(f"{LEAD}\n年轻人名李简，现任胸外科主任，告诉记者：被称之为难题。\n{LEAD}（袁源）", "")
    assert signoff.byline is None
    assert author_names(signoff) == ["袁源"]


def test_editors_are_never_authors() -> None:
    credits = read_credits(f"{LEAD}\n{LEAD}\n编辑：刘洋　审核：许文杰", "")
    assert author_names(credits) == []
    credits = read_credits(f"文/陈静\n{LEAD}\n编辑：李晓", "")
    assert author_names(credits) == ["陈静"]
    # who signed the byline is an author, even when the same person reviewed the post
    credits = read_credits(f"市直机关工委副书记 许文杰\n{LEAD}\n编辑：李晓　审核：许文杰", "", is_unit)
    assert author_names(credits) == ["许文杰"]


def test_no_byline_in_plain_text() -> None:
    assert read_credits(f"{LEAD}\n{LEAD}", "").byline is None
    assert find_byline("市直机关工委书记张明远同志指出，要抓好落实。") is None
    assert find_byline("编者按：为深入学习宣传贯彻全会精神，现开设专栏。") is None
    assert find_byline("奋进新征程 李白\n正文内容很长很长。") is None
    assert find_byline("文/奋进新征程 李白\n正文。") == "文/奋进新征程 李白"


def test_decorated_split_and_profile_bylines() -> None:
    decorated = read_credits(f"■ 市科学技术局党组书记、局长 叶其炎\n{LEAD}", "", is_unit)
    assert decorated.byline is not None
    assert (decorated.byline.org, decorated.byline.names) == ("市科学技术局", ["叶其炎"])
    bracketed = read_credits(f"叶其炎\n（市科学技术局党组书记、局长）\n{LEAD}", "", is_unit)
    assert bracketed.byline is not None
    assert (bracketed.byline.org, bracketed.byline.positions) == ("市科学技术局", ("党组书记", "局长"))
    profile = read_credits(f"{LEAD}\n{LEAD}\n作者简介：叶其炎，市科学技术局党组书记、局长。", "", is_unit)
    assert profile.note is not None and profile.note.org == "市科学技术局"
    assert author_names(profile) == ["叶其炎"]


def test_a_party_body_is_no_person_but_the_surname_dang_is() -> None:
    assert not is_person_name("党组")
    assert not is_person_name("党支部")
    assert is_person_name("党晓红")


@pytest.mark.parametrize(
    "body",
    [
        f"中共临溪市民政局党组理论学习中心组\n{LEAD}",
        f"{LEAD}\n（市民政局机关党委）",
        f"市民政局机关第二党支部\n{LEAD}",
    ],
)
def test_a_party_body_signing_for_its_unit(body: str) -> None:
    credits = read_credits(body, "", is_unit)
    assert credits.byline is None
    assert credits.note is not None and credits.note.org is not None and credits.note.org.endswith("市民政局")
    assert author_names(credits) == []


# Configured units as the office's config names them (the reader asks the matcher, as the tagger does).
SIGNERS = UnitMatcher(
    [UnitConf("临溪市民政局", None, ("市民政局",)), UnitConf("中共临溪市直机关工委", "市直机关工委", ("市直机关工委",))]
)


@pytest.mark.parametrize(
    "tail",
    [
        "临溪市民政局\n2025年11月20日",
        "市民政局\n2025-11-20",
        "市民政局\n2025年11月20日\n编辑：李晓　审核：许文杰",
        "（市民政局）",
    ],
)
def test_a_unit_signing_at_the_end(tail: str) -> None:
    credits = read_credits(f"{LEAD}\n{LEAD}\n{tail}", "", SIGNERS.ends_with_unit)
    assert credits.note is not None and credits.note.org is not None and credits.note.org.endswith("市民政局")
    assert (credits.note.where, author_names(credits)) == (AT_END, [])


@pytest.mark.parametrize(
    "tail",
    [
        "临溪市直机关工委",  # a unit's name alone, undated: maybe the account's footer
        "甘州区民政局\n2025年11月20日",  # a county's unit: not ours
        "感谢市民政局\n2025年11月20日",  # not a name alone
        "市民政局\n编辑：李晓",
    ],
)
def test_no_unit_signature_without_its_date_or_brackets(tail: str) -> None:
    credits = read_credits(f"{LEAD}\n{LEAD}\n{tail}", "", SIGNERS.ends_with_unit)
    assert credits.note is None and credits.byline is None


def test_a_party_body_in_the_text_is_no_signature() -> None:
    credits = read_credits(f"{LEAD}\n市民政局党组高度重视，多次召开会议研究部署。\n{LEAD}", "", is_unit)
    assert credits.note is None and credits.byline is None


def test_a_profile_with_a_biography() -> None:
    profile = "作者简介：韩雪，女，回族，1983年5月生，甘肃临溪人，中共党员，大学学历，现任市民政局党组成员、副局长。"
    credits = read_credits(f"{LEAD}\n{profile}", "", is_unit)
    assert credits.note is not None
    assert (credits.note.org, credits.note.names, credits.note.positions) == (
        "市民政局",
        ["韩雪"],
        ("党组成员", "副局长"),
    )
    named = read_credits(f"{LEAD}\n作者简介：李树人，男，1970年生，现任市民政局局长。", "", is_unit).note
    assert named is not None and (named.names, named.positions) == (["李树人"], ("局长",))


@pytest.mark.parametrize(
    "head",
    [
        "市科学技术局党组书记、局长 叶其炎",
        "叶其炎（市科学技术局党组书记、局长）",
        "学习贯彻党的二十届四中全会精神\n叶其炎\n（市科学技术局党组书记、局长）",
        "来源：市民政局",
        "刘文博　高远",
        "凝心聚力 勇毅前行\n——市科学技术局党组书记、局长 叶其炎",
        "2025年11月12日",
    ],
)
def test_text_starts_after_the_credits_above_it(head: str) -> None:
    assert text_start(f"{head}\n{LEAD}\n第二段。", "学习心得") == f"{LEAD}\n第二段。"


@pytest.mark.parametrize(
    "body",
    [
        f"{LEAD}\n市科学技术局党组书记、局长 叶其炎",  # a byline at the end stays: it is after the text
        "各区县民政局，委属各单位：\n现将有关事项通知如下。",  # a salutation is text
        "学习贯彻全会精神，要把握好以下三个方面：\n一要深刻领会全会的重大意义。",
        "叶其炎\n刘文博",  # nothing but names: kept whole
    ],
)
def test_text_that_starts_at_once_is_kept_whole(body: str) -> None:
    assert text_start(body, "学习心得") == body
