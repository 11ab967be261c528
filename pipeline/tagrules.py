"""Tagging rules: pure functions from an article's text and labels to its `Tags`.

Owns: the configured vocabulary (`Vocabulary`: units with aliases, topics, columns), reading
bylines (unit + positions + name), attributing a story to a unit (byline, then 来源, then the
source's owning unit), column membership, topic scores and jieba TF-IDF keywords.

Must not touch the database, Scrapy or the clock: the tag pipeline and the retag command are
the shells around these functions, and `pipeline.tagstore` writes the result.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.record import Record, Tags
from zhuanlan_config import ColumnConf, TopicConf, UnitConf

if TYPE_CHECKING:
    import rjieba

    from zhuanlan_config import Config

# --- vocabulary ---------------------------------------------------------------------

_SPACES = re.compile(r"[\s\u3000\u00a0\u200b\ufeff]+")


def _squash(text: str) -> str:
    """Text without any kind of space: how unit names are compared."""
    return _SPACES.sub("", text)


class UnitMatcher:
    """Finds the configured unit a piece of text names, by the unit's name, short name or aliases.

    The longest matching name wins (科学技术局 beats 技术局); ties go to the unit configured first.
    """

    def __init__(self, units: Iterable[UnitConf]) -> None:
        patterns: list[tuple[str, str]] = []
        self._names: list[str] = []
        for unit in units:
            self._names.append(unit.name)
            for pattern in (unit.name, unit.short_name, *unit.aliases):
                if pattern and _squash(pattern):
                    patterns.append((_squash(pattern), unit.name))
        # Longest first; the stable sort keeps config order among equal lengths.
        self._patterns = sorted(patterns, key=lambda p: -len(p[0]))

    def __bool__(self) -> bool:
        return bool(self._names)

    def match(self, text: str | None) -> str | None:
        """The configured unit named in `text` (anywhere in it), or None."""
        if not text:
            return None
        squashed = _squash(text)
        if not squashed:
            return None
        for pattern, name in self._patterns:
            if pattern in squashed:
                return name
        # 「市科学技术局」 for a unit configured only as 张掖市科学技术局: a local prefix (市/县/区)
        # followed by the rest of exactly one configured name.
        if len(squashed) >= 3 and squashed[0] in "市县区":
            hits = [name for name in self._names if _squash(name).endswith(squashed)]
            if len(hits) == 1:
                return hits[0]
        return None

    def names_unit(self, text: str) -> bool:
        """True when `text` as a whole is a configured unit's name or alias (no more, no less)."""
        squashed = _squash(text)
        return any(pattern == squashed for pattern, _ in self._patterns)


@dataclass(frozen=True)
class Vocabulary:
    """The office's own vocabulary from the config: units (with aliases), topics, columns."""

    units: tuple[UnitConf, ...] = ()
    topics: tuple[TopicConf, ...] = ()
    columns: tuple[ColumnConf, ...] = ()
    matcher: UnitMatcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived once: the matcher sorts every alias, and a vocabulary tags thousands of articles.
        object.__setattr__(self, "matcher", UnitMatcher(self.units))

    @classmethod
    def from_config(cls, config: Config) -> Vocabulary:
        return cls(units=tuple(config.units), topics=tuple(config.topics), columns=tuple(config.columns))

    @classmethod
    def empty(cls) -> Vocabulary:
        return cls()


UnitsArg = UnitMatcher | Vocabulary | Iterable[UnitConf] | None


def _matcher(units: UnitsArg) -> UnitMatcher:
    if isinstance(units, UnitMatcher):
        return units
    if isinstance(units, Vocabulary):
        return units.matcher
    return UnitMatcher(units or ())


# --- bylines ------------------------------------------------------------------------

# A position is recognised by its last word (the core), optionally preceded by qualifiers
# (党组 + 书记, 副 + 局长, 一级 + 主任科员). Listed cores end a position; qualifiers only start one.
POSITION_CORES: tuple[str, ...] = (
    "书记",
    "局长",
    "主任",
    "主任科员",
    "副主任科员",
    "科员",
    "办事员",
    "委员",
    "成员",
    "主席",
    "院长",
    "行长",
    "总经理",
    "经理",
    "科长",
    "处长",
    "部长",
    "所长",
    "站长",
    "队长",
    "校长",
    "馆长",
    "社长",
    "会长",
    "秘书长",
    "组长",
    "董事长",
    "理事长",
    "调研员",
    "研究员",
    "巡视员",
    "督学",
    "专员",
    "干事",
    "市长",
    "县长",
    "区长",
    "镇长",
    "乡长",
    "检察长",
    "庭长",
    "审判长",
    "审判员",
    "检察官",
    "政委",
    "教导员",
    "指导员",
    "总编辑",
    "主编",
    "记者",
    "通讯员",
    "负责人",
    "联络员",
    "厂长",
    "总监",
    "工程师",
    "会计师",
    "教授",
    "讲师",
    "党员",
    "干部",
    "职工",
    "工作人员",
)
POSITION_QUALIFIERS: tuple[str, ...] = (
    "机关党委",
    "机关党总支",
    "机关党支部",
    "机关纪委",
    "机关工会",
    "派驻纪检监察组",
    "纪检监察组",
    "党组",
    "党委",
    "党工委",
    "党总支",
    "党支部",
    "纪委",
    "工会",
    "团委",
    "团支部",
    "妇委会",
    "办公室",
    "常务",
    "专职",
    "兼职",
    "第一",
    "执行",
    "首席",
    "一级",
    "二级",
    "三级",
    "四级",
    "组织",
    "宣传",
    "纪检",
    "青年",
    "副",
    "总",
)


def _alternation(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=lambda w: (-len(w), w)))


_POSITION = rf"(?:{_alternation(POSITION_QUALIFIERS)})*(?:{_alternation(POSITION_CORES)})"
# Anchored at the end: search() finds the leftmost start, i.e. the longest position suffix.
_POSITION_AT_END = re.compile(rf"{_POSITION}$")
_POSITION_WHOLE = re.compile(rf"^{_POSITION}$")
_HAS_POSITION_CORE = re.compile(_alternation(POSITION_CORES))

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff"
COMPOUND_SURNAMES = (
    "欧阳",
    "司马",
    "诸葛",
    "上官",
    "东方",
    "皇甫",
    "令狐",
    "慕容",
    "尉迟",
    "长孙",
    "宇文",
    "司徒",
    "夏侯",
    "公孙",
    "轩辕",
    "端木",
    "西门",
    "独孤",
    "南宫",
    "万俟",
    "呼延",
    "澹台",
    "申屠",
)
# Names of minority nationalities are written with a middle dot: 阿依古丽·买买提.
_DOTTED_NAME = re.compile(rf"^[{_HAN}]{{1,8}}[·•・．][{_HAN}]{{1,8}}$")
_PLAIN_NAME = re.compile(rf"^[{_HAN}]{{2,3}}$")
# Text ends like this is an organisation, not a person (财政局, 团市委, 科技公司).
_ORG_ENDINGS = (
    "局",
    "委",
    "部",
    "办",
    "院",
    "厅",
    "处",
    "室",
    "所",
    "站",
    "馆",
    "校",
    "队",
    "区",
    "县",
    "市",
    "镇",
    "乡",
    "司",
    "社",
    "中心",
    "支部",
    "总支",
    "协会",
    "联合会",
    "政府",
    "机关",
    "党建",
)
_NOT_NAMES = frozenset(
    {"编者", "编者按", "来源", "作者", "图片", "摄影", "编辑", "审核", "校对", "供稿", "本文", "全文"}
)

# Labels and wrappers around a byline: 文/, 作者：, ——, （…）.
_LEAD = re.compile(
    r"^(?:[—－\-–~～_·•]+\s*|(?:本文)?(?:文|作者|撰文|撰稿|供稿|口述)\s*[/／|｜:：]\s*|(?:作者|撰稿)\s+)+"
)
_TRAIL = re.compile(r"[\s。.;；!！]+$")
_PIECE_SEP = re.compile(r"[、，,/／;；]+")
_COLON = re.compile(r"[:：]")
_NAME_FIRST = re.compile(r"^(?P<name>[^\s（(]{2,12})\s*[（(](?P<head>[^（()）]+)[）)]$")
_MARKER = re.compile(r"^\s*(?:[—－\-–]{1,2}|(?:本文)?(?:文|作者|撰文|撰稿)\s*[/／|｜:：])")


BYLINE_MAX_CHARS = 120


@dataclass(frozen=True)
class Byline:
    """What a byline says. `unit` is the configured unit's name (None when no configured unit
    matches); `unit_text` is the organisation as written (市科学技术局)."""

    unit: str | None = None
    positions: list[str] = field(default_factory=list)
    author: str | None = None
    unit_text: str | None = None


def is_person_name(token: str) -> bool:
    """A Chinese personal name: 2-3 Han characters, 4 with a compound surname, or a dotted name."""
    if not token or token in _NOT_NAMES:
        return False
    if _DOTTED_NAME.match(token):
        return True
    if len(token) == 4 and token.startswith(COMPOUND_SURNAMES) and re.fullmatch(rf"[{_HAN}]{{4}}", token):
        return True
    if not _PLAIN_NAME.match(token):
        return False
    return not (_HAS_POSITION_CORE.search(token) or token.endswith(_ORG_ENDINGS))


def _ends_in_head(head: str, matcher: UnitMatcher) -> bool:
    """Whatever may stand right before a name with no space: a position, or a configured unit."""
    return bool(_POSITION_AT_END.search(head)) or matcher.names_unit(head)


def _split_trailing_name(token: str, matcher: UnitMatcher) -> tuple[str, str] | None:
    """「局长叶其炎」 → ("局长", "叶其炎"): a name glued to a position (or a configured unit)."""
    for size in (2, 3, 4):
        if len(token) <= size:
            break
        head, name = token[:-size], token[-size:]
        if size == 4 and not name.startswith(COMPOUND_SURNAMES):
            continue
        if is_person_name(name) and _ends_in_head(head, matcher):
            return head, name
    return None


@dataclass
class _Person:
    org: str | None = None
    positions: list[str] = field(default_factory=list)
    name: str | None = None


def _read_head(tokens: Sequence[str]) -> _Person:
    """Organisation and positions from the words before a name: 「市财政局党组书记、局长」."""
    person = _Person()
    for token in tokens:
        for piece in _PIECE_SEP.split(token):
            if not piece:
                continue
            found = _POSITION_AT_END.search(piece)
            if found is None:
                # No position word: an organisation (or the second half of one split by a space).
                person.org = piece if person.org is None else person.org + piece
            elif found.start() == 0:
                person.positions.append(piece)
            elif person.org is None:
                person.org = piece[: found.start()]
                person.positions.append(found.group())
            else:
                # A position in another organisation (兼任): keep it whole, it says where.
                person.positions.append(piece)
    return person


def _tokens(text: str) -> list[str]:
    return [t for t in _SPACES.split(_COLON.sub(" ", text)) if t]


def _people(text: str, matcher: UnitMatcher) -> list[_Person]:
    name_first = _NAME_FIRST.match(text)
    if name_first and is_person_name(name_first.group("name")):
        person = _read_head([name_first.group("head")])
        person.name = name_first.group("name")
        return [person]
    people: list[_Person] = []
    pending: list[str] = []
    # Spaces, 、 and commas all separate pieces; a piece is a name, a head (organisation and/or
    # position), or a head with a name glued on 「局长叶其炎」. A name closes the person.
    pieces = [piece for token in _tokens(text) for piece in _PIECE_SEP.split(token) if piece]
    for piece in pieces:
        if is_person_name(piece):
            person = _read_head(pending)
            person.name = piece
        else:
            split = _split_trailing_name(piece, matcher)
            if split is None:
                pending.append(piece)
                continue
            person = _read_head([*pending, split[0]])
            person.name = split[1]
        people.append(person)
        pending = []
    if pending:
        people.append(_read_head(pending))
    return people


def clean_byline(line: str) -> str:
    """The byline without its wrapper: 「文/」, 「作者：」, 「——」, surrounding brackets, end punctuation."""
    text = line.strip()
    if len(text) >= 2 and text[0] in "（(【[" and text[-1] in "）)】]":
        text = text[1:-1].strip()
    text = _LEAD.sub("", text)
    return _TRAIL.sub("", text).strip()


def parse_byline(line: str, units: UnitsArg = None) -> Byline:
    """Unit, positions and author from a byline such as 「市科学技术局党组书记、局长 叶其炎」.

    Several people (「市财政局党组书记、局长 王立新 副局长 李敏」): the first named is the author; the
    positions of everyone in the same organisation are kept, in order, without repeats.
    """
    text = clean_byline(line)
    if len(text) > BYLINE_MAX_CHARS:
        return Byline()  # a paragraph, not a byline: reading it would only invent names
    matcher = _matcher(units)
    people = _people(text, matcher)
    if not people:
        return Byline()
    named = [p for p in people if p.name]
    lead = named[0] if named else people[0]
    unit_text = lead.org or next((p.org for p in people if p.org), None)
    positions: list[str] = []
    for person in people:
        if person.org is not None and person.org != unit_text:
            continue  # someone from another organisation: their titles are not this unit's
        for position in person.positions:
            if position not in positions:
                positions.append(position)
    unit = matcher.match(unit_text) if unit_text else None
    return Byline(unit=unit, positions=positions, author=lead.name, unit_text=unit_text)


_SKIP_LINE = re.compile(
    r"^[【\[(（]?(?:编者按|编者的话|按[:：]|来源|信息来源|稿源|发布|时间|日期|编辑|责任编辑|审核|校对|浏览|阅读|字号|图[:：]|摄影)"
)


def _is_byline(line: str, matcher: UnitMatcher) -> bool:
    if len(line) > 40 or _SKIP_LINE.match(line):
        return False
    byline = parse_byline(line, matcher)
    if byline.author is None:
        return False
    # A name alone or after a bare organisation is only a byline when labelled (文/, ——) or
    # when the organisation is a configured unit; otherwise a title like 「奋斗 张三」 would pass.
    return bool(byline.positions) or bool(_MARKER.match(line)) or byline.unit is not None


def find_byline(body_text: str, title: str, units: UnitsArg = None, *, head_lines: int = 8) -> str | None:
    """The byline line of an article body, or None.

    Looks at the first lines (after the column banner, 编者按 and the title, which may be split
    over two lines), then at the last lines for a signed-off 「——市民政局党组书记 赵某」.
    A byline is a short line (≤ 40 characters) ending in a name after a position word.
    """
    matcher = _matcher(units)
    lines = [stripped for raw in body_text.splitlines() if (stripped := raw.strip())]
    squashed_title = _squash(title)
    for line in lines[:head_lines]:
        squashed = _squash(line)
        if squashed_title and (squashed in squashed_title or squashed_title in squashed):
            continue
        if _is_byline(line, matcher):
            return line
    for line in lines[max(head_lines, len(lines) - 3) :]:
        if _MARKER.match(line) and _is_byline(line, matcher):
            return line
    return None


# --- unit, column, topics -----------------------------------------------------------


def attribute_unit(
    byline: Byline | None, source_label: str | None, owning_unit: str | None, vocab: Vocabulary
) -> str | None:
    """The configured unit a story belongs to: the byline's, then the 来源 label's, then the source's.

    A 来源 naming the WeChat account or a newspaper matches no configured unit and is ignored.
    """
    if byline is not None and byline.unit is not None:
        return byline.unit
    from_label = vocab.matcher.match(source_label)
    if from_label is not None:
        return from_label
    return owning_unit or None


def column_for(item_column: str | None, title: str, body_text: str, vocab: Vocabulary) -> str | None:
    """The column a story belongs to: what the source says (album, site column), else the
    configured title keywords, else a banner line at the top of the body naming the column."""
    if item_column and item_column.strip():
        named = item_column.strip()
        for column in vocab.columns:
            if named == column.name or named in column.title_keywords:
                return column.name
        return named
    for column in vocab.columns:
        if any(keyword and keyword in title for keyword in column.title_keywords):
            return column.name
    # WeChat column posts often open with the column's name as a banner line (see the seed).
    head = [_squash(line) for line in body_text.splitlines()[:3]]
    for column in vocab.columns:
        banners = {_squash(k) for k in (column.name, *column.title_keywords) if k}
        if any(line in banners for line in head if line):
            return column.name
    return None


TITLE_FACTOR = 3.0


def score_topics(title: str, body_text: str, vocab: Vocabulary) -> dict[str, float]:
    """Topic → score: each phrase occurrence adds the phrase's weight (a title hit counts 3×).

    Topics below their `min_score` are left out; order follows the config, scores are rounded
    so repeated runs compare equal.
    """
    scores: dict[str, float] = {}
    for topic in vocab.topics:
        score = 0.0
        for phrase, weight in topic.keywords.items():
            if not phrase:
                continue
            hits = body_text.count(phrase) + TITLE_FACTOR * title.count(phrase)
            score += weight * hits
        score = round(score, 6)
        if score > 0 and score >= topic.min_score:
            scores[topic.name] = score
    return scores


# --- keywords -----------------------------------------------------------------------

# Words that carry no subject in this kind of writing (they are in every study article).
KEYWORD_STOPWORDS = frozenset(
    {
        "我们",
        "他们",
        "你们",
        "自己",
        "一是",
        "二是",
        "三是",
        "四是",
        "五是",
        "六是",
        "进一步",
        "同时",
        "不断",
        "持续",
        "推动",
        "推进",
        "坚持",
        "加强",
        "深入",
        "全面",
        "切实",
        "积极",
        "工作",
        "方面",
        "要求",
        "提出",
        "指出",
        "明确",
        "作为",
        "通过",
        "进行",
        "开展",
        "实现",
        "提升",
        "围绕",
        "更加",
        "以及",
        "当前",
        "今后",
        "一个",
        "一批",
        "各类",
        "有关",
        "相关",
        "重要",
        "主要",
    }
)
_NUMBERLIKE = re.compile(r"^[\d０-９.,，%％+\-零〇一二三四五六七八九十百千万亿两第]+$")
_WORDLIKE = re.compile(rf"[{_HAN}A-Za-z]")

# Keywords are jieba 0.42.1's TF-IDF keywords (what `jieba.analyse.TFIDF().extract_tags` returns),
# computed without jieba's pure-Python segmenter, which cost 3 ms per article and 2 s to load:
# rjieba (jieba-rs, the same dictionary and HMM in Rust) cuts the text, and the weighting below is
# jieba's, over jieba's own IDF table and stop words read from its package files. Where jieba-rs
# departs from jieba, `_jieba_cut` puts jieba's behaviour back; tests/test_keywords.py compares the
# result with jieba's extractor so that a drift of either package fails there.
#
# Where jieba-rs cuts differently from jieba (found by cutting every Unicode character alone and in
# pairs with both): it counts more characters as Han (the CJK extensions, U+9FD6–U+9FFF, the
# compatibility ideographs) and joins them into words, where jieba yields each one alone; and its HMM
# keeps 2018.3.19, mmbiz.qpic.cn, a_b or 1-2 whole, where jieba's (finalseg's `re_skip`) splits them.
_RJIEBA_ONLY_HAN = re.compile(
    "([\u3400-\u4dbf\u9fd6-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002ebef\U0002f800-\U0002fa1f])"
)
_JOINED_BY_CONNECTORS = re.compile(r"[a-zA-Z0-9]+(?:[._\-][a-zA-Z0-9]+)+%?")
_JIEBA_HMM_SKIP = re.compile(r"([a-zA-Z0-9]+(?:\.[0-9]+)?%?)")


@dataclass(frozen=True)
class _KeywordModel:
    segmenter: rjieba.Jieba
    idf: dict[str, float]
    median_idf: float
    stop_words: frozenset[str]
    # word → its IDF (the median for unknown words), or None when it cannot be a keyword, for the
    # words met so far: a few thousand entries, against 350,000 in `idf`, whose lookups missed the
    # CPU caches (measured: that one line was 7.6 % of a crawl process's time).
    weights: dict[str, float | None] = field(default_factory=dict)


_WEIGHTS_MAX = 200_000  # words remembered in `_KeywordModel.weights` before it starts over


_keyword_lock = threading.Lock()
_keyword_model: _KeywordModel | None = None


def _jieba_file(*parts: str) -> Path:
    """A data file of the installed jieba package, found without importing jieba."""
    spec = importlib.util.find_spec("jieba")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("jieba is not installed: keywords need its IDF table")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def _parse_idf(content: str) -> tuple[dict[str, float], float]:
    """jieba's IDF table (`word idf` lines) and its median IDF, as `jieba.analyse.tfidf.IDFLoader` reads them."""
    fields = content.split()
    lines = content.count("\n") + (not content.endswith("\n"))
    if len(fields) != 2 * lines:
        raise RuntimeError("jieba's idf.txt is not one 'word idf' pair per line")
    idf = dict(zip(fields[::2], map(float, fields[1::2]), strict=True))
    return idf, sorted(idf.values())[len(idf) // 2]


def _parse_stop_words(source: str) -> frozenset[str]:
    """`KeywordExtractor.STOP_WORDS` from the source of jieba/analyse/tfidf.py.

    Read, not imported: importing jieba.analyse builds jieba's default extractor (a second parse of
    the IDF table, and jieba.posseg), 0.6 s for 31 English words.
    """
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ClassDef) and node.name == "KeywordExtractor"):
            continue
        for statement in node.body:
            if isinstance(statement, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "STOP_WORDS" for target in statement.targets
            ):
                value = statement.value
                if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "set":
                    value = value.args[0]  # STOP_WORDS = set((...))
                return frozenset(ast.literal_eval(value))
    raise RuntimeError("KeywordExtractor.STOP_WORDS not found in jieba/analyse/tfidf.py")


def _load_keyword_model() -> _KeywordModel:
    """A private jieba-rs segmenter and jieba's IDF table and stop words, made once per process.

    Private segmenter: words other modules add to rjieba's global dictionary must not change our
    keywords, or a retag would see changes that are not there. Nothing is downloaded or written.
    """
    global _keyword_model
    if _keyword_model is not None:
        return _keyword_model
    with _keyword_lock:
        if _keyword_model is None:
            import rjieba

            idf, median = _parse_idf(_jieba_file("analyse", "idf.txt").read_text("utf-8"))
            stop_words = _parse_stop_words(_jieba_file("analyse", "tfidf.py").read_text("utf-8"))
            _keyword_model = _KeywordModel(rjieba.Jieba(), idf, median, stop_words)
        return _keyword_model


def warm_up_keywords() -> None:
    """Load the segmenter and the IDF table now (about 0.5 s of CPU) rather than on the first article."""
    _load_keyword_model()


def _jieba_cut(segmenter: rjieba.Jieba, text: str) -> list[str]:
    """The words jieba 0.42.1's `Tokenizer().cut(text)` (HMM on) gives, cut by jieba-rs."""
    words: list[str] = []
    for index, piece in enumerate(_RJIEBA_ONLY_HAN.split(text)):
        if index % 2:
            words.append(piece)  # a character jieba-rs would join to its neighbours
        elif piece:
            cut = segmenter.cut(piece)
            if _JOINED_BY_CONNECTORS.search(piece):
                cut = [part for word in cut for part in _jieba_hmm_split(word)]
            words.extend(cut)
    return words


def _jieba_hmm_split(word: str) -> list[str]:
    """`word` as jieba's HMM yields it: 2018.3.19 → 2018.3 . 19, a_b → a _ b; other words as they are."""
    if len(word) > 2 and _JOINED_BY_CONNECTORS.fullmatch(word):
        return [part for part in _JIEBA_HMM_SKIP.split(word) if part]
    return [word]


def _tfidf_ranking(words: Iterable[str], model: _KeywordModel) -> list[str]:
    """Words by TF-IDF weight, highest first: `jieba.analyse.TFIDF.extract_tags` step for step.

    Same filter (two characters or more once stripped, not a stop word), frequency × IDF / total with
    the median IDF for unknown words, computed in the same order so the floats are equal, and the
    same stable sort: equal weights keep the order of first occurrence.
    """
    # Counted first, then filtered once per distinct word (jieba filters every occurrence): the same
    # words in the same first-occurrence order with the same counts, at a fraction of the calls.
    weights = model.weights
    counted: list[tuple[str, float, float]] = []
    for word, count in Counter(words).items():
        weight = weights.get(word, -1.0)
        if weight == -1.0:
            if len(word.strip()) >= 2 and word.lower() not in model.stop_words:
                weight = model.idf.get(word, model.median_idf)
            else:
                weight = None
            if len(weights) >= _WEIGHTS_MAX:
                weights.clear()
            weights[word] = weight
        if weight is not None:
            counted.append((word, float(count), weight))
    total = sum(count for _, count, _ in counted)
    freq = {word: count * (weight / total) for word, count, weight in counted}
    return sorted(freq, key=freq.__getitem__, reverse=True)


def _good_keyword(word: str) -> bool:
    word = word.strip()
    return (
        len(word) > 1 and bool(_WORDLIKE.search(word)) and not _NUMBERLIKE.match(word) and word not in KEYWORD_STOPWORDS
    )


def top_keywords(text: str, k: int = 8) -> list[str]:
    """The `k` best jieba TF-IDF keywords of `text`: no numbers, no single characters, no stopwords."""
    if k <= 0 or not text.strip():
        return []
    model = _load_keyword_model()
    # The k * 4 + 10 best are the candidates, as when jieba's extract_tags(topK=k * 4 + 10) gave them:
    # numbers, single characters and stopwords are dropped afterwards.
    return pick_keywords(_tfidf_ranking(_jieba_cut(model.segmenter, text), model)[: k * 4 + 10], k)


def pick_keywords(candidates: Iterable[str], k: int) -> list[str]:
    """The first `k` good keywords of ranked candidates: no numbers, single characters, stopwords or repeats."""
    keywords: list[str] = []
    for word in candidates:
        word = word.strip()
        if _good_keyword(word) and word not in keywords:
            keywords.append(word)
            if len(keywords) == k:
                break
    return keywords


# Keywords are read from the title and the opening of the body: jieba's Python segmenter cost about
# 3 µs per character, the lead of a study article names its subject, and a 10,000-character report
# would otherwise cost 30 ms per article on the crawl's thread (measured on the labelled real pages of
# the shared corpus: 13.4 → 2.4 ms per article, 3/4 of the keywords the same as from the whole text).
# jieba-rs is ten times cheaper, but the limit stays: it decides which keywords an article gets.
KEYWORD_TEXT_CHARS = 1000


def keyword_text(title: str, body_text: str) -> str:
    """What keywords are extracted from: the title and the first `KEYWORD_TEXT_CHARS` of the body."""
    return f"{title}\n{body_text[:KEYWORD_TEXT_CHARS]}"


# --- the whole record ---------------------------------------------------------------


def _merge(primary: Byline | None, secondary: Byline) -> Byline:
    """`primary` with its missing fields taken from `secondary`."""
    if primary is None:
        return secondary
    return Byline(
        unit=primary.unit or secondary.unit,
        positions=primary.positions or secondary.positions,
        author=primary.author or secondary.author,
        unit_text=primary.unit_text or secondary.unit_text,
    )


def compute_tags(
    *,
    title: str,
    body_text: str,
    vocab: Vocabulary,
    byline: str | None = None,
    author: str | None = None,
    source_label: str | None = None,
    item_column: str | None = None,
    owning_unit: str | None = None,
    keyword_count: int = 8,
) -> Tags:
    """Tags from plain values; shared by the tag pipeline (from an item) and retag (from stored rows)."""
    parsed = parse_byline(byline, vocab) if byline and byline.strip() else None
    if parsed is None or parsed.author is None:
        # The spider's byline field may hold only a unit (or nothing): the body's byline line fills in.
        line = find_byline(body_text, title, vocab)
        if line is not None:
            parsed = _merge(parsed, parse_byline(line, vocab))
    if (parsed is None or parsed.author is None or parsed.unit is None) and author and author.strip():
        # The page's author field: a name, a unit, or a short byline of its own. It fills in what
        # the byline line lacks; the account name matches no unit and has no name, so it adds nothing.
        parsed = _merge(parsed, parse_byline(author, vocab))
    return Tags(
        unit=attribute_unit(parsed, source_label, owning_unit, vocab),
        author=parsed.author if parsed else None,
        positions=list(parsed.positions) if parsed else [],
        column=column_for(item_column, title, body_text, vocab),
        topics=score_topics(title, body_text, vocab),
        keywords=top_keywords(keyword_text(title, body_text), keyword_count),
    )


def tag_record(record: Record, vocab: Vocabulary, owning_unit: str | None) -> Tags:
    """Tags of one normalized record; `owning_unit` is the crawled source's unit, if any."""
    item = record.item
    return compute_tags(
        title=record.title or item.title,
        body_text=record.body_text,
        vocab=vocab,
        byline=item.byline,
        author=item.author,
        source_label=item.source_label,
        item_column=item.column if item.in_column else None,
        owning_unit=owning_unit,
    )
