"""Bylines: who wrote an article, with which positions, for which organisation. Pure functions.

Owns reading the credits of an article body: the byline at the top or at the end (organisation +
positions + names, in every shape the column's pages print it), the 「作者系…」 and 「作者单位：…」
notes, 来源 / 供稿 lines, 撰稿 / 文 / 图 credits (authors), the 编辑 / 审核 / 初审… tail (never
authors) and a bracketed sign-off 「（袁源）」; and reading one byline or author field. The spiders
(through `find_byline`) and the tagger (through `read_credits`) use this one reader and the one
vocabulary of `crawler.parsing.positions`.

Organisations are returned as written. Which configured unit they name is the tagger's business;
the optional `is_unit(text)` predicate only helps decide where an organisation ends and a position
starts (市政府办公室 | 党组书记, not 市政府 | 办公室党组书记).

Must not touch the network, the database, the config or the clock. Matching folds the text (NFKC:
full-width spaces, brackets and colons become ASCII) but what is returned are the page's words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from crawler.parsing.positions import (
    AUTHOR_LABELS,
    COMPOUND_SURNAMES,
    EDITOR_LABELS,
    FIELD_LABELS,
    HAN,
    MEDIA_MARKERS,
    NAME_SUFFIXES,
    ORG_ENDINGS,
    POSITION_CORES,
    POSITION_QUALIFIERS,
    SOURCE_LABELS,
    SURNAMES,
    UNIT_ENDINGS,
    alternation,
)

IsUnit = Callable[[str], bool]

# Where a byline was read.
AT_TOP = "top"
AT_END = "end"
IN_NOTE = "note"  # 作者系… / 作者单位：…
IN_FIELD = "field"  # the page's author field


@dataclass(frozen=True)
class Person:
    name: str
    positions: tuple[str, ...] = ()
    org: str | None = None  # the organisation as written, when the byline gives one for this person


@dataclass(frozen=True)
class Byline:
    """One byline as read: its people (named ones only), the lead's organisation and positions."""

    text: str
    people: tuple[Person, ...] = ()
    org: str | None = None
    positions: tuple[str, ...] = ()
    where: str = AT_TOP

    @property
    def names(self) -> list[str]:
        return [person.name for person in self.people]


@dataclass(frozen=True)
class Credits:
    """Everything a body says about who wrote it and where it came from."""

    byline: Byline | None = None
    note: Byline | None = None  # 作者系… / 作者单位：… (an organisation and positions, no name)
    labels: tuple[str, ...] = ()  # organisations named by 来源 / 供稿 lines, in page order
    authors: tuple[str, ...] = ()  # 撰稿 / 文 / 图 credits
    editors: frozenset[str] = field(default_factory=frozenset)  # 编辑 / 审核 / 初审…: never authors
    signoff: tuple[str, ...] = ()  # names in brackets closing the body: 「…。（袁源）」


# --- folding and names ---------------------------------------------------------------------------

_SPACES = re.compile(r"[\s\u3000\u00a0\u200b\ufeff]+")
_DOTS = "·•・．"


@lru_cache(maxsize=4096)  # the reader folds the same few lines of a page several times
def fold(text: str) -> str:
    """The text as matching sees it: NFKC (full-width spaces, brackets, colons and digits to ASCII;
    丨, the bar WeChat credits use as in 「编辑丨李晓」, to |), runs of white space as one space, trimmed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).replace("丨", "|")).strip()


def squash(text: str) -> str:
    """Folded text without any space: how organisation names are compared."""
    return fold(text).replace(" ", "")


_DOTTED_NAME = re.compile(rf"^[{HAN}]{{1,8}}[{_DOTS}][{HAN}]{{1,8}}$")
_HAN_ONLY = re.compile(rf"^[{HAN}]+$")
_NOT_NAMES = frozenset(
    {"编者", "编者按", "来源", "作者", "图片", "摄影", "编辑", "审核", "校对", "供稿", "本文", "全文", "正文"}
    | {"文章", "原文"}
    # Party bodies that start with the surname 党: 「中共张掖市民政局党组」 names no person.
    | {"党组", "党委", "党工委", "党总支", "党支部", "党建", "党校", "党史", "党务", "党课"}
    # Labels of a credit line that start with a surname: 文字, 单位, 时间 (「作者：王立新 单位：…」).
    | {label for label in (*AUTHOR_LABELS, *EDITOR_LABELS, *SOURCE_LABELS, *FIELD_LABELS) if len(label) <= 4}
)
_POSITION_CORE_ANYWHERE = re.compile(alternation(POSITION_CORES))


def is_person_name(token: str) -> bool:
    """A Chinese personal name: a known surname and 2-3 Han characters in all (4 with a compound
    surname), or a minority name written with a middle dot (阿依古丽·买买提)."""
    if not token or token in _NOT_NAMES:
        return False
    if _DOTTED_NAME.match(token):
        return True
    if not _HAN_ONLY.match(token):
        return False
    if len(token) == 4:
        return token.startswith(COMPOUND_SURNAMES)
    if len(token) not in (2, 3) or token[0] not in SURNAMES:
        return False
    return not (_POSITION_CORE_ANYWHERE.search(token) or token.endswith(ORG_ENDINGS))


def looks_like_media(org: str) -> bool:
    """An organisation that reports news (张掖日报, 市融媒体中心) rather than a contributing unit."""
    text = squash(org)
    return any(marker in text for marker in MEDIA_MARKERS[:-3]) or text.endswith(MEDIA_MARKERS[-3:])


def looks_like_unit(org: str) -> bool:
    """An organisation name by its ending (局, 委, 办公室, 中心…), whether or not it is configured."""
    text = squash(org)
    return len(text) >= 2 and text.endswith(UNIT_ENDINGS) and not looks_like_media(text)


# --- one byline line ----------------------------------------------------------------------------

_POSITION = rf"(?:{alternation(POSITION_QUALIFIERS)})*(?:{alternation(POSITION_CORES)})"
_POSITION_WHOLE = re.compile(rf"^{_POSITION}$")
_POSITION_AT_END = re.compile(rf"{_POSITION}$")
_PIECE_SEP = re.compile(r"[、,/;|]+")
_COLON = re.compile(r":")
# Labels and wrappers in front of a byline: 文/, 作者:, 撰稿:, ——.
_LEAD = re.compile(
    r"^(?:[—\-–~_·•■□◆◇●○◎▲△▶►★☆▍▌|]+\s*|(?:本文)?(?:文|作者|撰文|撰稿|执笔|口述)\s*[/|:]\s*|(?:作者|撰稿)\s+)+"
)
_MARKER = re.compile(r"^\s*(?:[—\-–]{1,2}|(?:本文)?(?:文|作者|撰文|撰稿|执笔)\s*[/|:])")
_TRAIL = re.compile(r"[\s。.;!]+$")
_SUFFIX = re.compile(rf"\s*(?:\(\s*(?:{alternation(NAME_SUFFIXES)})\s*\)|(?:{alternation(NAME_SUFFIXES[:2])}))\s*$")
# 「张掖市科学技术局(张掖市地震局)党组书记」: a second, 挂牌 name in brackets inside the organisation.
_SECOND_NAME = re.compile(rf"\(([{HAN}]{{2,20}})\)(?=[{HAN}])")
# 「叶其炎（市科学技术局党组书记、局长）」, 「王立新、李敏（市财政局）」: names, then who they are.
_NAME_FIRST = re.compile(r"^(?P<names>[^(]{2,40}?)\s*\((?P<head>[^()]+)\)$")
# 市委常委 / 县委常委: a member of the Party committee's standing committee; the department named in
# the next position (组织部部长) is the unit: 市委组织部.
_COMMITTEE = re.compile(rf"^(?P<committee>[{HAN}]{{0,4}}[市县区州]委)$")
_DEPARTMENT = re.compile(rf"^(?P<dept>[{HAN}]{{1,6}}?(?:部|委|办))(?:副|常务副)?(?:部长|书记|主任|秘书长)$")

BYLINE_MAX_CHARS = 60


def _unwrap(text: str) -> str:
    text = text.strip()
    while len(text) >= 2 and text[0] in "(【[" and text[-1] in ")】]" and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    return text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        if char in "(【[":
            depth += 1
        elif char in ")】]":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def clean_byline(line: str) -> str:
    """A folded byline without its wrapper: brackets around it, 文/, 作者:, ——, 执笔, end punctuation."""
    text = _unwrap(fold(line))
    text = _LEAD.sub("", text)
    text = _TRAIL.sub("", text)
    text = _SUFFIX.sub("", text)
    return text.strip()


@dataclass
class _Draft:
    org: str | None = None
    positions: list[str] = field(default_factory=list)
    name: str | None = None


def _split_head_piece(piece: str, is_unit: IsUnit | None) -> tuple[str | None, str | None]:
    """(organisation, position) of one piece such as 「市总工会常务副主席」.

    Every split whose right side is a whole position is a candidate; the organisation that is a
    configured unit wins (the longest), else the shortest organisation that ends like one
    (市总工会 | 常务副主席, not 市总 | 工会常务副主席).
    """
    cuts = [i for i in range(len(piece)) if _POSITION_WHOLE.match(piece[i:])]
    if not cuts:
        return piece, None
    if is_unit is not None:
        units = [i for i in cuts if i > 0 and is_unit(piece[:i])]
        if units:
            cut = max(units)
            return piece[:cut], piece[cut:]
    if cuts[0] == 0:
        return None, piece
    for cut in cuts:
        if piece[:cut].endswith(ORG_ENDINGS):
            return piece[:cut], piece[cut:]
    return piece[: cuts[0]], piece[cuts[0] :]


def _read_head(pieces: Sequence[str], is_unit: IsUnit | None) -> _Draft:
    """Organisation and positions from the words before a name: 「市财政局党组书记、局长」."""
    draft = _Draft()
    for piece in pieces:
        org, position = _split_head_piece(piece, is_unit)
        if position is None:
            # No position word: an organisation (or the second half of one split by a space).
            draft.org = org if draft.org is None else draft.org + (org or "")
        elif org is None:
            draft.positions.append(position)
        elif draft.org is None:
            draft.org = org
            draft.positions.append(position)
        else:
            # A position in another organisation (兼任) or a department: keep it whole.
            draft.positions.append(piece)
    _committee_department(draft)
    return draft


def _committee_department(draft: _Draft) -> None:
    """「市委常委、组织部部长」: the positions are 市委常委 and 组织部部长, the unit is 市委组织部."""
    committee = _COMMITTEE.match(draft.org or "")
    if committee is None or "常委" not in draft.positions:
        return
    prefix = committee.group("committee")
    draft.positions = [f"{prefix}常委" if p == "常委" else p for p in draft.positions]
    for position in draft.positions:
        department = _DEPARTMENT.match(position)
        if department is not None and not position.startswith(prefix):
            draft.org = prefix + department.group("dept")
            return


def _split_trailing_name(token: str, is_unit: IsUnit | None) -> tuple[str, str] | None:
    """「局长叶其炎」 → ("局长", "叶其炎"): a name glued to a position or to an organisation."""
    for size in (3, 2, 4):
        if len(token) <= size:
            continue
        head, name = token[:-size], token[-size:]
        if not is_person_name(name):
            continue
        if _POSITION_AT_END.search(head) or (is_unit is not None and is_unit(head)):
            return head, name
    return None


def _tokens(text: str) -> list[str]:
    """Space-separated tokens; single characters in a row (马　军, a name padded to the width of a
    three-character one) are joined back into one name."""
    raw = [t for t in _COLON.sub(" ", text).split(" ") if t]
    tokens: list[str] = []
    index = 0
    while index < len(raw):
        run = index
        while run < len(raw) and len(raw[run]) == 1 and _HAN_ONLY.match(raw[run]):
            run += 1
        if run - index >= 2 and is_person_name("".join(raw[index:run])):
            tokens.append("".join(raw[index:run]))
            index = run
        else:
            tokens.append(raw[index])
            index += 1
    return tokens


def _drafts(text: str, is_unit: IsUnit | None) -> list[_Draft]:
    name_first = _NAME_FIRST.match(text)
    if name_first:
        names = [p for token in _tokens(name_first.group("names")) for p in _PIECE_SEP.split(token) if p]
        if names and len(names) <= 4 and all(is_person_name(name) for name in names):
            # 「王立新（市财政局党组书记 局长）」: a space parts the positions as 、 does
            head_pieces = [p for token in _tokens(name_first.group("head")) for p in _PIECE_SEP.split(token) if p]
            head = _read_head(head_pieces, is_unit)
            # Several people share the organisation; a position is only sure to be one person's.
            return [
                _Draft(org=head.org, positions=head.positions if len(names) == 1 else [], name=name) for name in names
            ]
    drafts: list[_Draft] = []
    pending: list[str] = []
    # A piece is a name, a head (organisation and/or position), or a head with a name glued on
    # (局长叶其炎). A name closes the person.
    pieces = [piece for token in _tokens(text) for piece in _PIECE_SEP.split(token) if piece]
    for piece in pieces:
        if is_person_name(piece):
            draft = _read_head(pending, is_unit)
            draft.name = piece
        else:
            split = _split_trailing_name(piece, is_unit)
            if split is None:
                pending.append(piece)
                continue
            draft = _read_head([*pending, split[0]], is_unit)
            draft.name = split[1]
        drafts.append(draft)
        pending = []
    if pending:
        tail = _read_head(pending, is_unit)
        if drafts and len(drafts) == 1 and drafts[0].org is None and not drafts[0].positions:
            # 「叶其炎，市科学技术局党组书记、局长」: the name came first.
            drafts[0].org, drafts[0].positions = tail.org, tail.positions
        else:
            drafts.append(tail)
    return drafts


def parse_byline(line: str, is_unit: IsUnit | None = None, *, where: str = AT_TOP) -> Byline:
    """The people, organisation and positions of one byline such as 「市科学技术局党组书记、局长 叶其炎」.

    Several people (「市财政局党组书记、局长 王立新　副局长 李敏」) are all kept; the organisation is
    the first one written, and the positions are those of the people of that organisation (or of
    none), in order, without repeats. A line with no name gives a `Byline` with no people.
    """
    text = clean_byline(line)
    if not text or len(text) > BYLINE_MAX_CHARS:
        return Byline(text=line.strip(), where=where)  # a paragraph, not a byline
    text = _SECOND_NAME.sub(lambda m: "" if looks_like_unit(m.group(1)) else m.group(0), text)
    drafts = _drafts(text, is_unit)
    named = [d for d in drafts if d.name]
    lead = named[0] if named else (drafts[0] if drafts else _Draft())
    org = lead.org or next((d.org for d in drafts if d.org), None)
    positions: list[str] = []
    for draft in drafts:
        if draft.org is not None and draft.org != org:
            continue  # someone from another organisation: their titles are not this unit's
        for position in draft.positions:
            if position not in positions:
                positions.append(position)
    people = tuple(Person(name=d.name, positions=tuple(d.positions), org=d.org) for d in named if d.name)
    return Byline(text=line.strip(), people=people, org=org, positions=tuple(positions), where=where)


def is_byline(byline: Byline, line: str, is_unit: IsUnit | None = None) -> bool:
    """Whether a parsed line really is a byline: a name after a position, an organisation that looks
    like one (or is configured), or a label (文/, ——); a bare name needs the caller's context."""
    if not byline.people:
        return False
    if byline.positions or _MARKER.match(fold(line)):
        return True
    return byline.org is not None and (looks_like_unit(byline.org) or (is_unit is not None and is_unit(byline.org)))


def names_only(line: str) -> list[str]:
    """The names of a line made only of 1-4 personal names (「叶其炎」, 「刘文博　高远」), else []."""
    text = clean_byline(line)
    tokens = _tokens(text)
    if not 1 <= len(tokens) <= 4:
        return []
    pieces = [piece for token in tokens for piece in _PIECE_SEP.split(token) if piece]
    return pieces if pieces and all(is_person_name(p) for p in pieces) else []


# --- credit lines: 编辑/审核, 撰稿/文/图, 来源/供稿 ---------------------------------------------------

_LABEL = re.compile(
    rf"^(?P<label>{alternation((*AUTHOR_LABELS, *EDITOR_LABELS, *SOURCE_LABELS))})(?:\s*(?:[:/]|\s|(?=[“\"「『]))\s*(?P<value>.*))?$"
)
_SEGMENT_SEP = re.compile(r"\s*[|]\s*|\s+")
# 「文/图：」, 「图/文」, 「文字、图片：」: author labels written together, read as the first one.
_AUTHOR_LABEL = alternation(AUTHOR_LABELS)
_LABEL_RUN = re.compile(rf"^(?P<first>{_AUTHOR_LABEL})(?:\s*[、/&]\s*(?:{_AUTHOR_LABEL}))+(?=\s*[:|]|\s|$)")
_FIELD = re.compile(rf"^(?:{alternation(FIELD_LABELS)})\s*[:|]")
_SUPPLIED = re.compile(rf"^(?P<org>[{HAN}()]{{2,30}}?)\s*(?:供稿|供图|提供)$")
# 「市财政局供稿」 as one part among labelled ones (「（市财政局供稿　撰稿：王立新）」); not 提供, a verb of prose.
_SUPPLIED_PART = re.compile(rf"^(?P<org>[{HAN}()]{{2,30}}?)(?:供稿|供图)$")


# Cheap tests on the line as written, before folding it.
_LABEL_FIRST = re.compile(rf"^[\s(（【\[]*(?:{alternation((*AUTHOR_LABELS, *EDITOR_LABELS, *SOURCE_LABELS))})")
_SUPPLIED_END = re.compile(
    r"(?:供稿|供图|提供)\s*[)）】\]。.]?\s*$|^[\s(（【\[]*[^\s:：]{2,30}?(?:供稿|供图)[\s\u3000]"
)


@dataclass
class _CreditLine:
    authors: list[str] = field(default_factory=list)
    editors: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


def read_credit_line(line: str) -> _CreditLine | None:
    """The credits of a line made only of labelled parts, e.g. 「编辑：李晓｜审核：许文杰」,
    「初审：A 复审：B 终审：C」, 「文/张三 图/李四」, 「来源：市教育局」, 「市民政局供稿」; else None."""
    if len(line) > 2 * LONG_LINE or not (_LABEL_FIRST.match(line) or _SUPPLIED_END.search(line)):
        return None  # every credit line starts with a label or ends with 供稿: no need to fold the rest
    text = _unwrap(fold(line))
    if not text or len(text) > 80:
        return None
    supplied = _SUPPLIED.match(text)
    if supplied is not None:
        return _CreditLine(labels=[supplied.group("org")])
    text = _LABEL_RUN.sub(lambda m: m.group("first"), text)
    result = _CreditLine()
    current: list[str] | None = None
    ignored: list[str] = []  # the values of other fields (时间：…)
    credited: list[list[str]] = []  # what each author label names, label by label
    suppliers: list[str] = []  # 「市财政局供稿」 among the parts
    for segment in (s for s in _SEGMENT_SEP.split(text) if s):
        if _FIELD.match(segment):
            current = ignored
            continue
        labelled = _LABEL.match(segment)
        if labelled is not None:
            # 「来源 | 市财政局」: a label alone, its value in the next segment
            label, value = labelled.group("label"), (labelled.group("value") or "").strip()
            if label in SOURCE_LABELS:
                current = result.labels
            elif label in EDITOR_LABELS:
                current = result.editors
            else:
                current = []
                credited.append(current)
            if value:
                current.extend(p for p in _PIECE_SEP.split(value) if p)
            continue
        part = _SUPPLIED_PART.match(segment)
        if part is not None:
            suppliers.append(part.group("org"))
            current = None  # what follows needs a label of its own
            continue
        if current is None:
            return None
        current.extend(p for p in _PIECE_SEP.split(segment) if p)
    # 「文/图：市财政局」, 「图文：市财政局」: the unit made the article and names no person; as a label,
    # also beside a person under another label (「文字：市财政局　图片：李敏」). Each its own label: joined
    # to a 来源 before it (「来源：临溪机关党建　作者：市财政局」) the account's name would read as a place
    # in front of the unit's. Under one label a unit with a person (「文/市财政局 张三」) is a byline.
    makers: list[str] = []
    for names in credited:
        if names and all(looks_like_unit(_strip_suffix(name)) for name in names):
            makers.extend(_strip_suffix(name) for name in names)
        else:
            result.authors.extend(names)
    if not (result.authors or result.editors or result.labels or makers or suppliers):
        return None
    # Authors and editors are people: a part that is no name (an organisation after 文/ with a name
    # after it) means the line is a byline with a label, not a credit line.
    if any(not is_person_name(_strip_suffix(name)) for name in (*result.authors, *result.editors)):
        return None
    result.authors = [_strip_suffix(name) for name in result.authors]
    result.labels = ([" ".join(result.labels)] if result.labels else []) + makers + suppliers
    return result


def _strip_suffix(name: str) -> str:
    return _SUFFIX.sub("", name).strip()


# --- a whole body -------------------------------------------------------------------------------

_NOTE = re.compile(r"作者(?:系|为|是|现任|单位\s*[:为是]?)\s*(?P<value>[^()]{2,60}?)\s*[)。]?\s*$")
# 「作者简介：叶其炎，市科学技术局党组书记、局长。」 at the end: a name-first byline.
_PROFILE = re.compile(r"^\(?作者简介\s*[:]\s*(?P<value>.{2,80}?)[)。]?$")
_SIGNOFF = re.compile(
    rf"\(\s*(?:(?:本报|本台)?(?:记者|评论员|通讯员)\s*)?(?P<names>[{HAN}{_DOTS} ,、]{{2,30}}?)\s*\)\s*$"
)
_SKIP_LINE = re.compile(
    r"^[【\[(]?\s*(?:编者按|编者的话|编前语|按[:]|导读|摘要|发布|时间|日期|浏览|阅读|字号|点击|图[:]|摄影[:]|"
    r"转自|转载|原标题|关注|长按|扫码|点击)"
)
_SENTENCE = re.compile(r"[。!?;:,“”\"]")
# Lines longer than this (as written) are paragraphs, never a byline or a credit line: they are
# not folded at all (folding a long paragraph costs more than reading every short line).
LONG_LINE = 60
HEAD_LINES = 8
TAIL_LINES = 6


def _body_lines(body_text: str, title: str) -> list[str]:
    """The lines a byline can stand on: the first `HEAD_LINES` and the last `TAIL_LINES` non-empty
    lines that are not the title repeated (the middle of a long article is never folded or read)."""
    squashed_title = squash(title)

    def kept(raw: str) -> str | None:
        line = raw.strip()
        if not line:
            return None
        if len(line) > LONG_LINE and len(line) > 2 * len(title) + 10:
            return line  # a paragraph, not the title repeated
        squashed = squash(line)
        if squashed_title and len(squashed) >= 4 and (squashed in squashed_title or squashed_title in squashed):
            return None  # the title (or half of a title split over two lines) repeated in the body
        return line

    raw_lines = body_text.splitlines()
    head: list[str] = []
    consumed = len(raw_lines)
    for number, raw in enumerate(raw_lines, 1):
        line = kept(raw)
        if line is not None:
            head.append(line)
            if len(head) > HEAD_LINES:
                consumed = number
                break
    if consumed == len(raw_lines):
        return head  # a short body: every line
    tail: list[str] = []
    for raw in reversed(raw_lines[consumed:]):
        line = kept(raw)
        if line is not None:
            tail.append(line)
            if len(tail) == TAIL_LINES:
                break
    return [*head, *reversed(tail)]


def _top_byline(lines: Sequence[str], note: Byline | None, is_unit: IsUnit | None) -> Byline | None:
    head = lines[:HEAD_LINES]
    paragraphs = 0  # long lines passed: an unlabelled lead-in may stand above the byline, the text not
    for index, line in enumerate(head):
        if len(line) > LONG_LINE:
            if _SKIP_LINE.match(fold(line[:16])):
                continue  # a long 编者按 is no paragraph of the text
            paragraphs += 1
            if paragraphs >= 2:
                break
            continue
        folded = fold(line)
        if _SKIP_LINE.match(folded) or read_credit_line(line) is not None:
            continue
        if len(folded) > 50:
            paragraphs += 1
            if paragraphs >= 2:
                break
            continue
        in_text = paragraphs > 0
        byline = parse_byline(line, is_unit)
        if is_byline(byline, line, is_unit):
            return _with_following(byline, head[index + 1 : index + 3], is_unit)
        nxt = head[index + 1] if index + 1 < len(head) else ""
        if not byline.people and (byline.positions or (byline.org and is_unit and is_unit(byline.org))) and nxt:
            # 「市科学技术局党组书记、局长」 on one line, 「叶其炎」 on the next.
            names = names_only(nxt)
            if names and len(folded) <= 30:
                joined = parse_byline(f"{line} {' '.join(names)}", is_unit)
                if joined.people:
                    return replace(joined, text=f"{line.strip()}\n{nxt.strip()}")
        names = names_only(line)
        if len(names) == 1 and nxt and _unwrap(fold(nxt)) != fold(nxt):
            # 「叶其炎」 on one line, 「（市科学技术局党组书记、局长）」 on the next.
            joined = parse_byline(f"{names[0]}({_unwrap(fold(nxt))})", is_unit)
            if joined.people and (joined.org or joined.positions):
                return replace(joined, text=f"{line.strip()}\n{nxt.strip()}")
        if names and not in_text and (index < 4 or note is not None) and not _SENTENCE.search(folded):
            # A line of names only, near the top (or with a 作者系 note at the end saying who they are).
            return Byline(text=line.strip(), people=tuple(Person(name=n) for n in names))
    return None


def _with_following(byline: Byline, following: Sequence[str], is_unit: IsUnit | None) -> Byline:
    """A byline with the people of the bylines printed right under it (one author per line:
    「市财政局党组书记、局长 严卫国」 then 「市财政局副局长 李帆」)."""
    people = list(byline.people)
    positions = list(byline.positions)
    lines = [byline.text]
    for line in following:
        folded = fold(line)
        if len(folded) > 50 or _SKIP_LINE.match(folded) or read_credit_line(line) is not None:
            break
        more = parse_byline(line, is_unit)
        if not (is_byline(more, line, is_unit) and (more.positions or more.org)):
            break
        people.extend(p for p in more.people if p.name not in {q.name for q in people})
        if more.org in (None, byline.org):
            positions.extend(p for p in more.positions if p not in positions)
        lines.append(line.strip())
    if len(lines) == 1:
        return byline
    return replace(byline, text="\n".join(lines), people=tuple(people), positions=tuple(positions))


def _end_byline(lines: Sequence[str], is_unit: IsUnit | None) -> Byline | None:
    for line in reversed(lines[-TAIL_LINES:]):
        if len(line) > LONG_LINE:
            continue
        folded = fold(line)
        if len(folded) > 50 or _SKIP_LINE.match(folded) or read_credit_line(line) is not None:
            continue
        byline = parse_byline(line, is_unit, where=AT_END)
        if byline.people and (byline.positions or byline.org) and is_byline(byline, line, is_unit):
            return byline
    return None


def _note(lines: Sequence[str], is_unit: IsUnit | None) -> Byline | None:
    for line in reversed(lines[-TAIL_LINES:]):
        if "作者" not in line:
            continue
        profile = _PROFILE.match(fold(line))
        if profile is not None:
            first = re.split(r"[。;]", profile.group("value"))[0]
            read = parse_byline(_without_bio(first), is_unit, where=IN_NOTE)
            if read.people and (read.org or read.positions):
                return replace(read, text=line.strip())
        found = _NOTE.search(fold(line))
        if found is None:
            continue
        value = found.group("value").strip()
        draft = _read_head([p for p in _PIECE_SEP.split(value.replace(" ", "")) if p], is_unit)
        org = draft.org if draft.org is not None else None
        if org is None and not draft.positions:
            continue
        return Byline(text=line.strip(), org=org, positions=tuple(draft.positions), where=IN_NOTE)
    return None


# What a 作者简介 says besides who the author is: 男, 汉族, 1972年生, 甘肃张掖人, 中共党员, 研究生学历,
# 1995年参加工作. Dropped before the rest is read as a name-first byline; 现任 / 系 before a post too.
_BIO_PIECE = re.compile(
    rf"^(?:男|女|[{HAN}]{{1,3}}族|\d{{4}}年(?:\d{{1,2}}月)?(?:出生|生人|生)|[{HAN}]{{2,8}}人|"
    rf"(?:中共|中国共产党)?(?:预备)?党员|[{HAN}]{{0,8}}(?:学历|学位|研究生|硕士|博士|学士|本科|大专)|"
    rf"\d{{4}}年(?:\d{{1,2}}月)?(?:参加工作|入党|毕业[{HAN}]{{0,12}}))$"
)
_NOW_HOLDS = re.compile(r"^(?:现任|现为|系|任)")


def _without_bio(text: str) -> str:
    kept = []
    for index, piece in enumerate(re.split(r"\s*,\s*", text)):
        # the first piece is the name (「王立人，男，…」 is a person, not a home town)
        if index and _BIO_PIECE.match(piece) and not _POSITION_WHOLE.match(piece):
            continue
        kept.append(_NOW_HOLDS.sub("", piece))
    return ",".join(kept)


# A unit's own signature at the end is one of the last lines (the date may follow it), made of its
# name alone.
SIGNATURE_LINES = 3
_ORG_ONLY = re.compile(rf"^[{HAN}()]{{3,24}}$")
_DATE_LINE = re.compile(r"^\d{4}\s*(?:年\s*\d{1,2}\s*月\s*\d{1,2}\s*日|[-./]\d{1,2}[-./]\d{1,2})$")
# A body of the unit signing as a whole: 「中共张掖市民政局党组理论学习中心组」, 「市财政局机关党委」.
_COLLECTIVE = re.compile(
    rf"^(?P<org>[{HAN}()]{{2,30}}?)(?:机关)?(?:第[一二三四五六七八九十]{{1,3}})?"
    rf"(?:党组|党委|党工委|党总支|党支部)(?:理论学习中心组|中心组)?$"
)


def _credit_places(lines: Sequence[str]) -> list[tuple[str, str]]:
    """The lines credits stand on, with where: the first `HEAD_LINES` and the last `TAIL_LINES`."""
    return [(AT_TOP, line) for line in lines[:HEAD_LINES]] + [
        (AT_END, line) for line in lines[max(HEAD_LINES, len(lines) - TAIL_LINES) :]
    ]


def _collective(lines: Sequence[str], is_unit: IsUnit | None) -> Byline | None:
    """A line near the top or at the end that signs the article for a Party body of a unit (no
    person), or the unit itself signing at the end (落款: 「张掖市财政局」, then perhaps the date):
    the unit, with no authors."""
    for where, line in _credit_places(lines):
        if len(line) > 40:
            continue
        text = clean_byline(line).replace(" ", "")
        found = _COLLECTIVE.match(text)
        if found is not None:
            org = found.group("org")
            if looks_like_unit(org) or (is_unit is not None and is_unit(org)):
                return Byline(text=line.strip(), org=org, where=where)
    # The signature names a configured unit and nothing else, with the date under it, or in brackets
    # as the last line. A unit's name alone at the end may be a footer (the account's publisher).
    tail = lines[-SIGNATURE_LINES:]
    for index, line in enumerate(tail):
        text, folded = clean_byline(line).replace(" ", ""), fold(line)
        dated = index + 1 < len(tail) and _DATE_LINE.match(fold(tail[index + 1])) is not None
        bracketed = index == len(tail) - 1 and folded.startswith("(") and folded.endswith(")")
        if not (dated or bracketed) or not _ORG_ONLY.match(text):
            continue
        if looks_like_unit(text) and is_unit is not None and is_unit(text):
            return Byline(text=line.strip(), org=text, where=AT_END)
    return None


def _signoff(lines: Sequence[str]) -> tuple[str, ...]:
    for line in lines[-3:][::-1]:
        if not line.rstrip().endswith((")", "）")):
            continue
        found = _SIGNOFF.search(fold(line))
        if found is None:
            continue
        names = [n for n in re.split(r"[ ,、]+", found.group("names")) if n]
        if names and all(is_person_name(n) for n in names):
            return tuple(names)
    return ()


def read_credits(body_text: str, title: str = "", is_unit: IsUnit | None = None) -> Credits:
    """Who the body says wrote it, with which positions, and which organisation supplied it."""
    lines = _body_lines(body_text, title)
    authors: list[str] = []
    editors: set[str] = set()
    labels: list[str] = []
    for _, line in _credit_places(lines):
        credit = read_credit_line(line)
        if credit is None:
            continue
        authors.extend(a for a in credit.authors if a not in authors)
        editors.update(credit.editors)
        labels.extend(credit.labels)
    note = _note(lines, is_unit)
    byline = _top_byline(lines, note, is_unit) or _end_byline(lines, is_unit)
    if byline is None and note is None:
        note = _collective(lines, is_unit)
    return Credits(
        byline=byline,
        note=note,
        labels=tuple(labels),
        authors=tuple(authors),
        editors=frozenset(editors),
        signoff=_signoff(lines),
    )


def _is_head_line(line: str, title: str) -> bool:
    """Whether a line at the top of a body only says what the article is or who wrote it: the title
    or a banner again, a byline, a line of names, a 来源 / 作者 / 编辑 line, a date."""
    if squash(line) == squash(title):
        return True
    if len(line) > LONG_LINE:
        return False
    if read_credit_line(line) is not None:
        return True
    byline = parse_byline(line)
    if is_byline(byline, line) or names_only(line):
        return True
    return not _SENTENCE.search(fold(line)) and len(squash(line)) <= 30  # a banner, heading or date


def text_start(body_text: str, title: str = "") -> str:
    """The body from its first line of text on, for an excerpt: without the lines above it that only
    name the column, the author or the source (「市财政局党组书记、局长 王立新」, 「来源：市民政局」,
    「田立伟」). The body as it is when its first lines are all such lines."""
    lines = body_text.split("\n")
    for index, raw in enumerate(lines[:HEAD_LINES]):
        line = raw.strip()
        if line and not _is_head_line(line, title):
            return "\n".join(lines[index:]).strip() if index else body_text
    return body_text


def find_byline(body_text: str, title: str = "", is_unit: IsUnit | None = None) -> str | None:
    """The byline of a body as printed (one line, or two when the name stands on its own line)."""
    credits = read_credits(body_text, title, is_unit)
    if credits.byline is not None:
        return credits.byline.text
    return credits.note.text if credits.note is not None else None


def author_names(credits: Credits) -> list[str]:
    """The authors a body names, in order: the byline's people, then 撰稿/文/图 credits, else a
    sign-off. Names found only in the 编辑/审核 tail are never authors; a person who signed the
    byline and also reviewed the post (a small office's 副书记) stays an author."""
    names: list[str] = []
    if credits.byline is not None:
        names.extend(credits.byline.names)
    elif credits.note is not None:
        names.extend(credits.note.names)  # 「作者简介：叶其炎，…」
    names.extend(credits.authors)
    if not names:
        names.extend(credits.signoff)
    unique: list[str] = []
    for name in names:
        if name not in unique:
            unique.append(name)
    return unique
