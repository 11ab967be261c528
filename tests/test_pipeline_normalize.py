"""Normalize stage: safe HTML, normalized text, content hash, rejections."""

from __future__ import annotations

from datetime import datetime

import pytest

from crawler.items import STATE_DELETED, STATE_VERIFY, ListPageItem, ProblemItem
from pipeline.normalize import (
    Rejected,
    clean_title,
    content_hash,
    normalize,
    normalize_item,
    normalize_text,
    sanitize_html,
)
from pipeline.record import Record
from tests.test_pipeline_support import article_item

BASE = "https://czj.example.gov.cn/art/2025/12/01/art_1.html"


def test_sanitize_strips_scripts_handlers_and_dangerous_urls() -> None:
    dirty = (
        '<section style="color:red"><p onclick="steal()">坚持<strong>政治引领</strong></p>'
        "<script>alert('x')</script><style>p{display:none}</style>"
        '<a href="javascript:alert(1)">点我</a><a href="data:text/html;base64,PHNjcmlwdD4=">数据</a>'
        '<iframe src="https://evil.example/"></iframe><img src="x.png" onerror="steal()">'
        '<form action="/x"><input name="q"></form></section>'
    )
    clean = sanitize_html(dirty, BASE)
    for bad in ("script", "alert", "onclick", "onerror", "style", "javascript:", "data:", "iframe", "<form", "<input"):
        assert bad not in clean, bad
    assert "<strong>政治引领</strong>" in clean
    assert ">点我</a>" in clean and ">数据</a>" in clean  # link text kept, link target dropped


def test_sanitize_keeps_images_and_makes_lazy_wechat_images_real() -> None:
    html = (
        '<p><img src="/picture/0/a.jpg" alt="学习现场" width="600" height="400" class="big"></p>'
        '<p><img data-src="https://mmbiz.qpic.cn/mmbiz_jpg/abc/640" '
        'src="data:image/svg+xml,%3Csvg%3E" style="width:100%"></p>'
        '<table><tr><td colspan="2">一是</td></tr></table><a href="../b.html" title="下一篇">下一篇</a>'
    )
    clean = sanitize_html(html, BASE)
    assert '<img src="https://czj.example.gov.cn/picture/0/a.jpg" alt="学习现场" width="600" height="400">' in clean
    assert '<img src="https://mmbiz.qpic.cn/mmbiz_jpg/abc/640">' in clean
    assert '<td colspan="2">一是</td>' in clean
    assert 'href="https://czj.example.gov.cn/art/2025/12/b.html"' in clean and 'title="下一篇"' in clean


def test_normalize_text_whitespace_zero_width_and_controls_but_not_folded() -> None:
    raw = "  坚持\u3000政治\u200b引领 ，\t筑牢\x07根基  \r\n\r\n\n\u00a0\n第二段ＡＢＣ１２３\ufeff\u2029第三段"
    assert normalize_text(raw) == "坚持\u3000政治引领 ， 筑牢根基\n第二段ＡＢＣ１２３\n第三段"


def test_title_cleaned_but_not_folded() -> None:
    assert (
        clean_title("  学深悟透\u200b全会精神\n  当好“守门人”，\u3000践行初心 ")
        == "学深悟透全会精神 当好“守门人”\uff0c 践行初心"
    )


def test_content_hash_ignores_whitespace_only() -> None:
    assert content_hash("一是\n坚持 政治引领") == content_hash("一是坚持政治引领")
    assert content_hash("一是坚持政治引领") != content_hash("二是坚持政治引领")


def test_normalize_item_builds_record(now: datetime) -> None:
    item = article_item("a1", "市财政局党组书记、局长 顾清远\n  党的二十届四中全会\u200b精神  ", published_at=now)
    record = normalize_item(item)
    assert record.body_text == "市财政局党组书记、局长 顾清远\n党的二十届四中全会精神"
    assert record.content_hash == content_hash(record.body_text)
    assert record.body_html.startswith("<p>市财政局")


def test_text_from_html_when_spider_gave_none(now: datetime) -> None:
    item = article_item("a2", "x", published_at=now)
    item.body_text = ""
    item.body_html = "<div><p>第一段<br>续行</p><p>第二段</p></div>"
    assert normalize_item(item).body_text == "第一段\n续行\n第二段"


def test_the_stage_rejects_empty_pages_as_parse_problems(now: datetime) -> None:
    no_text = article_item("a3", "", published_at=now)
    no_text.body_html = "<p>\u200b \u3000</p><script>var x</script>"
    with pytest.raises(Rejected) as caught:
        normalize(no_text)
    assert caught.value.problem.kind == "parse"
    assert caught.value.problem.url == no_text.url
    assert "no article text" in str(caught.value)
    no_title = article_item("a4", "正文", title=" \u200b ", published_at=now)
    with pytest.raises(Rejected, match="no title"):
        normalize(no_title)


def test_the_stage_on_state_pages(now: datetime) -> None:
    deleted = normalize(article_item("a5", "", published_at=now, state=STATE_DELETED))
    assert isinstance(deleted, Record) and deleted.body_text == "" and deleted.content_hash == ""
    verification = article_item("a6", "", published_at=now, state=STATE_VERIFY)
    verification.body_html = "<p>环境异常</p>"
    problem = normalize(verification)
    assert isinstance(problem, ProblemItem) and problem.kind == "verification"


def test_the_stage_passes_other_items_untouched(now: datetime) -> None:
    page = ListPageItem(
        source_key="s", url="https://czj.example.gov.cn/xxgk/", etag='"1"', last_modified=None, fetched_at=now
    )
    assert normalize(page) is page


def test_control_characters_are_exactly_unicode_category_cc_except_tab() -> None:
    """Every Cc character but the tab is removed; nothing else is (zero-width ones aside)."""
    import unicodedata

    from pipeline.normalize import _ZERO_WIDTH, normalize_line

    for code in range(0x110000):
        ch = chr(code)
        if code in _ZERO_WIDTH:
            continue
        expected = "甲 乙" if ch == "\t" else "甲乙" if unicodedata.category(ch) == "Cc" else f"甲{ch}乙"
        if ch.isspace() and ch != "\t" and unicodedata.category(ch) != "Cc":
            expected = "甲 乙"  # other whitespace collapses to one space
        assert normalize_line(f"甲{ch}乙") == expected, hex(code)
    assert normalize_line("甲\u200b乙\u00ad丙\x85丁") == "甲乙丙丁"
