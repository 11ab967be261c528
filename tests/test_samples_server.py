"""The bundled sample sources: served structures, paging, encodings, validators, config and truth."""

from __future__ import annotations

import html
import json
import re
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from lxml import etree  # type: ignore[import-untyped]
from lxml import html as lhtml

from crawler.keys import wechat_key, wechat_key_from_url
from crawler.samples import SampleSources, Truth, expected_truth, sample_config_toml
from crawler.samples.catalog import SHANGHAI, WECHAT_SOURCE_KEY, anchor_at, build_catalog, truth_from_catalog
from crawler.samples.content import (
    ACCOUNT_ID,
    ACCOUNT_NAME,
    ALBUM_ID,
    BIZ,
    COLUMN,
    COLUMN_ARTICLE,
    DASH,
    DRAFTER,
    EDIT_THREE,
    EXPECTED,
    FINAL_REVIEWER,
    FORMS,
    GLUED,
    NAME_FIRST,
    NAME_ONLY,
    NOTE,
    PADDED,
    REVIEWER,
    SECOND_NAME,
    SEED,
    STORIES,
    UNIT_NOTE,
    UNITS,
    WECHAT_PUSHES,
)
from crawler.samples.sample_config import TOPIC_MIN_SCORE, TOPICS
from zhuanlan_config import parse_config

ANCHOR = date(2026, 11, 26)  # a Thursday, like the conftest's frozen "now"


@pytest.fixture(scope="module")
def sources() -> Iterator[SampleSources]:
    s = SampleSources(anchor=ANCHOR)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def truth(sources: SampleSources) -> Truth:
    return sources.truth()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:  # 304 and 404 arrive as HTTPError
        return exc.code, dict(exc.headers), exc.read()


def album_json(sources: SampleSources, **params: object) -> dict[str, Any]:
    query = "".join(f"&{k}={v}" for k, v in params.items())
    status, headers, body = fetch(f"{sources.album_url}&f=json{query}")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    data: dict[str, Any] = json.loads(body)
    return data


def as_list(article_list: object) -> list[dict[str, str]]:
    if isinstance(article_list, dict):
        return [article_list]
    assert isinstance(article_list, list)
    return article_list


def all_strings(value: object) -> bool:
    if isinstance(value, dict):
        return all(all_strings(v) for v in value.values())
    if isinstance(value, list):
        return all(all_strings(v) for v in value)
    return isinstance(value, str)


# --- WeChat -----------------------------------------------------------------------------------


def test_album_html_first_screen(sources: SampleSources, truth: Truth) -> None:
    status, _, body = fetch(sources.album_url)
    assert status == 200
    doc = lhtml.fromstring(body.decode("utf-8"))
    items = doc.cssselect("li.album__list-item.js_album_item[data-link]")
    assert len(items) == 10
    album = truth.by_source(WECHAT_SOURCE_KEY)
    newest = sorted(album, key=lambda a: a.published_at, reverse=True)[:10]
    assert {wechat_key_from_url(li.get("data-link")) for li in items} == {a.canonical_key for a in newest}
    for li in items:
        assert li.get("data-msgid") and li.get("data-itemidx") and li.get("data-title")
        create_time = int(li.cssselect("span.js_article_create_time")[0].text_content())
        assert create_time % 60 == 0  # minute-aligned, as observed on real albums
    text = body.decode("utf-8")
    assert "window.cgiData = {" in text and f"albumId: '{ALBUM_ID}'" in text
    assert "continue_flag: '1' * 1" in text
    assert doc.cssselect("#js_tag_name")[0].text_content().strip() == COLUMN
    # a decoy <li> without data-link (the sort switch), as on real album pages
    assert len(doc.cssselect("li")) > len(items)


def test_album_json_pages_to_the_end_with_exclusive_cursor(sources: SampleSources, truth: Truth) -> None:
    expected = {a.canonical_key for a in truth.by_source(WECHAT_SOURCE_KEY)}
    assert len(expected) >= 26
    first = album_json(sources, count=13)
    assert first["base_resp"]["ret"] == 0
    assert all_strings(first["getalbum_resp"])
    assert first["getalbum_resp"]["base_info"]["is_first_screen"] == "1"
    seen: list[str] = []
    page = first
    requests = 1
    while True:
        resp = page["getalbum_resp"]
        entries = as_list(resp["article_list"])
        seen += [wechat_key(BIZ, e["msgid"], e["itemidx"]) for e in entries]
        if resp["continue_flag"] != "1":
            break
        last = entries[-1]
        page = album_json(sources, count=13, begin_msgid=last["msgid"], begin_itemidx=last["itemidx"])
        requests += 1
        assert page["getalbum_resp"]["base_info"] == {"is_first_screen": "0", "service_type": "0"}
        assert page["getalbum_resp"]["reverse_continue_flag"] == "1"
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected
    assert requests == 3
    # 27 items in pages of 13: the last page holds one item, given as an object rather than a list
    assert isinstance(page["getalbum_resp"]["article_list"], dict)
    oldest = page["getalbum_resp"]["article_list"]
    past_end = album_json(sources, count=13, begin_msgid=oldest["msgid"], begin_itemidx=oldest["itemidx"])
    assert "article_list" not in past_end["getalbum_resp"]
    assert past_end["getalbum_resp"]["continue_flag"] == "0"


def test_album_json_multi_article_push_pages_by_itemidx(sources: SampleSources) -> None:
    entries = as_list(album_json(sources, count=20)["getalbum_resp"]["article_list"])
    by_msgid: dict[str, list[str]] = {}
    for e in entries:
        by_msgid.setdefault(e["msgid"], []).append(e["itemidx"])
    msgid, idxs = next((m, i) for m, i in by_msgid.items() if len(i) == 2)
    assert idxs == ["1", "2"]
    after_first = as_list(
        album_json(sources, count=1, begin_msgid=msgid, begin_itemidx="1")["getalbum_resp"]["article_list"]
    )
    assert (after_first[0]["msgid"], after_first[0]["itemidx"]) == (msgid, "2")


def test_album_json_rejects_an_unknown_album(sources: SampleSources) -> None:
    status, _, body = fetch(sources.album_url.replace(ALBUM_ID, "1") + "&f=json")
    assert status == 200 and json.loads(body)["base_resp"]["ret"] != 0


def test_article_page_current_layout(sources: SampleSources, truth: Truth) -> None:
    story = truth.story("kjj-1")
    wx = next(a for a in story.appearances if a.source_key == WECHAT_SOURCE_KEY)
    status, _, body = fetch(wx.url)
    text = body.decode("utf-8")
    assert status == 200
    _, mid, idx = wx.canonical_key.rsplit(":", 2)
    for needle in (
        f'var biz = "{BIZ}"',
        f'var mid = "{mid}"',
        f'var idx = "{idx}"',
        f'var nickname = htmlDecode("{ACCOUNT_NAME}")',
        f'var user_name = "{ACCOUNT_ID}"',
        f"var msg_title = '{story.title}'.html(false);",
        'var item_show_type = "0";',
        "var album_info_list = [",
        f"albumId: '{ALBUM_ID}'",
        "var msg_desc = htmlDecode(",
        'var msg_cdn_url = "https://mmbiz.qpic.cn/',
    ):
        assert needle in text, needle
    ct = int(re.search(r'var ct = "(\d+)";', text).group(1))  # type: ignore[union-attr]
    assert datetime.fromtimestamp(ct, SHANGHAI) == wx.published_at
    msg_link = re.search(r'var msg_link = "([^"]+)";', text).group(1)  # type: ignore[union-attr]
    assert "&amp;" in msg_link  # HTML-escaped, as WeChat writes it
    assert wechat_key_from_url(msg_link) == wx.canonical_key
    # the real-world trap: the album's chksm differs from the page's
    chksm_album = re.search(r"chksm=(\w+)", wx.url).group(1)  # type: ignore[union-attr]
    chksm_page = re.search(r"chksm=(\w+)", msg_link).group(1)  # type: ignore[union-attr]
    assert chksm_album != chksm_page
    doc = lhtml.fromstring(text)
    assert doc.cssselect('meta[property="og:title"]')[0].get("content") == story.title
    assert doc.cssselect('meta[name="author"]')[0].get("content") == story.author
    assert doc.cssselect("h1#activity-name")[0].text_content().strip() == story.title
    content = doc.cssselect("div#js_content.rich_media_content")[0]
    assert content.get("style") == "visibility: hidden; opacity: 0; "
    assert all(img.get("data-src", "").startswith("https://mmbiz.qpic.cn/") for img in content.iter("img"))
    assert not any(img.get("src") for img in content.iter("img"))
    lines = [p.text_content().strip() for p in content.iter("p") if p.text_content().strip()]
    assert lines[0] == story.byline  # the byline is the body's first paragraph


def test_share_pages_are_built_on_cgi_data_new(sources: SampleSources, truth: Truth) -> None:
    for key, show_type in (("share-8", "8"), ("share-10", "10")):
        wx = truth.story(key).appearances[0]
        text = fetch(wx.url)[2].decode("utf-8")
        assert "window.cgiDataNew = {" in text and f"item_show_type: '{show_type}' * 1" in text
        assert 'id="js_content"' not in text and "var ct =" not in text
        assert re.search(r"ori_create_time: '\d+' \* 1", text)
        assert f"bizuin: JsDecode('{BIZ}')" in text
    assert (
        "picture_page_info_list: [\n                    {"
        in fetch(truth.story("share-8").appearances[0].url)[2].decode()
    )


def test_deleted_article_state_page(sources: SampleSources, truth: Truth) -> None:
    doc = lhtml.fromstring(fetch(truth.deleted_article_url)[2].decode("utf-8"))
    assert doc.cssselect(".weui-msg__title")[0].text_content().strip() == "该内容已被发布者删除"


def test_set_deleted_and_hidden_change_what_is_served() -> None:
    s = SampleSources(anchor=ANCHOR)  # no socket: route requests directly
    wx = next(a for a in s.truth().story("mzj-2").appearances if a.source_key == WECHAT_SOURCE_KEY)
    target = wx.url.split("127.0.0.1:0", 1)[1]
    assert b"js_content" in s.respond("GET", target, {}).body
    s.set_deleted("mzj-2")
    assert "该内容已被发布者删除" in s.respond("GET", target, {}).body.decode()
    assert "mzj-2" not in {st.key for st in s.truth().stories}
    album = s.respond("GET", s.album_url.split("127.0.0.1:0", 1)[-1] + "&f=json&count=20", {}).body
    assert b'"itemidx":"2"' not in album.split(b'"msgid":"' + wx.canonical_key.split(":")[2].encode())[1][:400]
    s.set_hidden("wjw-3")
    site = next(a for a in expected_truth("http://127.0.0.1:0", ANCHOR).story("wjw-3").appearances)
    assert s.respond("GET", site.url.split("127.0.0.1:0", 1)[1], {}).status == 404
    s.set_hidden("wjw-3", False)
    assert s.respond("GET", site.url.split("127.0.0.1:0", 1)[1], {}).status == 200


# --- websites ---------------------------------------------------------------------------------


def _links(doc: Any, selector: str, base: str) -> list[str]:
    return [urljoin(base, a.get("href")) for a in doc.cssselect(selector)]


def crawl_site(sources: SampleSources, key: str) -> tuple[list[str], int]:
    """Follow each site's own pagination the way its list type says; (article URLs, list pages)."""
    base = sources.base_url
    urls: list[str] = []
    pages = 0
    if key in ("jgdj-site", "jyj-site"):
        url: str | None = {"jgdj-site": "/jgdj/xxgc/index.html", "jyj-site": "/jyj/news/list.asp"}[key]
        selector = {"jgdj-site": "ul.news-list li a", "jyj-site": "table.news-list a"}[key]
        while url:
            full = urljoin(base, url)
            body = fetch(full)[2]
            doc = lhtml.fromstring(body.decode("gb18030" if key == "jyj-site" else "utf-8"))
            pages += 1
            urls += _links(doc, selector, full)
            nxt = [a.get("href") for a in doc.iter("a") if a.text_content().strip() == "下一页"]
            url = urljoin(full, nxt[0]) if nxt else None
    elif key == "czj-site":
        first = fetch(base + "/czj/gzdt/index.html")[2].decode()
        count = int(re.search(r'createPageHTML\((\d+), 0, "index", "html"\)', first).group(1))  # type: ignore[union-attr]
        for k in range(count):
            full = base + ("/czj/gzdt/index.html" if k == 0 else f"/czj/gzdt/index_{k}.html")
            urls += _links(lhtml.fromstring(fetch(full)[2].decode()), "ul.list li a", full)
            pages += 1
    elif key == "kjj-site":
        text = fetch(base + "/kjj/col/col1234/index.html")[2].decode()
        pages += 1
        while True:
            urls += [base + h for h in re.findall(r'<record><!\[CDATA\[<li><a href="([^"]+)"', text)]
            group = re.search(r'<nextgroup><!\[CDATA\[<a href="([^"]+)"', text)
            if not group:
                break
            text = fetch(base + group.group(1))[2].decode()
            assert re.search(r"<totalpage>\d+</totalpage>", text)
            pages += 1
    elif key == "wjw-site":
        n = 1
        while True:
            full = f"{base}/wjw/gzdt/index.html?uid=5566&pageNum={n}"
            found = _links(lhtml.fromstring(fetch(full)[2].decode()), "ul.news-list li a", full)
            if not found:
                break
            urls += found
            pages += 1
            n += 1
    return urls, pages


@pytest.mark.parametrize("key", ["jgdj-site", "kjj-site", "czj-site", "jyj-site", "wjw-site"])
def test_site_lists_page_through_every_appearance(sources: SampleSources, truth: Truth, key: str) -> None:
    urls, pages = crawl_site(sources, key)
    assert pages >= (3 if key in ("jgdj-site", "czj-site") else 2)
    assert len(urls) == len(set(urls))
    assert set(urls) == {a.url for a in truth.by_source(key)}
    for url in urls[:3]:
        assert fetch(url)[0] == 200


def test_gbk_site_sends_gbk_bytes_without_any_charset(sources: SampleSources, truth: Truth) -> None:
    app = next(a for a in truth.story("jyj-3").appearances if a.source_key == "jyj-site")
    status, headers, body = fetch(app.url)
    assert status == 200 and headers["Content-Type"] == "text/html"
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    text = body.decode("gb18030")
    assert app.title in text and "市教育局机关党委专职副书记 贺思宇" in text
    assert "charset" not in text.lower()
    list_body = fetch(sources.base_url + "/jyj/news/list.asp")[2]
    with pytest.raises(UnicodeDecodeError):
        list_body.decode("utf-8")


def test_labels_site_traps(sources: SampleSources, truth: Truth) -> None:
    lying = next(a for a in truth.story("wjw-n1").appearances)
    _status, headers, body = fetch(lying.url)
    assert "charset" not in headers["Content-Type"]
    text = body.decode("utf-8")  # the bytes are UTF-8 …
    assert 'content="text/html; charset=gb2312"' in text  # … whatever the meta says
    stale = fetch(truth.story("wjw-3").appearances[0].url)[2].decode()
    assert "<!-- <span>来源：临溪日报</span> -->" in stale and "<span>来源：市卫生健康委员会</span>" in stale
    assert "作者：田立伟" in stale and "发布时间：" in stale
    notice = fetch(truth.story("wjw-t1").appearances[0].url)[2].decode()
    assert "成文日期：" in notice and "发布日期：" in notice


def test_hanweb_and_trs_article_structures(sources: SampleSources, truth: Truth) -> None:
    kjj = next(a for a in truth.story("kjj-3").appearances if a.source_key == "kjj-site")
    doc = lhtml.fromstring(fetch(kjj.url)[2].decode())
    assert doc.cssselect('meta[name="ArticleTitle"]')[0].get("content") == kjj.title
    assert doc.cssselect('meta[name="ContentSource"]')[0].get("content") == "市科学技术局"
    assert doc.cssselect('meta[name="PubDate"]')[0].get("content") == f"{kjj.published_at:%Y-%m-%d %H:%M}"
    assert doc.cssselect("#zoom")
    assert "<!--<$[信息来源]>begin-->市科学技术局<!--<$[信息来源]>end-->" in fetch(kjj.url)[2].decode()
    czj = next(a for a in truth.story("czj-1").appearances if a.source_key == "czj-site")
    assert re.search(r"/czj/gzdt/\d{6}/t\d{8}_\d+\.html$", czj.url)
    doc = lhtml.fromstring(fetch(czj.url)[2].decode())
    assert doc.cssselect(".TRS_Editor p") and doc.cssselect('meta[name="PubDate"]')


def test_conditional_requests_get_304(sources: SampleSources) -> None:
    url = sources.base_url + "/czj/gzdt/index.html"
    status, headers, _body = fetch(url)
    assert status == 200 and headers["ETag"] and headers["Last-Modified"]
    assert fetch(url, {"If-None-Match": headers["ETag"]})[0] == 304
    assert fetch(url, {"If-None-Match": '"stale"'})[0] == 200
    assert fetch(url, {"If-Modified-Since": headers["Last-Modified"]})[0] == 304
    earlier = parsedate_to_datetime(headers["Last-Modified"]) - timedelta(hours=1)
    assert fetch(url, {"If-Modified-Since": format_datetime(earlier, usegmt=True)})[0] == 200
    # the GBK list page too (validators are over the bytes actually sent)
    gbk = sources.base_url + "/jyj/news/list.asp?page=2"
    assert fetch(gbk, {"If-None-Match": fetch(gbk)[1]["ETag"]})[0] == 304


def test_robots_txt_allows_everything_and_requests_are_logged(sources: SampleSources) -> None:
    status, _, body = fetch(sources.base_url + "/robots.txt")
    assert status == 200 and b"User-agent: *" in body and b"Disallow: /" not in body
    assert "/robots.txt" in sources.requests_to("/robots.txt")
    assert fetch(sources.base_url + "/nowhere.html")[0] == 404


def test_port_in_use_is_a_clear_error(sources: SampleSources) -> None:
    other = SampleSources(port=sources.port, anchor=ANCHOR)
    with pytest.raises(OSError, match="another process"):
        other.start()


# --- config and ground truth ------------------------------------------------------------------


def test_sample_config_passes_the_config_loader(sources: SampleSources, tmp_path: Path) -> None:
    text = sample_config_toml(sources.base_url, smtp_port=2525, web_port=8089, anchor=ANCHOR)
    config = parse_config(tomllib.loads(text), base_dir=tmp_path)
    assert len(config.units) == len(UNITS) >= 12
    assert {r.unit for r in config.recipients} == {u.name for u in config.units}
    assert all(r.email.endswith("@example.org") for r in config.recipients)
    assert 8 <= len(config.topics) <= 12
    assert config.smtp.port == 2525 and config.smtp.security == "none" and config.web.port == 8089
    assert config.crawl.download_delay_seconds == 0 and config.crawl.obey_robots
    wechat = config.source(WECHAT_SOURCE_KEY)
    assert wechat.kind == "wechat_album" and wechat.options["delay_seconds"] == 0 and wechat.column == COLUMN
    assert config.source("czj-site").options["title_include"] == ["四中全会"]
    for source in config.sources:
        assert fetch(source.url)[0] == 200, source.key
    assert config.data_dir == tmp_path / "data"


def test_truth_has_the_promised_content(truth: Truth) -> None:
    members = truth.column_stories()
    credited = [s for s in members if s.unit is not None and s.authors]
    assert len(credited) >= 28
    assert len({s.unit for s in credited}) >= 13
    on_wechat = [s for s in members if any(a.source_key == WECHAT_SOURCE_KEY for a in s.appearances)]
    assert len(on_wechat) >= 26
    assert len([s for s in truth.stories if not s.in_column]) >= 4
    assert any(len(push) == 2 for push in WECHAT_PUSHES)
    site_only = [s for s in credited if all(a.source_key != WECHAT_SOURCE_KEY for a in s.appearances)]
    assert len(site_only) >= 5
    variants = {a.variant for s in truth.stories for a in s.appearances}
    assert {"original", "full", "truncated", "edited"} <= variants
    # column articles on a unit's mixed list: candidates only (a title keyword or the list's title filter)
    assert {s.key for s in truth.stories if s.column_candidate} == {"czj-3", "jyj-3", "wjw-3"}
    assert all(s.column is None for s in truth.stories if s.column_candidate)
    # album stories nothing names a unit for: unattributed, never the album owner's
    unattributed = {s.key for s in members if s.unit is None}
    assert unattributed == {"swj-2", "share-8", "share-10"}
    # several authors, no authors, editors never
    assert max(len(s.authors) for s in truth.stories) >= 2
    for story in STORIES:
        editors = {story.editor, REVIEWER, *([FINAL_REVIEWER] if story.editing == EDIT_THREE else [])}
        names = set(truth.story(story.key).names)
        # jgdj-2: the work committee's deputy secretary wrote it and is the account's reviewer too
        assert not editors & names or story.key == "jgdj-2", story.key
    # every repost belongs to a story that first appeared elsewhere
    for s in truth.stories:
        assert sum(a.original for a in s.appearances) == 1, s.key
        assert s.appearances[0].original
    # dates: the last ~6 weeks, several in the anchor's ISO week and the one before
    anchor_week = ANCHOR.isocalendar()[:2]
    previous_week = (ANCHOR - timedelta(days=7)).isocalendar()[:2]
    weeks = [s.published_at.date().isocalendar()[:2] for s in credited]
    assert weeks.count(anchor_week) >= 3 and weeks.count(previous_week) >= 3
    assert all(ANCHOR - timedelta(days=43) <= s.published_at.date() <= ANCHOR for s in truth.stories)


def test_every_story_has_ground_truth() -> None:
    assert set(EXPECTED) == {s.key for s in STORIES}
    codes = {u.code for u in UNITS}
    for key, (unit, writers) in EXPECTED.items():
        assert unit is None or unit in codes, key
        assert len({w.name for w in writers}) == len(writers), key
    truth = expected_truth("http://127.0.0.1:9", ANCHOR)
    assert truth.story("czj-1").authors_json == [
        {"name": "郑国平", "positions": ["党组书记", "局长"]},
        {"name": "陆涛", "positions": ["副局长"]},
    ]
    assert truth.story("czj-1").author == "郑国平、陆涛" and truth.story("czj-1").positions == [
        "党组书记",
        "局长",
        "副局长",
    ]
    assert truth.story("swj-2").unit is None and truth.story("swj-2").author is None


# The story that carries each byline form on WeChat and on a unit website (the site prints it its way).
FORM_CARRIERS = {
    SEED: ("kjj-1", "kjj-1"),
    GLUED: ("wjw-1", "wjw-1"),
    PADDED: ("jyj-2", "jyj-2"),
    DASH: ("sfj-1", "sfj-1"),
    DRAFTER: ("jtj-1", "jtj-1"),
    NAME_FIRST: ("kjj-2", "kjj-2"),
    SECOND_NAME: ("zrzyj-2", "kjj-3"),
    NOTE: ("mzj-1", "wjw-3"),
    UNIT_NOTE: ("sthjj-1", "sthjj-1"),
    NAME_ONLY: ("jtj-2", None),
}


def _wechat_page(truth: Truth, key: str) -> tuple[list[str], str]:
    """(lines of #js_content, the author field) of a story's WeChat post."""
    wx = next(a for a in truth.story(key).appearances if a.source_key == WECHAT_SOURCE_KEY)
    doc = lhtml.fromstring(fetch(wx.url)[2].decode("utf-8"))
    content = doc.cssselect("div#js_content")[0]
    lines = [p.text_content().strip() for p in content.iter("p") if p.text_content().strip()]
    author = doc.cssselect('meta[name="author"]')[0].get("content")
    assert doc.cssselect("#js_author_name")[0].text_content().strip() == author
    return lines, author


def _site_text(app: Any) -> str:
    body = fetch(app.url)[2]
    return body.decode("gb18030" if app.source_key == "jyj-site" else "utf-8")


def test_every_byline_form_is_printed_on_wechat_and_on_the_sites(sources: SampleSources, truth: Truth) -> None:
    assert set(FORM_CARRIERS) == set(FORMS)
    by_key = {s.key: s for s in STORIES}
    for form, (on_wechat, on_site) in FORM_CARRIERS.items():
        byline = by_key[on_wechat].byline
        assert byline is not None and byline.form == form
        lines, _author = _wechat_page(truth, on_wechat)
        top, end = byline.top(), byline.end()
        if top:
            assert top in lines[:2], (form, lines[:3])
        if end:
            assert end in lines[-4:], (form, lines[-4:])
        if on_site is None:
            continue
        byline = by_key[on_site].byline
        assert byline is not None and byline.form == form
        for app in (a for a in truth.story(on_site).appearances if a.source_key != WECHAT_SOURCE_KEY):
            text = _site_text(app)
            for sep in (" ", "\u3000"):
                if any(line and html.escape(line) in text for line in (byline.top(sep), byline.end(sep))):
                    break
            else:
                raise AssertionError(f"{form}: no byline of {on_site} on {app.url}")
    assert "高\u3000远" in _wechat_page(truth, "jyj-2")[0][0]
    assert _wechat_page(truth, "zrzyj-2")[0][0] == "临溪市自然资源局（临溪市林业局）党组成员、副局长 潘晓琳"
    committee = next(a for a in truth.story("jgdj-4").appearances)
    assert "市委常委、组织部部长 秦立言" in _site_text(committee)


def test_credit_lines_and_author_fields_on_wechat_pages(sources: SampleSources, truth: Truth) -> None:
    lines, author = _wechat_page(truth, "czj-1")
    assert lines[0] == "市财政局党组书记、局长 郑国平\u3000副局长 陆涛" and author == "郑国平"
    assert lines[-1] == "编辑：李晓\u3000审核：许文杰" and lines[-2] == "来源：市财政局"
    assert _wechat_page(truth, "jyj-1")[0][0] == "市教育局 刘文博 邱敏"
    assert _wechat_page(truth, "czj-2")[0][-1] == "初审：李晓\u3000复审：许文杰\u3000终审：罗建华"
    # 来源 on top, 撰稿 and 编辑｜审核 at the end
    lines, author = _wechat_page(truth, "nyj-2")
    assert lines[0] == "来源：市农业农村局" and lines[-2:] == ["撰稿：严志国", "编辑：李晓｜审核：许文杰"]
    assert not any(line.startswith("来源") for line in lines[1:])
    # 文/ 图/ credits and a 供稿 line, no byline
    lines, author = _wechat_page(truth, "wjw-2")
    assert lines[-3:] == ["文/苏静怡\u3000图/魏然", "市卫生健康委员会供稿", "编辑：李晓\u3000审核：许文杰"]
    # a name only on top: the unit is in the 来源 footer
    lines, author = _wechat_page(truth, "jtj-2")
    assert lines[0] == "方德明" and lines[-2] == "来源：市交通运输局"
    # the author field holds the editor, not the author
    for key in ("zrzyj-1", "swj-1", "mzj-2"):
        lines, author = _wechat_page(truth, key)
        assert author == "李晓" and f"编辑：{author}" in lines[-1], key
        assert author not in truth.story(key).names
    assert _wechat_page(truth, "mzj-2")[0][0] == "来源：市民政局"
    # nothing names a unit: no byline, no 来源 or 供稿 line, the author field is the account
    lines, author = _wechat_page(truth, "swj-2")
    assert author == ACCOUNT_NAME and truth.story("swj-2").unit is None
    assert not any("来源" in line or "供稿" in line for line in lines)
    assert lines[0] == STORIES_BY_KEY["swj-2"].paragraphs[0]


STORIES_BY_KEY = {s.key: s for s in STORIES}
# The column's study articles (kjj-n1 is a meeting report).
STUDY = [s for s in STORIES if s.kind == COLUMN_ARTICLE and s.key != "kjj-n1"]


@pytest.mark.parametrize("story", STUDY, ids=lambda s: s.key)
def test_column_article_shape(story: Any) -> None:
    assert 5 <= len(story.paragraphs) <= 8
    chinese = sum(len(re.findall(r"[\u4e00-\u9fff]", p)) for p in story.paragraphs)
    assert chinese >= 400 and sum(len(p) for p in story.paragraphs) <= 900


@pytest.mark.parametrize("story", [s for s in STORIES if s.byline], ids=lambda s: s.key)
def test_a_byline_names_its_unit_as_configured(story: Any) -> None:
    """The unit a byline prints is the configured name or an alias of the story's expected unit
    (or none: a name only, 市委常委 naming its unit through the position, a newspaper's reporter)."""
    code = EXPECTED[story.key][0]
    label = story.byline.unit_label
    if label in ("", "临溪日报"):
        return
    unit = next(u for u in UNITS if u.code == code)
    assert label in (unit.name, *unit.aliases)
    assert list(story.byline.names) == [w.name for w in EXPECTED[story.key][1]]


def test_topic_vocabulary_has_signal() -> None:
    """Each column article scores on some topic with the sample vocabulary (title hits count 3x)."""
    for story in STUDY:
        text = "".join(story.paragraphs)
        scores = {
            topic: sum(w * (text.count(k) + 3 * story.full_title.count(k)) for k, w in words.items())
            for topic, words in TOPICS.items()
        }
        assert max(scores.values()) >= TOPIC_MIN_SCORE, story.key


def test_near_template_notices_share_most_text_but_differ() -> None:
    first, second = (next(s for s in STORIES if s.key == k) for k in ("wjw-t1", "wjw-t2"))

    def grams(text: str) -> set[str]:
        return {text[i : i + 3] for i in range(len(text) - 2)}

    a, b = grams("".join(first.paragraphs)), grams("".join(second.paragraphs))
    overlap = len(a & b) / min(len(a), len(b))
    assert 0.7 <= overlap < 0.95 and first.title != second.title


def test_expected_truth_is_stable_for_an_anchor() -> None:
    one = expected_truth("http://127.0.0.1:9", ANCHOR)
    two = expected_truth("http://127.0.0.1:9", ANCHOR)
    assert one == two
    keys = one.story_of_appearance()
    reposts = [k for k, story in keys.items() if story == "nyj-1"]
    assert len(reposts) == 2  # WeChat first, the committee site's truncated repost


def test_dataproxy_answers_post_like_hanweb(sources: SampleSources) -> None:
    data = b"col=1&appid=1&webid=21&path=/kjj/&columnid=1234&unitid=5678&permissiontype=0"
    request = urllib.request.Request(
        sources.base_url + "/kjj/module/web/jpage/dataproxy.jsp?startrecord=1&endrecord=3&perpage=3", data=data
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        root = etree.fromstring(response.read())
    assert root.findtext("totalrecord") == "4" and len(root.find("recordset")) == 3


def test_truth_summary_for_end_to_end_assertions() -> None:
    from crawler.samples.server import expected_truth as from_server

    truth = from_server("http://127.0.0.1:9", ANCHOR)
    summary = truth.summary()
    assert len({s.title for s in truth.stories}) == len(truth.stories)  # titles identify stories
    # the TRS list mixes news in: links failing its title rule are never fetched, so never stored
    skipped = [a for a in truth.by_source("czj-site") if not a.passes_column_rules]
    assert len(skipped) == 3
    assert summary["story_count"] == len(truth.stories) - 3 == truth["story_count"]
    assert summary["appearance_count"] == sum(summary["appearances_by_title"].values())
    assert summary["appearances_by_title"][truth.story("kjj-1").title] == 3  # WeChat, committee, kjj
    assert truth.story("kjj-2").names == ["韩雪梅"] and truth.story("kjj-2").unit == "市科学技术局"
    assert set(summary["unattributed_titles"]) <= set(summary["column_titles"])
    assert len(summary["candidate_titles"]) == 3
    assert not set(summary["candidate_titles"]) & set(summary["column_titles"])
    assert summary["digest_week"] == "2026-W47" and len(summary["digest_titles"]) >= 3
    assert set(summary["near_template_titles"]) <= set(summary["non_column_titles"])
    assert truth.story("czj-3").title.startswith("学习贯彻党的二十届四中全会精神｜")  # as first published


def test_command_prints_a_valid_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from crawler.samples.server import main

    assert main(["--print-config", "--port", "8123", "--anchor", ANCHOR.isoformat()]) == 0
    config = parse_config(tomllib.loads(capsys.readouterr().out), base_dir=tmp_path)
    assert config.source(WECHAT_SOURCE_KEY).url.startswith("http://127.0.0.1:8123/mp/appmsgalbum?")


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 26, 0, 0, 30, tzinfo=SHANGHAI),  # just after midnight
        datetime(2026, 11, 26, 5, 0, tzinfo=SHANGHAI),  # the hour a sample once showed 4 hours ahead
        datetime(2026, 11, 26, 8, 59, 59, tzinfo=SHANGHAI),
        datetime(2026, 11, 26, 9, 0, 30, tzinfo=SHANGHAI),
        datetime(2026, 11, 26, 9, 1, tzinfo=SHANGHAI),
        datetime(2026, 11, 26, 12, 0, tzinfo=SHANGHAI),
        datetime(2026, 11, 26, 23, 59, 59, tzinfo=SHANGHAI),
        datetime(2026, 11, 25, 16, 0, 30, tzinfo=UTC),  # 00:00:30 in Shanghai, given in UTC
    ],
)
def test_no_sample_is_dated_after_the_demo_starts(now: datetime) -> None:
    catalog = build_catalog(anchor_at(now))
    wechat = [(i.story.key, i.published) for i in catalog.wechat_all]
    wechat += [(i.story.key, datetime.fromtimestamp(i.create_time, SHANGHAI)) for i in catalog.wechat_all]
    site = [(f"{code}/{i.story.key}", i.published) for code in catalog.site_all for i in catalog.site_all[code]]
    ahead = [(what, when.isoformat()) for what, when in wechat + site if when > now]
    assert not ahead
    truth = truth_from_catalog(catalog, "http://127.0.0.1:1")
    assert all(s.published_at <= now for s in truth.stories)
    # and the anchor is as late as that allows: today once today's samples are due
    assert anchor_at(now) in (now.astimezone(SHANGHAI).date(), now.astimezone(SHANGHAI).date() - timedelta(days=1))
    if now.astimezone(SHANGHAI).hour >= 12:
        assert anchor_at(now) == now.astimezone(SHANGHAI).date()
