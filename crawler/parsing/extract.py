"""`zhuanlan extract`: pick the right parser for a saved page and return JSON-ready fields."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

WECHAT_HOSTS = ("mp.weixin.qq.com", "weixin.sogou.com")
_WECHAT_MARKERS = (b"var biz", b"js_content", b"cgiDataNew", b"rich_media", b"weui-msg", b"wappoc_appmsgcaptcha")


def is_wechat(body: bytes, url: str) -> bool:
    """A WeChat page by its host, or by markers only WeChat pages carry."""
    host = (urlsplit(url).hostname or "").lower()
    if host in WECHAT_HOSTS:
        return True
    head = body[:400_000]
    return sum(marker in head for marker in _WECHAT_MARKERS) >= 2


def extract_page(body: bytes, url: str, *, content_type: str | None = None) -> dict[str, Any]:
    if is_wechat(body, url):
        from crawler.parsing.wechat import extract_wechat

        fields = extract_wechat(body, url)
        fields.setdefault("kind", "wechat")
        return fields
    from crawler.parsing.site_article import extract_site

    fields = extract_site(body, url, content_type)
    fields.setdefault("kind", "site")
    return fields
