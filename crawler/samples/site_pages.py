"""Unit-website pages of the samples, one renderer family per CMS look-alike.

Owns the markup of: the work committee's site (plain HTML list with 「下一页」), a Hanweb-like site
(`<datastore>` CDATA list, `dataproxy.jsp` XML, `#zoom` articles), a TRS-like site (`createPageHTML`
pager, `.TRS_Editor`), an old GBK ASP site (no charset anywhere) and a site with visible 发布时间/
来源/作者 labels (a commented-out stale 来源, 成文日期 beside 发布日期, one meta charset that lies).
Pure functions returning text; the server encodes it (GBK for the ASP site).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import quote

from crawler.samples.catalog import Catalog, SiteItem, SiteSpec, spec
from crawler.samples.content import ACCOUNT_NAME, COLUMN, REVIEWER, unit_name

DATAPROXY_PATH = "/kjj/module/web/jpage/dataproxy.jsp"
HANWEB_WEBID = "21"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def source_label(item: SiteItem) -> str:
    """The page's 来源: the WeChat account for reposts, the author's unit for first publications."""
    return unit_name(item.story.unit) if item.original else ACCOUNT_NAME


def _top(item: SiteItem, sep: str = " ") -> list[str]:
    """Lines above the text: credit lines (来源 on top), then the byline — as the story prints them."""
    by = item.story.byline
    top = by.top(sep) if by else None
    return [*item.story.head, *([top] if top else [])]


def _end(item: SiteItem, sep: str = " ") -> list[str]:
    """Lines below the text: a closing byline or 作者系 note, then credit lines (撰稿, 供稿…)."""
    by = item.story.byline
    end = by.end(sep) if by else None
    return [*([end] if end else []), *item.story.tail]


def _names(item: SiteItem) -> str:
    """The byline's names as an author field shows them (「刘文博 邱敏」)."""
    by = item.story.byline
    return " ".join(by.names) if by else ""


def _written_date(item: SiteItem) -> str:
    days = item.story.written_days_ago
    when = item.published - timedelta(days=(days - item.story.days_ago)) if days is not None else item.published
    return f"{when.year}年{when.month}月{when.day}日"


def _paragraph_texts(item: SiteItem) -> list[str]:
    return [p.replace("{written_date}", _written_date(item)) for p in item.paragraphs]


def _neighbours(catalog: Catalog, item: SiteItem) -> tuple[SiteItem | None, SiteItem | None]:
    items = catalog.site_list(item.site)
    if item not in items:
        return None, None
    pos = items.index(item)
    newer = items[pos - 1] if pos > 0 else None
    older = items[pos + 1] if pos + 1 < len(items) else None
    return newer, older


# --- 中共临溪市直机关工委: 临溪机关党建网 (list type html) ---------------------------------------


def _committee_head(title: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="renderer" content="webkit">
<title>{_e(title)}-临溪机关党建网</title>
<link rel="stylesheet" href="/jgdj/css/main.css">
</head>
<body>
<div class="top">
  <div class="logo"><a href="/jgdj/">临溪机关党建网</a></div>
  <ul class="nav">
    <li><a href="/jgdj/">首页</a></li>
    <li><a href="/jgdj/djyw/">党建要闻</a></li>
    <li class="on"><a href="/jgdj/xxgc/index.html">{_e(COLUMN)}</a></li>
    <li><a href="/jgdj/gzdt/">工作动态</a></li>
    <li><a href="/jgdj/mfjg/">模范机关创建</a></li>
  </ul>
</div>
"""


_COMMITTEE_FOOT = """<div class="footer">
  <p>主办：中共临溪市直机关工委　地址：临溪市行政中心三号楼　电话：0000-8520000</p>
  <p>版权所有：中共临溪市直机关工委　示例ICP备00000000号</p>
</div>
</body>
</html>
"""


def committee_list_path(page: int) -> str:
    return "/jgdj/xxgc/index.html" if page == 1 else f"/jgdj/xxgc/index_{page}.html"


def render_committee_list(catalog: Catalog, page: int) -> str:
    pages = catalog.page_count("jgdj")
    items = catalog.site_page("jgdj", page)
    rows = "\n".join(
        f'    <li><span class="time">{i.published:%Y-%m-%d}</span><a href="{_e(i.href)}" target="_blank" '
        f'title="{_e(i.title)}">{_e(i.title)}</a></li>'
        for i in items
    )

    def link(n: int) -> str:
        return committee_list_path(n).rsplit("/", 1)[1]

    prev = f'<a href="{link(page - 1)}">上一页</a>' if page > 1 else "<span>上一页</span>"
    nxt = f'<a href="{link(page + 1)}">下一页</a>' if page < pages else "<span>下一页</span>"
    total = len(catalog.site_list("jgdj"))
    return (
        _committee_head(COLUMN)
        + f"""<div class="location">您当前的位置：<a href="/jgdj/">首页</a> &gt; <a href="/jgdj/xxgc/index.html">{_e(COLUMN)}</a></div>
<div class="main">
  <div class="list-box">
    <h2 class="list-title">{_e(COLUMN)}</h2>
    <ul class="news-list">
{rows}
    </ul>
    <div class="pages">共{total}条　{page}/{pages}页　<a href="{link(1)}">首页</a> {prev} {nxt} <a href="{link(pages)}">尾页</a></div>
  </div>
  <div class="side">
    <h3>专题专栏</h3>
    <ul class="side-list"><li><a href="/jgdj/mfjg/">模范机关创建</a></li><li><a href="/jgdj/qnll/">青年理论学习</a></li></ul>
  </div>
</div>
"""
        + _COMMITTEE_FOOT
    )


def render_committee_article(catalog: Catalog, item: SiteItem) -> str:
    s = item.story
    paras = "\n".join(f'<p style="text-indent: 2em;">{_e(p)}</p>' for p in _paragraph_texts(item))
    byline = "".join(f'<p style="text-align: center;">{_e(line)}</p>\n' for line in _top(item))
    closing = "".join(f'<p style="text-align: right;">{_e(line)}</p>\n' for line in _end(item))
    newer, older = _neighbours(catalog, item)
    prev_link = f'<a href="{_e(older.href)}">{_e(older.title)}</a>' if older else "没有了"
    next_link = f'<a href="{_e(newer.href)}">{_e(newer.title)}</a>' if newer else "没有了"
    return (
        _committee_head(s.full_title)
        + f"""<div class="location">您当前的位置：<a href="/jgdj/">首页</a> &gt; <a href="/jgdj/xxgc/index.html">{_e(COLUMN)}</a> &gt; 正文</div>
<div class="main">
  <div class="article">
    <h1 class="art-title">{_e(item.title)}</h1>
    <div class="art-info"><span>发布时间：{item.published:%Y-%m-%d %H:%M}</span>　<span>来源：{_e(source_label(item))}</span>　<span class="fontsize">【字号：<a href="javascript:;">大</a> <a href="javascript:;">中</a> <a href="javascript:;">小</a>】</span></div>
    <div class="art-content" id="artContent">
{byline}{paras}
{closing}<p style="text-align: right;">（编辑：{_e(s.editor)}　审核：{_e(REVIEWER)}）</p>
    </div>
    <div class="art-tools"><a href="javascript:window.print();">打印本页</a> <a href="javascript:window.close();">关闭窗口</a></div>
    <div class="art-nav">
      <p>上一篇：{prev_link}</p>
      <p>下一篇：{next_link}</p>
    </div>
  </div>
</div>
"""
        + _COMMITTEE_FOOT
    )


# --- 市科学技术局: Hanweb-like (list type hanweb_datastore) --------------------------------------

HANWEB_LIST_PATH = "/kjj/col/col1234/index.html"


def _hanweb_record(item: SiteItem) -> str:
    return (
        f'<record><![CDATA[<li><a href="{_e(item.href)}" title="{_e(item.title)}" target="_blank">'
        f"{_e(item.title)}</a><span>{item.published:%Y-%m-%d}</span></li>]]></record>"
    )


def _dataproxy_href(s: SiteSpec, start: int, end: int) -> str:
    return (
        # Raw "&" as Hanweb writes it: the link sits in CDATA, not in HTML text.
        f"{DATAPROXY_PATH}?page=1&webid={HANWEB_WEBID}&path=/kjj/&columnid={s.column_id}"
        f"&unitid={s.unit_id}&webname={quote('临溪市科学技术局')}&permissiontype=0"
        f"&startrecord={start}&endrecord={end}&perpage={s.per_page}"
    )


def _nextgroup(catalog: Catalog, after: int) -> str:
    """The `<nextgroup>` of a datastore whose records end at 1-based record `after`."""
    s = spec("kjj")
    total = len(catalog.site_list("kjj"))
    if after >= total:
        return "<nextgroup><![CDATA[]]></nextgroup>"
    return f'<nextgroup><![CDATA[<a href="{_dataproxy_href(s, after + 1, after + s.per_page)}"></a>]]></nextgroup>'


def render_hanweb_list(catalog: Catalog) -> str:
    s = spec("kjj")
    items = catalog.site_list("kjj")
    first = items[: s.per_page]
    records = "\n".join(_hanweb_record(i) for i in first)
    return f"""<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8" />
<meta name="SiteName" content="临溪市科学技术局">
<meta name="SiteDomain" content="kjj.linxi.example">
<meta name="SiteIDCode" content="0000000021">
<meta name="ColumnName" content="{_e(COLUMN)}">
<meta name="ColumnType" content="专题专栏">
<title>{_e(COLUMN)} 临溪市科学技术局</title>
<script type="text/javascript" src="/kjj/module/jslib/jquery/jquery.js"></script>
</head>
<body>
<div class="header"><div class="site-name">临溪市科学技术局</div>
<div class="nav"><a href="/kjj/index.html">首页</a><a href="/kjj/col/col1201/index.html">政务公开</a><a href="/kjj/col/col1234/index.html">专题专栏</a></div></div>
<div class="position">当前位置：<a href="/kjj/index.html">首页</a> &gt; <a href="/kjj/col/col1234/index.html">{_e(COLUMN)}</a></div>
<div class="main">
<div class="column-name">{_e(COLUMN)}</div>
<div class="default_pgContainer" id="{s.column_id}">
<script type="text/xml"><datastore>
{_nextgroup(catalog, len(first))}
<recordset>
{records}
</recordset>
</datastore></script>
</div>
<script language="javascript" src="/kjj/module/jslib/jquery/jpage/jquery.page.min.js"></script>
<script>
$(document).ready(function(){{
  $('#{s.column_id}').jpage({{
    dataStore: "",
    proxyUrl: "{DATAPROXY_PATH}",
    perPage: {s.per_page},
    totalRecord: {len(items)},
    groupSize: 1,
    barPosition: "bottom",
    ajaxParam: {{ col: 1, appid: 1, webid: {HANWEB_WEBID}, path: "/kjj/", columnid: {s.column_id}, sourceContentType: 1, unitid: {s.unit_id}, webname: "临溪市科学技术局", permissiontype: 0 }},
    showMode: "full"
  }});
}});
</script>
</div>
<div class="footer">主办单位：临溪市科学技术局　网站标识码：0000000021　示例ICP备00000021号</div>
</body>
</html>
"""


def render_dataproxy(catalog: Catalog, start: int, end: int) -> str:
    """The XML answer of /module/web/jpage/dataproxy.jsp for 1-based records start..end."""
    items = catalog.site_list("kjj")
    start = max(1, start)
    end = max(start, min(end, len(items)))
    chosen = items[start - 1 : end]
    pages = catalog.page_count("kjj")
    records = "\n".join(_hanweb_record(i) for i in chosen)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<datastore>
{_nextgroup(catalog, start - 1 + len(chosen)) if chosen else "<nextgroup><![CDATA[]]></nextgroup>"}
<totalrecord>{len(items)}</totalrecord>
<totalpage>{pages}</totalpage>
<recordset>
{records}
</recordset>
</datastore>
"""


def render_hanweb_article(catalog: Catalog, item: SiteItem) -> str:
    s = item.story
    label = source_label(item)
    body = [f'<p style="text-align: center;">{_e(line)}</p>' for line in _top(item)]
    body.extend(f"<p>　　{_e(p)}</p>" for p in _paragraph_texts(item))
    body.extend(f'<p style="text-align: right;">{_e(line)}</p>' for line in _end(item))
    if not item.original:
        body.append("<p>　　（转自“临溪机关党建”微信公众号）</p>")
    desc = s.paragraphs[0][:60]
    return f"""<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8" />
<meta name="SiteName" content="临溪市科学技术局">
<meta name="SiteDomain" content="kjj.linxi.example">
<meta name="SiteIDCode" content="0000000021">
<meta name="ColumnName" content="{_e(COLUMN)}">
<meta name="ColumnType" content="专题专栏">
<meta name="ArticleTitle" content="{_e(item.title)}">
<meta name="PubDate" content="{item.published:%Y-%m-%d %H:%M}">
<meta name="ContentSource" content="{_e(label)}">
<meta name="Keywords" content="">
<meta name="Author" content="">
<meta name="Description" content="{_e(desc)}">
<meta name="Url" content="{_e(item.path)}">
<title>{_e(item.title)}_临溪市科学技术局</title>
</head>
<body>
<div class="header"><div class="site-name">临溪市科学技术局</div></div>
<div class="position">当前位置：<a href="/kjj/index.html">首页</a> &gt; <a href="{HANWEB_LIST_PATH}">{_e(COLUMN)}</a></div>
<div class="main-content">
  <div class="title">{_e(item.title)}</div>
  <div class="info">
    <span>发布日期：{item.published:%Y-%m-%d}</span>
    <span>浏览次数：<script language="javascript" src="/kjj/module/visitcount/articlehits.jsp?colid=1234&artid={item.doc_id}"></script></span>
    <span>信息来源：<!--<$[信息来源]>begin-->{_e(label)}<!--<$[信息来源]>end--></span>
    <span>字号：[ <a href="javascript:doZoom(18)">大</a> <a href="javascript:doZoom(16)">中</a> <a href="javascript:doZoom(14)">小</a> ]</span>
  </div>
  <div class="main-txt" id="zoom">
<!--<$[信息内容]>begin--><meta name="ContentStart">{"".join(body)}<meta name="ContentEnd"><!--<$[信息内容]>end-->
  </div>
  <div class="operate">【<a href="javascript:window.print()">打印本页</a>】【<a href="javascript:window.close()">关闭窗口</a>】</div>
</div>
<div class="footer">主办单位：临溪市科学技术局　网站标识码：0000000021　示例ICP备00000021号</div>
</body>
</html>
"""


# --- 市财政局: TRS-like (list type trs_js_pager) ------------------------------------------------

TRS_PAGE_JS_PATH = "/czj/images/page.js"
TRS_PAGE_JS = """function createPageHTML(_nPageCount, _nCurrIndex, _sPageName, _sPageExt){
  if(_nPageCount == null || _nPageCount <= 1){ return; }
  var nCurrIndex = _nCurrIndex || 0;
  if(nCurrIndex == 0){ document.write("<span>首页</span>"); }
  else { document.write("<a href=\\"" + _sPageName + "." + _sPageExt + "\\">首页</a>"); }
  for(var i = 1; i < _nPageCount; i++){
    if(nCurrIndex == i){ document.write("<span>" + (i + 1) + "</span>"); }
    else { document.write("<a href=\\"" + _sPageName + "_" + i + "." + _sPageExt + "\\">" + (i + 1) + "</a>"); }
  }
}
"""


def trs_list_path(page_index: int) -> str:
    """Page k (0-based) of the TRS list: index.html, index_1.html, …"""
    return "/czj/gzdt/index.html" if page_index == 0 else f"/czj/gzdt/index_{page_index}.html"


def _trs_head(title: str, extra_meta: str = "") -> str:
    return f"""<!DOCTYPE html>
<html>
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<meta name="SiteName" content="临溪市财政局">
<meta name="SiteDomain" content="czj.linxi.example">
<meta name="SiteIDCode" content="0000000032">
<meta name="ColumnName" content="工作动态">
<meta name="ColumnType" content="工作动态">
{extra_meta}<title>{_e(title)}</title>
<script type="text/javascript" src="{TRS_PAGE_JS_PATH}"></script>
</head>
<body>
<div class="head"><div class="logo">临溪市财政局</div>
<ul class="menu"><li><a href="/czj/">首页</a></li><li><a href="/czj/gzdt/">工作动态</a></li><li><a href="/czj/zcfg/">政策法规</a></li><li><a href="/czj/zwgk/">政务公开</a></li></ul></div>
"""


_TRS_FOOT = """<div class="foot">主办：临溪市财政局　网站标识码：0000000032　示例ICP备00000032号</div>
</body>
</html>
"""


def render_trs_list(catalog: Catalog, page_index: int) -> str:
    pages = catalog.page_count("czj")
    items = catalog.site_page("czj", page_index + 1)
    rows = "\n".join(
        f'<li><a href="{_e(i.href)}" target="_blank" title="{_e(i.title)}">{_e(i.title)}</a>'
        f"<span>{i.published:%Y-%m-%d}</span></li>"
        for i in items
    )
    return (
        _trs_head("工作动态-临溪市财政局")
        + f"""<div class="position">当前位置：<a href="../">首页</a> &gt; <a href="./">工作动态</a></div>
<div class="list-main">
<ul class="list">
{rows}
</ul>
<div class="page">
<script type="text/javascript">
var currentPage = {page_index};//所在页从0开始
var prevPage = currentPage-1//上一页
var nextPage = currentPage+1//下一页
var countPage = {pages}//共多少页
createPageHTML({pages}, {page_index}, "index", "html");
</script>
</div>
</div>
"""
        + _TRS_FOOT
    )


def render_trs_article(catalog: Catalog, item: SiteItem) -> str:
    s = item.story
    label = source_label(item)
    body = [f'<p align="center">{_e(line)}</p>' for line in _top(item, "　")]
    body.extend(f'<p align="justify">　　{_e(p)}</p>' for p in _paragraph_texts(item))
    body.extend(f'<p align="right">{_e(line)}</p>' for line in _end(item, "　"))
    meta = (
        f'<meta name="ArticleTitle" content="{_e(item.title)}">\n'
        f'<meta name="PubDate" content="{item.published:%Y-%m-%d %H:%M}">\n'
        f'<meta name="ContentSource" content="{_e(label)}">\n'
        '<meta name="Keywords" content="">\n<meta name="Author" content="">\n'
        f'<meta name="Description" content="{_e(s.paragraphs[0][:60])}">\n'
    )
    return (
        _trs_head(f"{item.title}-临溪市财政局", meta)
        + f"""<div class="position">当前位置：<a href="../../">首页</a> &gt; <a href="../">工作动态</a></div>
<div class="article">
  <h1 class="article-title">{_e(item.title)}</h1>
  <div class="article-meta">
    <span>发布时间：{item.published:%Y-%m-%d %H:%M}</span>
    <span>来源：{_e(label)}</span>
    <span class="font">【字体：<a href="javascript:;">大</a> <a href="javascript:;">中</a> <a href="javascript:;">小</a>】</span>
  </div>
  <div class="article-body">
<div class="TRS_Editor">{"".join(body)}</div>
  </div>
  <div class="editor">【责任编辑：何静】</div>
</div>
"""
        + _TRS_FOOT
    )


# --- 市教育局: an old GBK ASP site, no charset anywhere (list type html) --------------------------


def gbk_list_path(page: int) -> str:
    return "/jyj/news/list.asp" if page == 1 else f"/jyj/news/list.asp?page={page}"


def _gbk_head(title: str) -> str:
    # No <meta charset> and (in the server) a Content-Type without charset: the bytes are GBK.
    return f"""<html>
<head>
<title>{_e(title)}</title>
<link href="../css/style.css" rel="stylesheet" type="text/css">
</head>
<body topmargin="0" leftmargin="0">
<table width="980" border="0" align="center" cellpadding="0" cellspacing="0" class="top">
<tr><td class="logo">临溪市教育局</td></tr>
<tr><td class="menu"><a href="../index.asp">首页</a> | <a href="list.asp">教育动态</a> | <a href="../zwgk/index.asp">政务公开</a> | <a href="../bszn/index.asp">办事指南</a></td></tr>
</table>
"""


_GBK_FOOT = """<table width="980" border="0" align="center" cellpadding="0" cellspacing="0" class="bottom">
<tr><td align="center">版权所有：临溪市教育局　地址：临溪市育才路18号　示例ICP备00000043号</td></tr>
</table>
</body>
</html>
"""


def render_gbk_list(catalog: Catalog, page: int) -> str:
    pages = catalog.page_count("jyj")
    items = catalog.site_page("jyj", page)
    total = len(catalog.site_list("jyj"))
    rows = "\n".join(
        f'<tr><td class="dot">·</td><td><a href="{_e(i.href)}" target="_blank">{_e(i.title)}</a></td>'
        f'<td class="date">[{i.published:%Y-%m-%d}]</td></tr>'
        for i in items
    )
    nxt = f'<a href="list.asp?page={page + 1}">下一页</a>' if page < pages else "下一页"
    prev = f'<a href="list.asp?page={page - 1}">上一页</a>' if page > 1 else "上一页"
    return (
        _gbk_head("教育动态 - 临溪市教育局")
        + f"""<table width="980" border="0" align="center" cellpadding="0" cellspacing="0">
<tr><td class="local">当前位置：首页 &gt;&gt; 教育动态</td></tr>
<tr><td>
<table width="100%" border="0" cellpadding="0" cellspacing="0" class="news-list">
{rows}
</table>
</td></tr>
<tr><td class="pagelist">共{total}条记录　页次：{page}/{pages}　<a href="list.asp">首页</a> {prev} {nxt} <a href="list.asp?page={pages}">尾页</a></td></tr>
</table>
"""
        + _GBK_FOOT
    )


def render_gbk_article(catalog: Catalog, item: SiteItem) -> str:
    author = _names(item) or "办公室"
    body = [f'<p align="center">{_e(line)}</p>' for line in _top(item)]
    body.extend(f"<p>　　{_e(p)}</p>" for p in _paragraph_texts(item))
    body.extend(f'<p align="right">{_e(line)}</p>' for line in _end(item))
    when = item.published
    return (
        _gbk_head(f"{item.title} - 临溪市教育局")
        + f"""<table width="980" border="0" align="center" cellpadding="0" cellspacing="0" class="article">
<tr><td class="local">当前位置：首页 &gt;&gt; <a href="list.asp">教育动态</a> &gt;&gt; 正文</td></tr>
<tr><td class="title" align="center">{_e(item.title)}</td></tr>
<tr><td class="info" align="center">作者：{_e(author)}　　来源：{_e(source_label(item))}　　发布时间：{when.year}-{when.month}-{when.day} {when:%H:%M:%S}　　点击数：<script src="count.asp?id={item.doc_id}"></script></td></tr>
<tr><td class="content" id="fontzoom">{"".join(body)}</td></tr>
<tr><td class="close" align="right">【<a href="javascript:window.close()">关闭窗口</a>】</td></tr>
</table>
"""
        + _GBK_FOOT
    )


# --- 市卫生健康委员会: visible labels, a lying meta charset (list type page_num) -------------------

LABELS_LIST_PATH = "/wjw/gzdt/index.html"


def labels_list_query(page: int) -> str:
    return f"uid={spec('wjw').unit_id}&pageNum={page}"


def _labels_head(title: str, charset: str = "utf-8") -> str:
    return f"""<!DOCTYPE html>
<html>
<head>
<meta http-equiv="Content-Type" content="text/html; charset={charset}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
</head>
<body>
<div class="header"><h1 class="site-title">临溪市卫生健康委员会</h1>
<div class="nav"><a href="/wjw/">首页</a><a href="{LABELS_LIST_PATH}?{labels_list_query(1)}">工作动态</a><a href="/wjw/tzgg/">通知公告</a><a href="/wjw/zwgk/">政务公开</a></div></div>
"""


_LABELS_FOOT = """<div class="footer">主办单位：临溪市卫生健康委员会　网站标识码：0000000054　示例ICP备00000054号</div>
</body>
</html>
"""


def render_labels_list(catalog: Catalog, page: int) -> str:
    pages = catalog.page_count("wjw")
    items = catalog.site_page("wjw", page)
    rows = "\n".join(
        f'  <li><a href="{_e(i.href)}" title="{_e(i.title)}" target="_blank">{_e(i.title)}</a>'
        f'<span class="date">{i.published:%Y-%m-%d}</span></li>'
        for i in items
    )
    nxt = (
        f'<a class="next" href="?{labels_list_query(page + 1).replace("&", "&amp;")}">下一页</a>'
        if page < pages
        else ""
    )
    return (
        _labels_head("工作动态_临溪市卫生健康委员会")
        + f"""<div class="crumbs">当前位置：<a href="/wjw/">首页</a> &gt; 工作动态</div>
<div class="list-wrap">
<ul class="news-list">
{rows}
</ul>
<div class="pager">第{page}页 共{pages}页 {nxt}</div>
</div>
"""
        + _LABELS_FOOT
    )


def render_labels_article(catalog: Catalog, item: SiteItem) -> str:
    s = item.story
    # One page declares gb2312 while its bytes are UTF-8 (a real-world trap).
    charset = "gb2312" if s.key == "wjw-n1" else "utf-8"
    info = [f"<span>发布时间：{item.published:%Y-%m-%d %H:%M}</span>"]
    if s.key == "wjw-3":
        # A stale 来源 left in a comment by the template: extractors must strip comments first.
        info.append("<!-- <span>来源：临溪日报</span> -->")
    info.append(f"<span>来源：{_e(source_label(item))}</span>")
    if s.byline:
        info.append(f"<span>作者：{_e(_names(item))}</span>")
    elif s.kind == "news":
        info.append("<span>作者：医政医管科</span>")
    info.append('<span>浏览次数：<em id="hits">0</em></span>')
    table = ""
    if s.written_days_ago is not None:
        written = _written_date(item)
        table = f"""<table class="xxgk-table">
<tr><th>索引号：</th><td>LX-WJW-{item.doc_id:05d}</td><th>发文机关：</th><td>市卫生健康委员会</td></tr>
<tr><th>成文日期：</th><td>{written}</td><th>发布日期：</th><td>{item.published.year}年{item.published.month}月{item.published.day}日</td></tr>
<tr><th>文号：</th><td>临卫发〔{item.published.year}〕{item.doc_id % 97}号</td><th>主题分类：</th><td>卫生健康</td></tr>
</table>
"""
    body = [f'<p style="text-align:center">{_e(line)}</p>' for line in _top(item)]
    paras = _paragraph_texts(item)
    if s.kind == "notice":
        # Salutation flush left, signature and date right-aligned, as notices are laid out.
        body.append(f"<p>{_e(paras[0])}</p>")
        body.extend(f'<p style="text-indent:2em">{_e(p)}</p>' for p in paras[1:-2])
        body.extend(f'<p style="text-align:right">{_e(p)}</p>' for p in paras[-2:])
    else:
        body.extend(f'<p style="text-indent:2em">{_e(p)}</p>' for p in paras)
    body.extend(f'<p style="text-align:right">{_e(line)}</p>' for line in _end(item))
    newer, older = _neighbours(catalog, item)
    nav = ""
    if older:
        nav += f'<p>上一篇：<a href="{_e(older.href)}">{_e(older.title)}</a></p>'
    if newer:
        nav += f'<p>下一篇：<a href="{_e(newer.href)}">{_e(newer.title)}</a></p>'
    return (
        _labels_head(f"{item.title}_临溪市卫生健康委员会", charset)
        + f"""<div class="crumbs">当前位置：<a href="/wjw/">首页</a> &gt; <a href="{LABELS_LIST_PATH}?{labels_list_query(1).replace("&", "&amp;")}">工作动态</a></div>
<div class="detail">
{table}<h2 class="detail-title">{_e(item.title)}</h2>
<div class="detail-info">{" ".join(info)}</div>
<div class="detail-content" id="content">
{"".join(body)}
</div>
<div class="detail-nav">{nav}</div>
<div class="detail-tools"><a href="javascript:window.print()">【打印】</a><a href="javascript:window.close()">【关闭】</a></div>
</div>
"""
        + _LABELS_FOOT
    )


def render_site_article(catalog: Catalog, item: SiteItem) -> str:
    kind = spec(item.site).kind
    renderer = {
        "committee": render_committee_article,
        "hanweb": render_hanweb_article,
        "trs": render_trs_article,
        "gbk": render_gbk_article,
        "labels": render_labels_article,
    }[kind]
    return renderer(catalog, item)


def article_encoding(item: SiteItem) -> str:
    return "gbk" if item.site == "jyj" else "utf-8"


def published_of(items: Sequence[SiteItem]) -> datetime | None:
    return max((i.published for i in items), default=None)
