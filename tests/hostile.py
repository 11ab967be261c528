"""A corpus of XSS vectors and checks that an output holds none of them in executable form.

Each vector, if it ever ran, would set `window.__xss` or open a dialog; the checks parse
outputs as HTML (the way a browser or a feed reader would) instead of searching for strings.
"""

from __future__ import annotations

from collections.abc import Iterable

import lxml.html  # type: ignore[import-untyped]

P = "window.__xss=1"

XSS_VECTORS: tuple[str, ...] = (
    f"<script>{P}</script>",
    "<SCRIPT SRC=//127.0.0.1:9/x.js></SCRIPT>",
    f"<script>/*</script><script>{P}//*/</script>",
    f"<img src=x onerror={P}>",
    f"<img src=x onerror='{P}'>",
    f'<IMG SRC="javascript:{P}">',
    f"<img src=javascript:{P}>",
    f'<img src=x:x onerror="{P}">',
    f"<img src=`x`onerror={P}>",
    f"<svg onload={P}>",
    f"<svg><script>{P}</script></svg>",
    f'<svg><a xlink:href="javascript:{P}"><text x="20" y="20">点</text></a></svg>',
    f"<svg><animate onbegin={P} attributeName=x dur=1s>",
    f"<math><mtext><table><mglyph><style><img src=x onerror={P}></style></mglyph></table></mtext></math>",
    f"<body onload={P}>",
    f"<iframe src=javascript:{P}></iframe>",
    f'<iframe srcdoc="<script>parent.{P}</script>"></iframe>',
    f"<object data=javascript:{P}></object>",
    f"<embed src=javascript:{P}>",
    f'<a href="javascript:{P}">点我</a>',
    f'<a href="JaVaScRiPt:{P}">点我</a>',
    f'<a href="&#106;avascript:{P}">点我</a>',
    f'<a href="jav&#x09;ascript:{P}">点我</a>',
    f'<a href=" javascript:{P}">点我</a>',
    '<a href="vbscript:msgbox(1)">点我</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9MTwvc2NyaXB0Pg==">点我</a>',
    f'<a href="#" onclick="{P}">点我</a>',
    f'<div onmouseover="{P}">悬停</div>',
    f'<p style="background:url(javascript:{P})">样式</p>',
    f'<p style="width:expression({P})">样式</p>',
    f"<style>@import 'javascript:{P}';</style>",
    f'<link rel="stylesheet" href="javascript:{P}">',
    f'<meta http-equiv="refresh" content="0;url=javascript:{P}">',
    f'<base href="javascript:{P}//">',
    f'<form action="javascript:{P}"><button>提交</button></form>',
    f'<input autofocus onfocus="{P}">',
    f'<details open ontoggle="{P}">',
    f'<video><source onerror="{P}"></video>',
    f'<audio src=x onerror="{P}">',
    f'<marquee onstart="{P}">滚动</marquee>',
    f"<isindex action=javascript:{P} type=image>",
    f'<table background="javascript:{P}">',
    '<div style="behavior:url(x.htc)">行为</div>',
    f'"><script>{P}</script>',
    f"'><img src=x onerror={P}>",
    f"</title><script>{P}</script>",
    f"</textarea><script>{P}</script>",
    f'<!--<img src="--><img src=x onerror={P}//">',
    f"<![CDATA[<script>{P}</script>]]>",
    f"]]><script>{P}</script>",
    f"<scr<script>ipt>{P}</scr</script>ipt>",
    f"<<script>script>{P}<</script>/script>",
    f'<noscript><p title="</noscript><img src=x onerror={P}>">',
    f"<xmp><script>{P}</script></xmp>",
    f'<template><img src=x onerror="{P}"></template>',
    "<img src=x onerror=&#119;indow.__xss=1>",
    f'<a href="javascript&colon;{P}">点我</a>',
    f"<plaintext><script>{P}</script>",
)

# Tags that run or load code by themselves. <meta> counts only as a refresh, <link>/<form> only
# through a dangerous URL (checked with the other URL attributes below).
DANGEROUS_TAGS = frozenset(
    {"script", "iframe", "object", "embed", "base", "frame", "frameset", "applet", "svg", "math"}
)
DANGEROUS_SCHEMES = ("javascript:", "vbscript:", "data:text/html", "livescript:")


def _scheme(value: str) -> str:
    """A URL's scheme as a browser reads it: control and space characters inside are ignored."""
    cleaned = "".join(ch for ch in value if ord(ch) > 0x20).lower()
    return cleaned


def executable_parts(fragment: str, *, allow_style_tag: bool = False) -> list[str]:
    """What in an HTML fragment or document could run script, as a browser would parse it."""
    if not fragment.strip():
        return []
    found: list[str] = []
    root = (
        lxml.html.fromstring(f"<div>{fragment}</div>")
        if "<html" not in fragment[:200].lower()
        else lxml.html.fromstring(fragment)
    )
    for el in root.iter():
        tag = el.tag if isinstance(el.tag, str) else ""
        name = tag.lower().split("}")[-1]
        if name in DANGEROUS_TAGS:
            found.append(f"<{name}>")
        if name == "style" and not allow_style_tag:
            found.append("<style>")
        if name == "meta" and str(el.get("http-equiv", "")).lower() == "refresh":
            found.append("<meta refresh>")
        for attr, value in el.attrib.items():
            a = str(attr).lower()
            if a.startswith("on"):
                found.append(f"{name}[{a}]")
            url_attr = a in {"href", "src", "action", "formaction", "xlink:href", "data", "background", "poster"}
            if a == "srcdoc" or (url_attr and _scheme(str(value)).startswith(DANGEROUS_SCHEMES)):
                found.append(f"{name}[{a}={value[:40]}]")
            if a == "style" and ("expression(" in value.lower() or "javascript:" in _scheme(value)):
                found.append(f"{name}[style]")
    return found


def all_executable(fragments: Iterable[str], **kwargs: bool) -> list[str]:
    out: list[str] = []
    for fragment in fragments:
        out.extend(executable_parts(fragment, **kwargs))
    return out
