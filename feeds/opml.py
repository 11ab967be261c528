"""The feed directory: an OPML 2.0 subscription list and a simple Chinese HTML index page.

Pure: bytes from the list of `FeedSpec`s. Neither document carries a build time, so they
are byte-identical when the set of feeds is unchanged (and are then not rewritten).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html import escape
from typing import TYPE_CHECKING

from feeds.build import clean_xml_text, feed_url, plain_text

if TYPE_CHECKING:
    from feeds.build import FeedSpec

GROUPS = (("all", "全部"), ("column", "专栏"), ("unit", "单位"), ("topic", "主题"))


def build_opml(specs: list[FeedSpec], base_url: str, title: str) -> bytes:
    """OPML grouped by kind (all, columns, units, topics); each outline points at the RSS file."""
    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = plain_text(title)
    body = ET.SubElement(opml, "body")
    for kind, label in GROUPS:
        members = [s for s in specs if s.kind == kind]
        if not members:
            continue
        group = ET.SubElement(body, "outline", text=label, title=label)
        for s in members:
            name = plain_text(s.title)
            ET.SubElement(
                group,
                "outline",
                type="rss",
                text=name,
                title=name,
                xmlUrl=feed_url(base_url, s.path, "rss"),
                htmlUrl=f"{base_url}/",
            )
    ET.indent(opml)
    return bytes(ET.tostring(opml, encoding="UTF-8", xml_declaration=True)) + b"\n"


def build_index_html(specs: list[FeedSpec], base_url: str, title: str) -> bytes:
    """A plain feed directory page: one list per kind, RSS / Atom / JSON links per feed."""
    parts = [
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(clean_xml_text(title))}</title>",
        *(
            f'<link rel="alternate" type="application/atom+xml" title="{escape(plain_text(s.title))}" '
            f'href="{escape(feed_url(base_url, s.path, "atom"))}">'
            for s in specs
            if s.kind == "all"
        ),
        "<style>body{font-family:sans-serif;max-width:720px;margin:1em auto;padding:0 1em;line-height:1.6}"
        "li{margin:.3em 0}a{color:#0b5394}</style></head><body>",
        f"<h1>{escape(clean_xml_text(title))}</h1>",
        "<p>可将下列订阅源地址添加到 RSS 阅读器中，及时获取专栏文章全文。"
        f'也可下载 <a href="{escape(base_url)}/feeds/index.opml">OPML 订阅列表</a> 一次导入全部订阅源。</p>',
    ]
    for kind, label in GROUPS:
        members = [s for s in specs if s.kind == kind]
        if not members:
            continue
        parts.append(f"<h2>{label}</h2><ul>")
        for s in members:
            links = "　".join(
                f'<a href="{escape(feed_url(base_url, s.path, ext))}">{name}</a>'
                for ext, name in (("rss", "RSS"), ("atom", "Atom"), ("json", "JSON"))
            )
            parts.append(f"<li>{escape(clean_xml_text(s.title))}　{links}</li>")
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "".join(parts).encode("utf-8")
