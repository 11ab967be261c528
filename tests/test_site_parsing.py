"""Saved-page tests of the website parsers: decoding, list pages, article extraction, block detection.

Each folder under tests/fixtures/sites is one case: the page bytes, meta.json (URL, encoding,
why the case exists, list type / selectors) and expected.json.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from crawler.parsing.encoding import (
    EncodingError,
    decode_checked,
    decode_html,
    looks_binary,
    looks_mojibake,
    meta_charset,
    normalize_charset,
)
from crawler.parsing.site_article import (
    block_text,
    density_body,
    detect_block,
    extract_article,
    extract_site,
    parse_html,
    strip_site_suffix,
)
from crawler.parsing.site_list import ListParseError, dataproxy_url, parse_list, trs_pager

FIXTURES = Path(__file__).parent / "fixtures" / "sites"


def _cases(kind: str) -> list[Path]:
    return sorted(
        d for d in FIXTURES.iterdir() if d.is_dir() and json.loads((d / "meta.json").read_text())["kind"] == kind
    )


def _load(case: Path) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    page = next(case.glob("page.*"))
    meta = json.loads((case / "meta.json").read_text(encoding="utf-8"))
    expected = json.loads((case / "expected.json").read_text(encoding="utf-8"))
    return page.read_bytes(), meta, expected


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# -- saved pages --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("article"), ids=lambda p: p.name)
def test_article_fixture(case: Path) -> None:
    body, meta, expected = _load(case)
    decoded = decode_checked(body, meta.get("content_type"))
    assert decoded.encoding == expected["encoding"] == meta["encoding"]
    assert not looks_mojibake(decoded.text)
    article = extract_article(decoded.text, meta["url"], meta.get("selectors"))
    assert article.title == expected["title"]
    assert _iso(article.published_at) == expected["published_at"]
    for name in ("source_label", "author", "byline"):
        if name in expected:
            assert getattr(article, name) == expected[name], name
    if "written_at" in expected:
        assert _iso(article.written_at) == expected["written_at"]
    for name, how in expected.get("method", {}).items():
        assert article.method.get(name) == how, name
    for text in expected["body_contains"]:
        assert text in article.body_text
    for text in expected["body_excludes"]:
        assert text not in article.body_text, text
    if "body_first_line" in expected:
        assert article.body_text.split("\n")[0] == expected["body_first_line"]
    if "body_lines" in expected:
        assert len(article.body_text.split("\n")) == expected["body_lines"]
    if "notes_contains" in expected:
        assert any(expected["notes_contains"] in note for note in article.notes)
    assert article.published_at is None or article.published_at.utcoffset() is not None
    assert article.title and "_" not in article.title


@pytest.mark.parametrize("case", _cases("list"), ids=lambda p: p.name)
def test_list_fixture(case: Path) -> None:
    body, meta, expected = _load(case)
    decoded = decode_checked(body, meta.get("content_type"))
    page = parse_list(decoded.text, meta["url"], meta["list_type"], meta["options"])
    assert len(page.links) == expected["links"]
    first = page.links[0]
    assert first.url == expected["first"]["url"]
    if "title" in expected["first"]:
        assert first.title == expected["first"]["title"]
    assert first.date == date.fromisoformat(expected["first"]["date"])
    assert page.next_urls == expected["next_urls"]
    assert page.total_pages == expected["total_pages"]
    if "in_column" in expected:
        assert [link.in_column for link in page.links] == expected["in_column"]


# -- encoding -----------------------------------------------------------------------------------

TEXT = "学习贯彻党的二十届四中全会精神，推动科技创新和产业创新深度融合发展。" * 3


def test_gb_labels_read_as_gb18030() -> None:
    assert normalize_charset("GB2312") == "gb18030"
    assert normalize_charset("gbk") == "gb18030"
    assert normalize_charset("UTF8") == "utf-8"
    assert normalize_charset("no-such-charset") is None


def test_header_charset_beats_meta() -> None:
    body = f'<html><head><meta charset="utf-8"></head><body>{TEXT}</body></html>'.encode("gb18030")
    decoded = decode_html(body, "text/html; charset=GBK")
    assert (decoded.encoding, decoded.source) == ("gb18030", "header")
    assert TEXT in decoded.text


def test_script_charset_is_not_a_declaration() -> None:
    body = (
        '<html><head><script src="/wb.js" charset="utf-8"></script><!-- <meta charset="big5"> -->'
        f'<meta http-equiv="Content-Type" content="text/html; charset=gb2312"/></head><body>{TEXT}</body></html>'
    ).encode("gb18030")
    assert meta_charset(body) == "gb2312"
    decoded = decode_html(body, None)
    assert (decoded.encoding, decoded.source) == ("gb18030", "meta")
    assert TEXT in decoded.text


def test_declared_gb2312_over_utf8_bytes_reads_utf8() -> None:
    body = f'<meta charset="gb2312"><p>{TEXT}</p>'.encode()
    decoded = decode_checked(body, "text/html; charset=gb2312")
    assert decoded.encoding == "utf-8"
    assert "did not fit" in decoded.source
    assert TEXT in decoded.text


def test_declared_utf8_over_gbk_bytes_reads_gb18030() -> None:
    decoded = decode_checked(f"<p>{TEXT}</p>".encode("gbk"), "text/html; charset=utf-8")
    assert decoded.encoding == "gb18030" and TEXT in decoded.text


def test_undeclared_bytes_try_utf8_then_gb18030_and_bom() -> None:
    assert decode_html(TEXT.encode(), None).encoding == "utf-8"
    assert decode_html(TEXT.encode("gbk"), None).encoding == "gb18030"
    assert decode_html(b"\xef\xbb\xbf" + TEXT.encode(), "text/html; charset=gbk").source == "bom"


def test_override_encoding_wins() -> None:
    assert decode_html(TEXT.encode("gbk"), "text/html; charset=utf-8", override="gbk").encoding == "gb18030"


def test_mojibake_detected_and_refused() -> None:
    assert not looks_mojibake(TEXT)
    assert not looks_mojibake("Café au lait, naïve résumé — ordinary Latin text.")
    assert looks_mojibake(TEXT.encode().decode("latin-1"))
    assert looks_mojibake(TEXT.encode().decode("cp1252", "replace"))
    assert looks_mojibake(TEXT.encode().decode("gb18030", "replace"))
    assert looks_mojibake(TEXT.encode("gbk").decode("utf-8", "replace"))
    # A page that was already garbled at the source (UTF-8 text once read as GBK) is refused.
    garbled_at_source = TEXT.encode().decode("gb18030", "replace").encode()
    with pytest.raises(EncodingError):
        decode_checked(f"<p>{garbled_at_source.decode()}</p>".encode(), None)


# -- lists --------------------------------------------------------------------------------------


def test_trs_pager_variants() -> None:
    assert trs_pager("createPageHTML('page_div', 5, 1, 'fg', 'shtml', 89);") == (5, 1, "fg", "shtml")
    assert trs_pager('createPageHTML(3, 2, "index", "html");') == (3, 2, "index", "html")
    assert trs_pager("var currentPage = 0;\nvar countPage = 17//共多少页") == (17, 0, "index", "html")
    assert trs_pager("<p>no pager</p>") is None
    html = '<ul><li><a href="./202511/t20251101_1.html">甲乙丙丁</a></li></ul><script>createPageHTML(3, 2, "index", "html");</script>'
    assert parse_list(html, "http://a.example/col/index_2.html", "trs_js_pager", {}).next_urls == []
    variant = '<a href="./202511/t20251101_1.html">甲乙丙丁</a><script>createPageHTML("page_div", 5, 1, "fg", "shtml", 89);</script>'
    page = parse_list(variant, "http://a.example/col/fg_1.shtml", "trs_js_pager", {})
    assert (page.next_urls, page.total_pages) == (["http://a.example/col/fg_2.shtml"], 5)


def test_column_rules() -> None:
    html = (
        '<ul><li><a href="/a/t20251101_1.html">学习贯彻党的二十届四中全会精神 甲文</a></li>'
        '<li><a href="/a/t20251102_2.html">工会活动通知</a></li>'
        '<li><a href="/b/t20251103_3.html">学习贯彻党的二十届四中全会精神 乙文</a></li></ul>'
    )
    url = "http://a.example/a/index.html"
    page = parse_list(html, url, "html", {"title_include": ["四中全会"]})
    assert [link.url.rsplit("/", 1)[1] for link in page.links] == ["t20251101_1.html", "t20251103_3.html"]
    page = parse_list(html, url, "html", {"include": [r"/a/"], "title_exclude": ["工会"], "keep_non_column": True})
    assert [(link.url.rsplit("/", 1)[1], link.in_column) for link in page.links] == [
        ("t20251101_1.html", True),
        ("t20251102_2.html", False),
    ]
    page = parse_list(html, url, "html", {"exclude": [r"_2\.html$"], "title_include": ["甲"], "keep_non_column": True})
    assert [link.in_column for link in page.links] == [True, False]


def test_link_and_next_selectors() -> None:
    html = (
        '<div class="x"><a href="/p?id=1">一号文章标题</a><a href="/p?id=2">二号文章标题</a></div>'
        '<div class="y"><a href="/other.html">无关链接</a><a class="nx" href="list?page=2">more</a></div>'
    )
    page = parse_list(
        html, "http://a.example/list", "html", {"link_selector": "div.x", "next_page": "//a[@class='nx']/@href"}
    )
    assert [link.url for link in page.links] == ["http://a.example/p?id=1", "http://a.example/p?id=2"]
    assert page.next_urls == ["http://a.example/list?page=2"]


def test_hanweb_without_datastore_is_a_parse_error() -> None:
    with pytest.raises(ListParseError):
        parse_list("<html><body>改版了</body></html>", "http://a.example/col/col1/index.html", "hanweb_datastore", {})


def test_datastore_source_follows_dataproxy_pages() -> None:
    body, meta, _ = _load(FIXTURES / "list_hanweb_dataproxy")
    first = meta["url"].replace("startrecord=4&endrecord=6", "startrecord=1&endrecord=3")
    page = parse_list(body.decode(), first, "hanweb_datastore", {})
    assert page.next_urls == [meta["url"]]
    by_page = parse_list(
        body.decode(), "http://a.example/module/web/jpage/dataproxy.jsp?page=1&columnid=9", "hanweb_datastore", {}
    )
    assert by_page.next_urls == ["http://a.example/module/web/jpage/dataproxy.jsp?page=2&columnid=9"]


def test_dataproxy_url_builder() -> None:
    options = {
        "dataproxy_url": "/module/web/jpage/dataproxy.jsp",
        "column_id": "1234",
        "unit_id": "5566",
        "per_page": 15,
    }
    url = dataproxy_url("http://a.example/col/col1234/index.html", options, 2)
    assert url == "http://a.example/module/web/jpage/dataproxy.jsp?page=2&perpage=15&columnid=1234&unitid=5566"
    templated = {
        "dataproxy_url": "/dp.jsp?startrecord={startrecord}&endrecord={endrecord}&perpage={perpage}",
        "per_page": 20,
    }
    assert (
        dataproxy_url("http://a.example/", templated, 3)
        == "http://a.example/dp.jsp?startrecord=41&endrecord=60&perpage=20"
    )


# -- articles -----------------------------------------------------------------------------------


def test_title_suffixes() -> None:
    assert strip_site_suffix("通知公告_河阳市人民政府") == "通知公告"
    assert strip_site_suffix("乘势而上 担当实干 - 河阳市科学技术局") == "乘势而上 担当实干"
    assert strip_site_suffix("1-10月全市固定资产投资结构趋稳") == "1-10月全市固定资产投资结构趋稳"
    assert strip_site_suffix("某某通知__2025年第3号公报_河阳市政府网") == "某某通知"
    assert strip_site_suffix("乘势而上--学习专栏--河阳机关党建") == "乘势而上"


def test_density_fallback_picks_the_paragraph_block() -> None:
    paragraphs = "".join(
        f"<div>第{i}段：我们将深入学习贯彻全会精神，推动各项工作落地见效，以实干实绩检验学习成效。</div>"
        for i in range(5)
    )
    html = (
        '<html><body><div id="nav"><a href="/1">首页</a><a href="/2">机构概况</a><a href="/3">政务公开</a></div>'
        f'<div id="main">{paragraphs}</div><div id="foot">主办单位：河阳市某局</div></body></html>'
    )
    element = density_body(parse_html(html))
    assert element is not None and element.get("id") == "main"


def test_comments_and_scripts_do_not_feed_labels() -> None:
    html = (
        "<html><head><title>示例文章_某站</title></head><body><h1>示例文章</h1>"
        "<!-- <span>发布时间：2020-01-01</span><span>来源：旧来源</span> -->"
        "<script>var s = '来源：脚本来源';</script>"
        "<span>发布时间：2025-11-02 08:00</span><span>来源：市科技局</span>"
        '<div class="TRS_Editor"><p>正文第一段，学习贯彻党的二十届四中全会精神，推动科技创新工作取得新成效。</p></div>'
        "</body></html>"
    )
    article = extract_article(html, "http://a.example/t.html")
    assert article.source_label == "市科技局"
    assert article.published_at is not None and article.published_at.isoformat() == "2025-11-02T08:00:00+08:00"


def test_detect_block() -> None:
    ruishu = (
        b'<html><head><meta http-equiv="Content-Type"><script>$_ts=window["$_ts"];$_ts.nsd=1234;</script></head></html>'
    )
    assert detect_block(412, ruishu, {}) == "瑞数 JS challenge (HTTP 412): the site needs a browser; not attempted"
    jsl = b"<script>document.cookie=('__jsl_clearance_s=1700000000.1|0|abc');location.href=location.pathname</script>"
    reason = detect_block(521, jsl, {"Set-Cookie": "__jsluid_s=abc"})
    assert reason is not None and reason.startswith("加速乐 JS challenge (HTTP 521)")
    assert detect_block(403, b"forbidden", {}) == "HTTP 403: the site refused the request (forbidden)"
    assert detect_block(404, b"", {}) == "HTTP 404: page not found"
    assert detect_block(503, b"busy", {}) == "HTTP 503: server error at the site"
    assert detect_block(200, b"  \n", {}) == "empty page"
    assert detect_block(200, "<p>正文</p>".encode(), {}) is None


def test_extract_site_json_fields() -> None:
    body, meta, expected = _load(FIXTURES / "art_gbk_no_charset")
    result = extract_site(body, meta["url"], meta["content_type"])
    json.dumps(result, ensure_ascii=False)  # JSON-ready
    assert result["state"] == "ok"
    assert result["title"] == expected["title"]
    assert result["source_label"] == "局办公室"
    assert result["published_at"] == "2025-11-09T00:00:00+08:00"
    assert result["encoding"] == "gb18030"
    assert "城乡公交一体化" in result["body_text"]
    blocked = extract_site(b"<html><script>$_ts=window['$_ts'];</script></html>", "http://a.example/x.html")
    assert blocked["state"] == "blocked"
    garbled = extract_site(f"<p>{TEXT}</p>".encode(), "http://a.example/x.html", "text/html; charset=iso-8859-1")
    assert garbled["state"] == "ok"  # valid UTF-8 beats a latin-1 label


def test_article_links_with_a_tracking_query_are_still_articles() -> None:
    from crawler.parsing.site_list import parse_list

    page = (
        "<html><body><ul class='list'>"
        "<li><a href='/art/2026/11/20/art_77_1000.html?from=wx'>学习贯彻全会精神的体会文章一</a></li>"
        "<li><a href='/art/2026/11/21/art_77_1001.html'>学习贯彻全会精神的体会文章二</a></li>"
        "</ul></body></html>"
    )
    listing = parse_list(page, "http://127.0.0.1:1/col/index.html", "html", {})
    assert [link.url.rsplit("/", 1)[1] for link in listing.links] == ["art_77_1000.html?from=wx", "art_77_1001.html"]


# -- the per-page extraction path (kept cheap: these pin what it returns) ----------------------


def test_block_text_one_line_per_block_whitespace_collapsed() -> None:
    root = parse_html(
        "<html><body><div>\u3000\u3000第一段\xa0 正文\t内容\r\n<span> 行内 </span>文字</div>"
        "<p>   </p><p>\n\n</p><ul><li>甲</li><li> 乙 <br>丙</li></ul>尾巴\u3000</body></html>"
    )
    # a line break inside text starts a new line too
    assert block_text(root.find("body")) == "第一段 正文 内容\n行内 文字\n甲\n乙\n丙\n尾巴"


def test_repeated_container_the_one_with_most_text_then_the_first() -> None:
    paragraph = "全会对全面依法治国作出新的部署，司法行政机关要坚持以学铸魂、以学促干、切实把全会精神贯彻到法治建设中。"
    longer = (
        "<html><body><div class='TRS_Editor'><p>短的一段摘要文字。</p></div>"
        f"<div class='TRS_Editor'><p>{paragraph}</p><p>{paragraph}</p></div></body></html>"
    )
    article = extract_article(longer, "http://a.example/t.html")
    assert article.method["body"] == "container .TRS_Editor"
    assert article.body_text == f"{paragraph}\n{paragraph}"
    tied = (
        f"<html><body><div class='TRS_Editor'><p>甲{paragraph}</p></div>"
        f"<div class='TRS_Editor'><p>乙{paragraph}</p></div></body></html>"
    )
    assert extract_article(tied, "http://a.example/t.html").body_text == f"甲{paragraph}"


def test_configured_selectors_read_each_page_on_their_own() -> None:
    selectors = {"title": "h2.t", "body": "#c", "date": "//span[@class='d']/text()", "author": ".a"}
    paragraph = "我们将深化法治政府建设，严格规范公正文明执法，持续优化法治化营商环境。"
    for day, name in ((3, "王明"), (4, "李华")):
        page = (
            f"<html><body><h2 class='t'>第{day}号通报</h2><span class='d'>2025-11-0{day}</span>"
            f"<span class='a'>作者：{name}</span><div id='c'><p>{day}日{paragraph}</p></div></body></html>"
        )
        article = extract_article(page, "http://a.example/t.html", selectors)
        assert article.title == f"第{day}号通报"
        assert article.published_at is not None and article.published_at.day == day
        assert article.author == name
        assert article.body_text == f"{day}日{paragraph}"
        assert article.method == {
            "title": "selector",
            "published_at": "selector",
            "body": "selector",
            "author": "selector",
        }


def test_date_after_the_heading_not_after_the_breadcrumb_copy_of_the_title() -> None:
    title = "关于印发《办法(试行)》的通知[2025]"
    page = (
        f"<html><head><title>{title}</title></head><body><div>当前位置：首页 &gt; {title}</div>"
        f"<div>{'导航链接 ' * 30}</div><h1>{title}</h1><div>2025年11月7日 08:31</div>"
        "<div>正文没有日期标签。</div></body></html>"
    )
    article = extract_article(page, "http://a.example/a.html")
    assert article.title == title
    assert article.published_at is not None and article.published_at.isoformat() == "2025-11-07T08:31:00+08:00"
    assert article.method["published_at"] == "text after title"


def test_replacement_characters_are_weighed_against_the_chinese_text() -> None:
    assert not looks_mojibake("\ufffd" * 3 + "学" * 400)
    assert looks_mojibake("\ufffd" * 3 + "学" * 100)
    assert not looks_mojibake("\ufffd" * 2)


def test_binary_means_more_than_one_percent_control_bytes() -> None:
    sample = 8192  # the start looks_binary reads; 1 % of it is 81 bytes
    assert not looks_binary(b"\x00" * 81 + b"a" * (sample - 81) + b"\x00" * 500)
    assert looks_binary(b"\x00\x01\x7f" * 27 + b"\x1c" + b"a" * (sample - 82))
    assert not looks_binary(b"\t\n\r\x0c\x1b" * 1000)  # tab, LF, CR, FF and ESC are text
