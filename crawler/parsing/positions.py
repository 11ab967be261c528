"""The one vocabulary of bylines: positions, credit roles, surnames and organisation endings.

Owns the word lists that `crawler.parsing.bylines` reads bylines with; the spiders (through the
byline reader) and the tagger (through the same reader) share them, so a word added here is known
everywhere at once. Data only: no functions beyond building the regular-expression alternations.

Must not import anything of the project: it is the bottom of the byline code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

HAN = r"\u3400-\u4dbf\u4e00-\u9fff"

# A position is recognised by its last word (the core), optionally preceded by qualifiers
# (党组 + 书记, 副 + 局长, 一级 + 主任科员). Listed cores end a position; qualifiers only start one.
POSITION_CORES: tuple[str, ...] = (
    "书记", "常委", "局长", "主任", "主任科员", "副主任科员", "科员", "办事员", "委员", "成员", "主席",
    "院长", "行长", "总经理", "经理", "科长", "处长", "部长", "厅长", "所长", "站长", "队长", "校长",
    "馆长", "社长", "会长", "秘书长", "组长", "董事长", "理事长", "调研员", "研究员", "巡视员", "督学",
    "专员", "干事", "市长", "县长", "区长", "州长", "旗长", "镇长", "乡长", "检察长", "庭长", "审判长",
    "审判员", "检察官", "法官", "政委", "教导员", "指导员", "总编辑", "主编", "负责人", "联络员", "厂长",
    "总监", "工程师", "会计师", "经济师", "审计师", "统计师", "教授", "讲师", "党员", "干部", "职工",
    "工作人员", "主管", "馆员", "监事长", "总会计师", "总工程师", "总经济师", "总师", "参事",
    # reporting roles, printed where a position stands: 张掖日报记者 刘洋　通讯员 陈静
    "记者", "通讯员", "评论员", "特约评论员", "实习生", "见习记者",
)  # fmt: skip

POSITION_QUALIFIERS: tuple[str, ...] = (
    "机关党委", "机关党总支", "机关党支部", "机关纪委", "机关工会", "派驻纪检监察组", "纪检监察组",
    "党组", "党委", "党工委", "党总支", "党支部", "纪委", "工会", "团委", "团支部", "妇委会", "办公室",
    "常务", "专职", "兼职", "第一", "执行", "首席", "一级", "二级", "三级", "四级", "组织", "宣传",
    "纪检", "青年", "副", "总", "特约", "驻站", "本报", "本台", "本刊", "本网",
    # a department's own leadership body: 市委组织部部务委员, 市财政局局务会成员
    "部务会", "局务会", "委务会", "厅务会", "院务会", "部务", "局务", "委务",
)  # fmt: skip

# Credit labels in a body: who wrote it (authors) and who handled it (never authors).
AUTHOR_LABELS: tuple[str, ...] = (
    "作者", "撰稿", "撰稿人", "撰文", "文字", "文", "执笔", "执笔人", "图", "图片", "摄影", "摄像", "图文", "口述",
    "采写",
)  # fmt: skip
EDITOR_LABELS: tuple[str, ...] = (
    "编辑", "责任编辑", "责编", "值班编辑", "美编", "编审", "审核", "审校", "审签", "审定", "审稿", "校对",
    "初审", "复审", "终审", "一审", "二审", "三审", "签发", "排版", "统筹", "监制", "出品", "策划",
    "制作", "设计", "主编", "总编",
)  # fmt: skip
# Labels whose value names the organisation that supplied the article: 来源：市教育局, 市民政局供稿.
SOURCE_LABELS: tuple[str, ...] = (
    "信息来源", "文章来源", "稿件来源", "新闻来源", "内容来源", "本文来源", "稿源", "来源", "供稿单位", "供稿",
    # a repost names the account or site it was taken from: 转自：市财政局, 转载自“临溪财政”微信公众号
    "本文转自", "转自", "转载自",
    # the unit that sent the article in, and the 单位 beside a 作者 (「作者：王立新　单位：市财政局」)
    "投稿单位", "来源单位", "报送单位", "单位",
)  # fmt: skip
# Labels of other fields that share a credit line (「撰稿：王立新　时间：2025年11月20日」): read past.
FIELD_LABELS: tuple[str, ...] = ("发布时间", "发布日期", "时间", "日期")
# Words placed after a name that say how the person took part, not who they are.
NAME_SUFFIXES: tuple[str, ...] = ("执笔人", "执笔", "供图", "摄影", "摄", "整理", "报道", "同志")

# Organisations end like this (财政局, 团市委, 市政府办公室, 科技公司): text so ending is no name.
ORG_ENDINGS: tuple[str, ...] = (
    "局", "委", "部", "办", "院", "厅", "处", "室", "所", "站", "馆", "校", "队", "区", "县", "市",
    "镇", "乡", "司", "社", "会", "府", "中心", "支部", "总支", "协会", "联合会", "政府", "机关",
    "党建", "报", "台", "网", "集团", "公司", "银行", "医院", "学校", "大学", "学院", "法院", "检察院",
)  # fmt: skip
# Units (government and Party bodies, people's organisations, institutions) end like this: a
# byline organisation so ending that is not configured is some other unit (甘州区科技局), not ours.
UNIT_ENDINGS: tuple[str, ...] = (
    "局", "委", "办", "院", "厅", "处", "室", "所", "站", "馆", "会", "府", "部", "中心", "政府",
    "机关", "委员会", "工委", "联合会", "协会", "学校", "大学", "学院", "医院", "法院", "检察院",
)  # fmt: skip
# Organisations that publish news rather than contribute study articles: their name in a byline
# (张掖日报记者) says who reported, not which unit the article belongs to.
MEDIA_MARKERS: tuple[str, ...] = (
    "日报", "晚报", "报社", "电视台", "广播电视台", "融媒体中心", "新闻中心", "新闻网", "新华社", "通讯社",
    "杂志", "报", "台", "网",
)  # fmt: skip

COMPOUND_SURNAMES: tuple[str, ...] = (
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "令狐", "慕容", "尉迟", "长孙", "宇文", "司徒", "夏侯",
    "公孙", "轩辕", "端木", "西门", "独孤", "南宫", "万俟", "呼延", "澹台", "申屠", "钟离", "闻人", "赫连",
)  # fmt: skip

# Single-character surnames: the commonly met ones (household registration statistics list about
# 400 that cover nearly every person). A personal name starts with one of these, which is what
# tells 「高远」 (a name) from 「奋斗」 or 「正文」 (words) in a short line.
SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖萧田董潘袁蔡蒋余于杜叶程魏苏吕"
    "丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付傅方邹熊白孟秦邱侯江尹薛闫阎段雷龙黎史陶贺毛郝顾龚邵万覃"
    "武钱戴严欧莫孔向常汤康易乔赖文施洪辛柯庄樊牛鲁温季殷葛管邢路祝左涂谷甘卓蒲单包成齐褚房耿霍"
    "苗翟凌古尚申关聂纪舒焦毕柳项盛童岳裴靳鲍兰梅候倪景丛滕宁解饶应华晏祁佟吉宫伍黎俞蓝章麻钮"
    "艾车穆巩尤边卜戚米宗池阮郎全桂植凤宣奚楚冉迟荣屈蔺臧仇覃栾冀骆茅符邬曲司鄢苟粟揭敖窦商占"
    "芦卫兀尉迟燕和时游羊扈刁郁晋冷简达郜麦柏喻訾牟仲俎丘伏雍瞿鹿桑丰逯昝苑衣从霍阳敬索贝蒙"
    "习仝亢阚权连缪巫盖隋钭虞侍鞠酆戈储亓濮庞安党邸廉帅岑冼佘厉戎祖詹束幸薄宿怀邰鄂咸屠阴胥苍闻莘"
    "贡劳逄姬扶堵郦寿浦柴茹宦鱼容慎庾暨衡弘匡寇禄阙沃蔚越隆晁融毋巢蒯荆竺桓汝芮鲜伊闵禹官强付"
)


def alternation(words: Iterable[str]) -> str:
    """A regular-expression alternation of `words`, longest first (so 副局长 is tried before 局长)."""
    return "|".join(re.escape(w) for w in sorted(set(words), key=lambda w: (-len(w), w)))
