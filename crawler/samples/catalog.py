"""The dated sample world: the content placed in time and in URL space, and its ground truth.

Owns turning `content` (offsets in days) into concrete datetimes for one anchor date, the identity of
every page (WeChat msgid/idx/sn/chksm, site paths and document ids), the order of every list, and
`expected_truth()`. Pure: no HTTP, no HTML (the page modules render from a `Catalog`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crawler.keys import site_key, wechat_key
from crawler.samples.content import (
    ALBUM_ID,
    BIZ,
    COLUMN,
    COLUMN_KEYWORDS,
    EDITS,
    IMAGE_SHARE,
    SITE_PLACEMENTS,
    STORIES,
    TEXT_SHARE,
    WECHAT_PUSHES,
    Story,
    Writer,
    expected_authors,
    expected_unit,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
WECHAT_SOURCE_KEY = "wechat-album"
FIRST_MSGID = 2247483720
DELETED_MSGID = 2247483651  # an old post, not in the album, deleted by its publisher


def _latest_time_of_day() -> timedelta:
    """How late in its day the latest sample of the anchor day is published, plus a minute for the
    seconds a WeChat article page's time runs after its album entry (`WechatItem.ct`)."""
    times = [s.time for s in STORIES if s.days_ago == 0]
    times += [p.time for placements in SITE_PLACEMENTS.values() for p in placements if p.days_ago == 0]
    hour, minute = (int(part) for part in max(times, default="00:00").split(":"))
    return timedelta(hours=hour, minutes=minute + 1)


def anchor_at(now: datetime) -> date:
    """The anchor ("today") of the sample dates for a demo running at `now` (tz-aware): today in
    Asia/Shanghai once the anchor day's latest sample time has passed, else yesterday. So no sample
    is ever dated after `now`, at any hour: before 09:01 the 09:00 post of "today" would be in the
    future, and a crawl would store a story dated ahead of its fetch."""
    if now.tzinfo is None:
        raise ValueError("now must be tz-aware")
    return (now.astimezone(SHANGHAI) - _latest_time_of_day()).date()


def current_anchor() -> date:
    """`anchor_at` the clock's now: what the sample server and the demo use by default."""
    return anchor_at(datetime.now(SHANGHAI))


def at(anchor: date, days_ago: int, hhmm: str) -> datetime:
    hour, minute = (int(part) for part in hhmm.split(":"))
    return datetime.combine(anchor - timedelta(days=days_ago), time(hour, minute), tzinfo=SHANGHAI)


def _hex(seed: str, length: int) -> str:
    out = ""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).hexdigest()
        counter += 1
    return out[:length]


def sn_for(msgid: int, idx: int) -> str:
    return hashlib.md5(f"{BIZ}:{msgid}:{idx}".encode()).hexdigest()  # an id, not security


def article_query(msgid: int, idx: int, chksm: str | None) -> str:
    query = f"__biz={BIZ}&mid={msgid}&idx={idx}&sn={sn_for(msgid, idx)}"
    return f"{query}&chksm={chksm}" if chksm else query


@dataclass(frozen=True)
class SiteSpec:
    """One unit website and its list. `kind` selects the page renderer."""

    code: str
    unit: str  # Unit.code of the owner
    name: str  # the site's name as printed in its header
    kind: str  # "committee" | "hanweb" | "trs" | "gbk" | "labels"
    list_type: str  # the config list type a spider must use
    per_page: int
    list_name: str  # the list's column name as shown on the site
    is_column: bool  # the whole list is the column
    title_include: tuple[str, ...] = ()  # the config's column rule for a mixed list
    column_id: str = ""
    unit_id: str = ""

    @property
    def source_key(self) -> str:
        return f"{self.code}-site"


SITE_SPECS: tuple[SiteSpec, ...] = (
    SiteSpec("jgdj", "jgdj", "临溪机关党建网", "committee", "html", 8, COLUMN, True),
    SiteSpec(
        "kjj",
        "kjj",
        "临溪市科学技术局",
        "hanweb",
        "hanweb_datastore",
        3,
        COLUMN,
        True,
        column_id="1234",
        unit_id="5678",
    ),
    SiteSpec("czj", "czj", "临溪市财政局", "trs", "trs_js_pager", 2, "工作动态", False, title_include=("四中全会",)),
    SiteSpec("jyj", "jyj", "临溪市教育局", "gbk", "html", 3, "教育动态", False),
    SiteSpec("wjw", "wjw", "临溪市卫生健康委员会", "labels", "page_num", 3, "工作动态", False, unit_id="5566"),
)


def spec(code: str) -> SiteSpec:
    for s in SITE_SPECS:
        if s.code == code:
            return s
    raise KeyError(code)


def story(key: str) -> Story:
    for s in STORIES:
        if s.key == key:
            return s
    raise KeyError(key)


@dataclass(frozen=True)
class WechatItem:
    story: Story
    msgid: int
    itemidx: int
    create_time: int  # album: epoch seconds, minute-aligned
    ct: int  # article page: epoch seconds, tens of seconds after create_time (as observed)
    pos_num: int
    show_type: int  # item_show_type: 0 article, 8 image share, 10 text share

    @property
    def sn(self) -> str:
        return sn_for(self.msgid, self.itemidx)

    @property
    def album_chksm(self) -> str:
        return _hex(f"album:{self.msgid}:{self.itemidx}", 76)

    @property
    def page_chksm(self) -> str:
        # The real-world trap: the same article carries a different chksm on its own page.
        return _hex(f"page:{self.msgid}:{self.itemidx}", 76)

    @property
    def published(self) -> datetime:
        return datetime.fromtimestamp(self.ct, SHANGHAI)

    @property
    def key(self) -> str:
        return wechat_key(BIZ, self.msgid, self.itemidx)

    def album_link(self, base: str) -> str:
        return f"{base}/s?{article_query(self.msgid, self.itemidx, self.album_chksm)}#rd"

    def page_link(self, base: str) -> str:
        return f"{base}/s?{article_query(self.msgid, self.itemidx, self.page_chksm)}#rd"


@dataclass(frozen=True)
class SiteItem:
    story: Story
    site: str
    doc_id: int
    path: str  # path (and query) of the article page on the sample server
    href: str  # the link as written in the list page (relative on some sites)
    published: datetime
    title: str
    variant: str  # "full" | "truncated" | "edited"
    original: bool  # the story's first appearance (首发) rather than a repost

    @property
    def paragraphs(self) -> tuple[str, ...]:
        paras = self.story.paragraphs
        if self.variant == "truncated":
            return paras[:-1]
        if self.variant == "edited":
            edited = []
            for para in paras:
                for old, new in EDITS.get(self.story.key, ()):
                    para = para.replace(old, new)
                edited.append(para)
            return tuple(edited)
        return paras


def _site_path(code: str, doc_id: int, d: datetime) -> tuple[str, str]:
    """(path, href as the list writes it) of a site article."""
    if code == "jgdj":
        path = f"/jgdj/content/{d:%Y-%m}/{d:%d}/content_{doc_id}.html"
        return path, path
    if code == "kjj":
        path = f"/kjj/art/{d.year}/{d.month}/{d.day}/art_1234_{doc_id}.html"
        return path, path
    if code == "czj":
        rel = f"{d:%Y%m}/t{d:%Y%m%d}_{doc_id}.html"
        return f"/czj/gzdt/{rel}", f"./{rel}"
    if code == "jyj":
        return f"/jyj/news/show.asp?id={doc_id}", f"show.asp?id={doc_id}"
    if code == "wjw":
        path = f"/wjw/gzdt/{d:%Y%m}/{_hex(f'wjw:{doc_id}', 32)}.shtml"
        return path, path
    raise KeyError(code)


_DOC_BASE = {"jgdj": 3001, "kjj": 5601, "czj": 123401, "jyj": 4501, "wjw": 801}


@dataclass(frozen=True)
class Catalog:
    anchor: date
    hidden: frozenset[str]
    deleted: frozenset[str]
    wechat_all: tuple[WechatItem, ...]  # every WeChat item that exists (not hidden), newest first
    site_all: dict[str, tuple[SiteItem, ...]] = field(default_factory=dict)  # site -> items, newest first

    @property
    def album(self) -> tuple[WechatItem, ...]:
        """The album as listed: newest first; deleted posts drop out of it."""
        return tuple(i for i in self.wechat_all if i.story.key not in self.deleted)

    def site_list(self, code: str) -> tuple[SiteItem, ...]:
        return tuple(i for i in self.site_all.get(code, ()) if i.story.key not in self.deleted)

    def page_count(self, code: str) -> int:
        return max(1, math.ceil(len(self.site_list(code)) / spec(code).per_page))

    def site_page(self, code: str, page: int) -> tuple[SiteItem, ...]:
        """Items of list page `page` (1-based); empty past the end."""
        per = spec(code).per_page
        return self.site_list(code)[(page - 1) * per : page * per]

    def site_item_by_path(self, path: str) -> SiteItem | None:
        for items in self.site_all.values():
            for item in items:
                if item.path == path:
                    return item
        return None

    def wechat_item(self, msgid: int, idx: int) -> WechatItem | None:
        for item in self.wechat_all:
            if item.msgid == msgid and item.itemidx == idx:
                return item
        return None

    def site_last_modified(self, code: str) -> datetime:
        items = self.site_list(code)
        if not items:
            return at(self.anchor, 60, "00:00")
        return max(i.published for i in items)


def build_catalog(
    anchor: date | None = None, hidden: frozenset[str] = frozenset(), deleted: frozenset[str] = frozenset()
) -> Catalog:
    """Place the content in time for `anchor` ("today"). Ids never depend on what is hidden."""
    anchor = anchor or current_anchor()
    wechat: list[WechatItem] = []
    msgid = FIRST_MSGID
    first_push: dict[str, datetime] = {}
    for number, push in enumerate(WECHAT_PUSHES):
        msgid += 3 + (number * 7) % 5  # other pushes of the account fall between album members
        for idx, key in enumerate(push, start=1):
            s = story(key)
            minute = at(anchor, s.days_ago, s.time)
            create_time = int(minute.timestamp())
            first_push[key] = minute
            show_type = {IMAGE_SHARE: 8, TEXT_SHARE: 10}.get(s.kind, 0)
            wechat.append(
                WechatItem(s, msgid, idx, create_time, create_time + 13 + msgid % 41, len(wechat) + 1, show_type)
            )
    wechat_visible = tuple(
        sorted((i for i in wechat if i.story.key not in hidden), key=lambda i: (-i.msgid, i.itemidx))
    )

    site_all: dict[str, tuple[SiteItem, ...]] = {}
    for code, placements in SITE_PLACEMENTS.items():
        dated = sorted(
            ((at(anchor, p.days_ago, p.time), p) for p in placements), key=lambda pair: (pair[0], pair[1].story)
        )
        items: list[SiteItem] = []
        for offset, (published, p) in enumerate(dated):
            doc_id = _DOC_BASE[code] + offset * 7
            path, href = _site_path(code, doc_id, published)
            s = story(p.story)
            original = p.story not in first_push and published == at(anchor, s.days_ago, s.time)
            title = p.title_prefix + s.full_title
            items.append(SiteItem(s, code, doc_id, path, href, published, title, p.variant, original))
        visible = [i for i in items if i.story.key not in hidden]
        site_all[code] = tuple(sorted(visible, key=lambda i: (i.published, i.doc_id), reverse=True))
    return Catalog(anchor, hidden, deleted, wechat_visible, site_all)


# --- ground truth ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TruthAppearance:
    source_key: str
    url: str
    canonical_key: str  # what the spiders must compute: wx:<biz>:<mid>:<idx> or site_key(url)
    published_at: datetime
    title: str  # as shown at this place
    original: bool  # 首发 (the story's first appearance) vs 转载
    variant: str  # "original" | "full" | "truncated" | "edited"
    passes_column_rules: bool  # False when the source's title_include rules reject this link


@dataclass(frozen=True)
class TruthStory:
    key: str
    kind: str  # content.COLUMN_ARTICLE | NEWS | NOTICE | IMAGE_SHARE | TEXT_SHARE
    title: str  # as shown at its first appearance: the 首发 speaks for the story
    unit: str | None  # configured unit name; None: nothing names one (unattributed)
    authors: tuple[Writer, ...]  # in byline order, with their positions
    byline: str | None  # the byline as printed (its top line, else its closing line)
    column: str | None  # the column it is in: it appears in the album or a configured column list
    column_candidate: str | None  # only a title keyword or a source's title filter points at the column
    published_at: datetime  # first appearance
    appearances: tuple[TruthAppearance, ...]

    @property
    def in_column(self) -> bool:
        return self.column is not None

    @property
    def names(self) -> list[str]:
        return [writer.name for writer in self.authors]

    @property
    def author(self) -> str | None:
        """What articles.author holds: the names joined with 「、」."""
        return "、".join(self.names) or None

    @property
    def positions(self) -> list[str]:
        """Every author's positions, in order, without repeats (articles.positions)."""
        seen: list[str] = []
        for writer in self.authors:
            seen.extend(p for p in writer.positions if p not in seen)
        return seen

    @property
    def authors_json(self) -> list[dict[str, Any]]:
        """What articles.authors holds: [{"name": ..., "positions": [...]}]."""
        return [{"name": w.name, "positions": list(w.positions)} for w in self.authors]


@dataclass(frozen=True)
class Truth:
    anchor: date
    base_url: str
    column: str
    stories: tuple[TruthStory, ...]
    deleted_article_url: str  # a WeChat URL whose page says 该内容已被发布者删除
    near_template_pair: tuple[str, str]  # two notices sharing one template: must stay two stories

    def story(self, key: str) -> TruthStory:
        for s in self.stories:
            if s.key == key:
                return s
        raise KeyError(key)

    def story_of_appearance(self) -> dict[str, str]:
        """canonical key of every appearance -> story key (several keys map to one story for reposts)."""
        return {a.canonical_key: s.key for s in self.stories for a in s.appearances}

    def column_stories(self) -> tuple[TruthStory, ...]:
        """The stories in the column (not the candidates)."""
        return tuple(s for s in self.stories if s.in_column)

    def by_source(self, source_key: str) -> tuple[TruthAppearance, ...]:
        return tuple(a for s in self.stories for a in s.appearances if a.source_key == source_key)

    def stored_stories(self) -> tuple[TruthStory, ...]:
        """The stories a full crawl stores: those with at least one appearance the spiders fetch
        (a mixed list's links that fail the source's title rules are not fetched)."""
        return tuple(s for s in self.stories if any(a.passes_column_rules for a in s.appearances))

    @property
    def digest_week(self) -> str:
        """The ISO week a digest sent on the anchor day covers: the previous one."""
        year, week, _ = (self.anchor - timedelta(days=7)).isocalendar()
        return f"{year:04d}-W{week:02d}"

    def summary(self) -> dict[str, Any]:
        """Plain numbers and title maps for end-to-end assertions (titles are unique)."""
        stored = self.stored_stories()
        year, week = (int(part) for part in self.digest_week.split("-W"))
        monday = date.fromisocalendar(year, week, 1)
        return {
            "story_count": len(stored),
            "appearance_count": sum(a.passes_column_rules for s in stored for a in s.appearances),
            "appearances_by_title": {s.title: sum(a.passes_column_rules for a in s.appearances) for s in stored},
            "column_titles": sorted(s.title for s in stored if s.in_column),
            "candidate_titles": sorted(s.title for s in stored if s.column_candidate),
            "non_column_titles": sorted(s.title for s in stored if not s.in_column),
            "unattributed_titles": sorted(s.title for s in stored if s.unit is None),
            "digest_week": self.digest_week,
            "digest_titles": sorted(
                s.title for s in stored if s.in_column and monday <= s.published_at.date() < monday + timedelta(days=7)
            ),
            "near_template_titles": [self.story(k).title for k in self.near_template_pair],
            "deleted_article_url": self.deleted_article_url,
        }

    def __getitem__(self, key: str) -> Any:
        """`truth["story_count"]` etc.: the keys of `summary()`."""
        return self.summary()[key]


def _membership(found: list[TruthAppearance]) -> tuple[str | None, str | None]:
    """(column, candidate) of a story from where it appears: in the column when the album or a
    configured column list shows it (wherever it was first seen); a candidate when only a source's
    title filter or a column title keyword points at it."""
    fetched = [a for a in found if a.passes_column_rules]
    sites = {s.source_key: s for s in SITE_SPECS}
    if any(a.source_key == WECHAT_SOURCE_KEY or sites[a.source_key].is_column for a in fetched):
        return COLUMN, None
    if any(sites[a.source_key].title_include or any(k in a.title for k in COLUMN_KEYWORDS) for a in fetched):
        return None, COLUMN
    return None, None


def truth_from_catalog(catalog: Catalog, base_url: str) -> Truth:
    base = base_url.rstrip("/")
    appearances: dict[str, list[TruthAppearance]] = {}
    for item in catalog.album:
        appearances.setdefault(item.story.key, []).append(
            TruthAppearance(
                WECHAT_SOURCE_KEY,
                item.album_link(base).removesuffix("#rd"),
                item.key,
                item.published,
                item.story.full_title,
                True,
                "original",
                True,
            )
        )
    for code in catalog.site_all:
        s_spec = spec(code)
        for site_item in catalog.site_list(code):
            url = base + site_item.path
            passes = not s_spec.title_include or any(w in site_item.title for w in s_spec.title_include)
            variant = "original" if site_item.original else site_item.variant
            appearances.setdefault(site_item.story.key, []).append(
                TruthAppearance(
                    s_spec.source_key,
                    url,
                    site_key(url),
                    site_item.published,
                    site_item.title,
                    site_item.original,
                    variant,
                    passes,
                )
            )
    stories: list[TruthStory] = []
    for s in STORIES:
        found = sorted(appearances.get(s.key, []), key=lambda a: a.published_at)
        if not found:
            continue  # hidden or deleted everywhere
        column, candidate = _membership(found)
        stories.append(
            TruthStory(
                key=s.key,
                kind=s.kind,
                title=found[0].title,
                unit=expected_unit(s.key),
                authors=expected_authors(s.key),
                byline=s.byline.text() if s.byline else None,
                column=column,
                column_candidate=candidate,
                published_at=found[0].published_at,
                appearances=tuple(found),
            )
        )
    deleted_url = f"{base}/s?{article_query(DELETED_MSGID, 1, _hex('deleted', 76))}"
    return Truth(catalog.anchor, base, COLUMN, tuple(stories), deleted_url, ("wjw-t1", "wjw-t2"))


def expected_truth(base_url: str = "http://127.0.0.1:8000", anchor: date | None = None) -> Truth:
    """Ground truth of the sample sources served at `base_url` for `anchor` (default today, Shanghai):
    which stories exist, where each appears (reposts share a story), column membership, unit, authors."""
    return truth_from_catalog(build_catalog(anchor), base_url)


def album_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/mp/appmsgalbum?__biz={BIZ}&action=getalbum&album_id={ALBUM_ID}"
