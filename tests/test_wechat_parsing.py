"""Saved-page tests of crawler.parsing.wechat: every folder under tests/fixtures/wechat is a case
(page bytes, meta.json with URL/encoding/why, expected.json with the expected fields)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from crawler.items import STATE_DELETED, STATE_ERROR, STATE_OK, STATE_VERIFY
from crawler.keys import wechat_key_from_url
from crawler.parsing.wechat import (
    SHANGHAI,
    AlbumEntry,
    AlbumError,
    WechatParseError,
    album_json_url,
    album_url_from_article,
    article_fetch_url,
    classify_page,
    extract_wechat,
    parse_album_html,
    parse_album_json,
    parse_article,
    sort_entries,
)

FIXTURES = Path(__file__).parent / "fixtures" / "wechat"
COLUMN = "学习贯彻党的二十届四中全会精神"


def case(name: str) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    folder = FIXTURES / name
    page = folder / ("page.json" if (folder / "page.json").exists() else "page.html")
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    return page.read_bytes(), meta, expected


def case_names(prefix: str) -> list[str]:
    return sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and p.name.startswith(prefix))


def test_every_fixture_folder_is_complete() -> None:
    for folder in FIXTURES.iterdir():
        assert (folder / "meta.json").exists(), folder
        assert (folder / "expected.json").exists(), folder
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        assert meta["url"] and meta["encoding"] and meta["why"], folder


@pytest.mark.parametrize("name", case_names("state_"))
def test_state_pages_are_classified_before_parsing(name: str) -> None:
    body, meta, expected = case(name)
    assert classify_page(body, meta["url"]) == expected["state"]
    assert classify_page(body.decode("utf-8"), meta["url"]) == expected["state"]  # str works too
    fields = extract_wechat(body, meta["url"])
    assert fields["state"] == expected["state"]
    assert "body_text" not in fields  # a state page never yields content


@pytest.mark.parametrize("name", case_names("article_"))
def test_article_pages(name: str) -> None:
    body, meta, expected = case(name)
    assert classify_page(body, meta["url"]) == STATE_OK
    article = parse_article(body, meta["url"])
    assert article.published_at is not None and article.published_at.tzinfo is not None
    fields = extract_wechat(body, meta["url"])
    fields["account_name"] = fields.pop("account")
    for key, value in expected.items():
        if key == "body_html_contains":
            for needle in value:
                assert needle in article.body_html, needle
        elif key == "body_html_excludes":
            for needle in value:
                assert needle not in article.body_html, needle
        else:
            assert fields[key] == value, key


def test_current_layout_details() -> None:
    body, meta, _ = case("article_type0_current")
    article = parse_article(body, meta["url"])
    # The decoy `var biz = null` and JS like `var idx = list.indexOf(x)` never win over the data.
    assert (article.biz, article.mid, article.idx) == ("MzkyMDAwMTIzNA==", "2247490012", "1")
    assert article.published_at == datetime(2025, 11, 20, 9, 30, 23, tzinfo=SHANGHAI)
    assert article.author == "王立新" and article.account_name == "市直机关党建"
    assert "\\x26" not in (article.original_url or "") and "&amp;" not in (article.original_url or "")
    assert album_url_from_article(article, COLUMN) == (
        "https://mp.weixin.qq.com/mp/appmsgalbum?__biz=MzkyMDAwMTIzNA==&action=getalbum&album_id=3920461187654320128"
    )
    assert album_url_from_article(article, " 学习贯彻党的二十届四中全会精神 ") is not None
    assert album_url_from_article(article, "另一个合集") is None


def test_share_types_read_cgi_data_new_only() -> None:
    body, meta, _ = case("article_type8_imageshare")
    article = parse_article(body, meta["url"])
    assert article.item_show_type == 8
    # Watermarks and share covers nested in picture_page_info_list are not body pictures.
    assert len(article.image_urls) == 2 and all("Watermark" not in u for u in article.image_urls)
    assert article.body_text.splitlines()[0].startswith('11月18日，市直机关工委组织各党支部开展"学全会精神')
    body10, meta10, _ = case("article_type10_textshare")
    text_share = parse_article(body10, meta10["url"])
    assert text_share.canonical_key == "wx:MzkyMDAwMTIzNA==:2247490006:2"
    assert "“第一议题”" in text_share.body_text


def test_legacy_time_falls_back_to_publish_time_then_post_date() -> None:
    body, meta, _ = case("article_2018_legacy")
    assert parse_article(body, meta["url"]).published_at == datetime(2018, 6, 29, tzinfo=SHANGHAI)
    without_var = body.replace(b'var publish_time = "2018-06-29" || "";', b"")
    assert parse_article(without_var, meta["url"]).published_at == datetime(2018, 6, 29, tzinfo=SHANGHAI)
    with_ct = body.replace(b'var nickname = "', b'var ct = "1530237600";\n    var nickname = "')
    assert parse_article(with_ct, meta["url"]).published_at == datetime(2018, 6, 29, 10, 0, tzinfo=SHANGHAI)


def test_article_quoting_state_phrases_stays_an_article() -> None:
    body, meta, _ = case("article_type0_current")
    quoting = body.replace(
        "一是抓规划引领。".encode(), "针对监测点环境异常、去验证数据以及该内容已被发布者删除等问题，".encode()
    )
    assert classify_page(quoting, meta["url"]) == STATE_OK


def test_verification_by_url_and_http_errors() -> None:
    page = b"<html><body><p>loading</p></body></html>"
    assert (
        classify_page(page, "https://mp.weixin.qq.com/mp/wappoc_appmsgcaptcha?poc_token=x&target_url=y") == STATE_VERIFY
    )
    body, meta, _ = case("article_type0_current")
    assert classify_page(body, meta["url"], status=500) == STATE_ERROR
    assert classify_page(b"", "https://mp.weixin.qq.com/s/x") == STATE_ERROR


def test_missing_identity_is_a_parse_error() -> None:
    body, _, _ = case("article_2018_legacy")
    broken = body.replace(b'"" || "" || "2650178803"', b'"" || "" || ""')
    with pytest.raises(WechatParseError, match="mid"):
        parse_article(broken, "http://mp.weixin.qq.com/s?src=11&timestamp=1&signature=x")
    with pytest.raises(WechatParseError):
        parse_article(b"<html><body><div id='js_content'><p>x</p></div></body></html>", "https://mp.weixin.qq.com/s/x")


def test_chksm_and_scene_do_not_change_identity() -> None:
    album, album_meta, _ = case("album_html")
    listed = parse_album_html(album, album_meta["url"]).items[0]
    body, meta, _ = case("article_type0_current")
    article = parse_article(body, meta["url"])
    listed_chksm = dict(p.split("=", 1) for p in listed.url.split("#")[0].split("?")[1].split("&"))["chksm"]
    assert listed_chksm not in meta["url"]  # the album and the page carry different chksm values
    assert listed.key() == article.canonical_key == wechat_key_from_url(meta["url"]) == wechat_key_from_url(listed.url)
    assert (
        article_fetch_url(listed.url)
        == article_fetch_url(meta["url"])
        == (
            "https://mp.weixin.qq.com/s?__biz=MzkyMDAwMTIzNA==&mid=2247490012&idx=1&sn=8c1f4e2a9b7d6c5e3f1a0b9c8d7e6f5a"
        )
    )


def _entries_as_expected(items: list[AlbumEntry]) -> list[dict[str, Any]]:
    return [
        {
            "msgid": e.msgid,
            "itemidx": e.itemidx,
            "title": e.title,
            "create_time": e.create_time.isoformat() if e.create_time else None,
            "key": e.key(),
        }
        for e in items
    ]


def test_album_html_first_screen() -> None:
    body, meta, expected = case("album_html")
    page = parse_album_html(body, meta["url"])
    for key in ("title", "account_name", "account_id", "biz", "album_id", "continue_flag", "article_count"):
        assert getattr(page, key) == expected[key], key
    assert _entries_as_expected(page.items) == expected["items"]  # the stray <li> is ignored
    assert page.items[0].url == expected["first_url"]


def test_album_html_falls_back_to_cgi_data_items() -> None:
    body, meta, expected = case("album_html")
    without_list = body.replace(b"js_album_item", b"js_other_item")
    page = parse_album_html(without_list, meta["url"])
    assert [(e.msgid, e.itemidx) for e in page.items] == [(i["msgid"], i["itemidx"]) for i in expected["items"]]
    with pytest.raises(AlbumError):
        parse_album_html(b"<html><body><ul><li>nothing</li></ul></body></html>")


@pytest.mark.parametrize("name", ["album_json_page", "album_json_single", "album_json_end"])
def test_album_json_pages(name: str) -> None:
    body, meta, expected = case(name)
    page = parse_album_json(body, meta["url"])
    assert page.continue_flag == expected["continue_flag"]
    assert _entries_as_expected(page.items) == expected["items"]
    for key in ("biz", "album_id"):
        if key in expected:
            assert getattr(page, key) == expected[key]


def test_album_json_errors() -> None:
    body, meta, expected = case("album_json_error")
    with pytest.raises(AlbumError) as error:
        parse_album_json(body, meta["url"])
    assert error.value.ret == expected["error_ret"]
    with pytest.raises(AlbumError) as as_string:
        parse_album_json(b'{"base_resp": {"ret": "200013"}}')
    assert as_string.value.ret == "200013"
    with pytest.raises(AlbumError) as verify:
        parse_album_json(b'{"base_resp": {"ret": 0}, "getalbum_resp": {"verify_status": "1", "continue_flag": "0"}}')
    assert verify.value.verification
    with pytest.raises(AlbumError):
        parse_album_json(b"<html>\xe7\x8e\xaf\xe5\xa2\x83\xe5\xbc\x82\xe5\xb8\xb8</html>")


def test_sort_entries_ignores_list_order() -> None:
    html_body, _, _ = case("album_html")
    json_body, _, _ = case("album_json_page")
    entries = parse_album_html(html_body).items + parse_album_json(json_body).items
    expected = [("2247490003", "1"), ("2247490005", "1"), ("2247490008", "1"), ("2247490012", "1"), ("2247490012", "2")]
    assert [(e.msgid, e.itemidx) for e in sort_entries(entries)] == expected
    assert [(e.msgid, e.itemidx) for e in sort_entries(reversed(entries))] == expected


def test_album_json_url_is_an_exclusive_cursor() -> None:
    album = "https://mp.weixin.qq.com/mp/appmsgalbum?__biz=MzkyMDAwMTIzNA==&action=getalbum&album_id=39&scene=1#wechat_redirect"
    assert album_json_url(album, 50, "2247490008", "2") == (
        "https://mp.weixin.qq.com/mp/appmsgalbum?__biz=MzkyMDAwMTIzNA==&action=getalbum&album_id=39"
        "&count=20&f=json&begin_msgid=2247490008&begin_itemidx=2"
    )
    assert album_json_url(album, 10).endswith("&count=10&f=json")


def test_extract_wechat_is_json_ready() -> None:
    body, meta, _ = case("article_type0_current")
    fields = extract_wechat(body, meta["url"])
    json.dumps(fields, ensure_ascii=False)
    assert fields["published_at"].endswith("+08:00")
    assert fields["state"] == STATE_OK and fields["account"] == "市直机关党建"
    deleted, deleted_meta, _ = case("state_deleted")
    assert extract_wechat(deleted, deleted_meta["url"]) == {
        "kind": "wechat",
        "state": STATE_DELETED,
        "url": deleted_meta["url"],
    }
