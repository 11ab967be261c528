"""A local HTTP server that misbehaves on purpose: one path per source fault.

`FaultServer` serves, on 127.0.0.1 and a free port:

- `/ok/index.html`: a healthy website column (three articles);
- `/list/<fault>/index.html`: a column whose list page IS the fault;
- `/article/<fault>/index.html`: a healthy column of three articles whose middle one is the fault;
- `/wx/<name>/mp/appmsgalbum?...`: a WeChat album (合集) with its article pages under `/wx/<name>/s`,
  misbehaving as the WeChat scenario `<name>` says (see `WECHAT`).

Every article has its own random Chinese text (seeded), so no two are near-duplicates of each other,
and `expected_titles()` tells which titles a correct crawl stores. Faults (`SITE_FAULTS`): a sleep
past the client's time limit, a connection reset (TCP RST, no answer), 403/404/500/503, the 412 瑞数
and 521 加速乐 JS challenges, a redirect loop, a 20 MB page (announced by Content-Length or not), a
truncated page (Content-Length larger than what is sent), binary garbage as text/html, bytes that
are neither UTF-8 nor GBK, and two misdeclared charsets that a correct reader still reads: UTF-8
declared over GBK bytes, gb2312 declared over UTF-8 bytes. Used by tests/test_faults_sources.py;
no network beyond loopback.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SLEEP_SECONDS = 8.0  # the timeout fault answers after this (the crawl's limit is 3 s)
HUGE_BYTES = 20 * 1024 * 1024
SEED = 20251126

# Common characters for article text; none of the "UTF-8 read as GBK" marker characters that
# `crawler.parsing.encoding.looks_mojibake` counts.
_CHARS = (
    "党的二十届四中全会精神学习贯彻落实推动高质量发展坚持以人民为中心思想理论武装干部群众工作机关建设"
    "创新改革开放经济社会治理现代化服务保障基层组织作风纪律法治生态文明乡村振兴科技教育卫生健康文化旅游"
    "交通水利农业工业城市规划安全应急财政预算审计统计市场监管人力资源住房保障民政退役军人事务体育外事"
    "研究部署要求任务目标措施成效问题短板责任担当实干争先奋进新征程谱写篇章凝聚力量汇聚智慧把握方向"
)
_PUNCT = "，。；、"

# Site faults: name -> what the list page (or, at article level, the faulty article page) does.
SITE_FAULTS = (
    "timeout",
    "reset",
    "http403",
    "http404",
    "http500",
    "http503",
    "ruishu412",
    "jsl521",
    "redirect_loop",
    "huge",
    "huge_unsized",
    "truncated",
    "binary",
    "wrong_charset",
    "mixed_charset",
    "lying_charset",
)
# Faults also tried at article level (the list is fine, the middle article is the fault).
ARTICLE_FAULTS = (
    "timeout",
    "reset",
    "http403",
    "http500",
    "ruishu412",
    "jsl521",
    "redirect_loop",
    "huge",
    "huge_unsized",
    "truncated",
    "binary",
    "wrong_charset",
    "mixed_charset",
    "lying_charset",
)
# Faults after which the page is still read correctly (its content is stored).
READABLE_FAULTS = frozenset({"wrong_charset", "lying_charset"})
# WeChat scenarios: name -> (what the album does, which article (1-based) misbehaves and how).
WECHAT: dict[str, tuple[str, int, str]] = {
    "wx-ok": ("ok", 0, ""),
    "wx-verify-album": ("verify", 0, ""),
    "wx-ret": ("json_ret", 0, ""),
    "wx-timeout-album": ("timeout", 0, ""),
    "wx-verify-article": ("ok", 2, "verify"),
    "wx-500-article": ("ok", 2, "http500"),
    "wx-reset-article": ("ok", 2, "reset"),
}
WECHAT_ARTICLES = 3
COLUMN = "学习贯彻党的二十届四中全会精神"
VERIFICATION_PAGE = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>环境异常</title></head><body>'
    '<div class="weui-msg"><h2 class="weui-msg__title">环境异常</h2>'
    '<p class="weui-msg__desc">当前环境异常，完成验证后即可继续访问。</p>'
    '<a href="javascript:;" class="weui-btn" id="js_verify">去验证</a></div>'
    '<script>var cgiData = {poc_token: "HtZ0uMockPocToken0123456789"};</script></body></html>'
)
RUISHU_PAGE = (
    "<html><head><meta charset='utf-8'><script>$_ts=window['$_ts'];if(!$_ts)$_ts={};$_ts.nsd=84;"
    "$_ts.cd='qoGcrAArk1';</script><script src='/list/ruishu412/xyz.js' r='m'></script></head><body></body></html>"
)
JSL_PAGE = (
    "<script>document.cookie=('__jsl_clearance_s=1764100000.2|0|Xyz%3D');"
    "location.href=location.pathname+location.search</script>"
)


@dataclass(frozen=True)
class PageArticle:
    title: str
    paragraphs: tuple[str, ...]
    day: int


def _text(rng: random.Random, length: int) -> str:
    out: list[str] = []
    while len(out) < length:
        out.extend(rng.choice(_CHARS) for _ in range(rng.randint(6, 14)))
        out.append(rng.choice(_PUNCT))
    return "".join(out[:length]).rstrip(_PUNCT) + "。"


def make_article(name: str, index: int) -> PageArticle:
    """The article `index` of the column or album `name`: same arguments, same article."""
    rng = random.Random(f"{SEED}:{name}:{index}")
    title = f"{_text(rng, 12).rstrip('。')}（{name} 第{index}篇）"
    paragraphs = tuple(_text(rng, 120) for _ in range(3))
    return PageArticle(title, paragraphs, 1 + (index + len(name)) % 20)


def site_article_html(article: PageArticle, charset: str = "utf-8") -> str:
    body = "".join(f"<p>{p}</p>" for p in article.paragraphs)
    return (
        f'<html><head><meta http-equiv="Content-Type" content="text/html; charset={charset}">'
        f"<title>{article.title}_临溪市测试局</title></head><body>"
        f'<div class="nav"><a href="/">首页</a></div><h1>{article.title}</h1>'
        f"<div class='info'><span>发布时间：2025-11-{article.day:02d} 09:00</span><span>来源：市测试局</span></div>"
        f'<div class="article-content"><p>市测试局党组书记、局长 王测试</p>{body}</div></body></html>'
    )


def site_list_html(prefix: str, name: str, charset: str = "utf-8") -> str:
    items = "".join(
        f'<li><a href="{prefix}/a{i}.html">{make_article(name, i).title}</a>'
        f"<span>2025-11-{make_article(name, i).day:02d}</span></li>"
        for i in (1, 2, 3)
    )
    return (
        f'<html><head><meta http-equiv="Content-Type" content="text/html; charset={charset}">'
        f"<title>工作动态</title></head><body><ul class='news-list'>{items}</ul></body></html>"
    )


def wechat_biz(name: str) -> str:
    """A distinct account id per album, so the albums' articles never share a canonical key."""
    return f"Mz{zlib.crc32(name.encode()):010d}A=="


def _wechat_ids(name: str, index: int) -> tuple[str, str, str]:
    mid = str(2247490000 + index * 10 + sum(map(ord, name)) % 7)
    return mid, "1", f"{index:02d}" + "ab" * 15


def wechat_album_html(base: str, name: str, continue_flag: bool) -> str:
    biz = wechat_biz(name)
    items = []
    for i in range(1, WECHAT_ARTICLES + 1):
        mid, idx, sn = _wechat_ids(name, i)
        link = f"{base}/wx/{name}/s?__biz={biz}&amp;mid={mid}&amp;idx={idx}&amp;sn={sn}&amp;chksm=ce5b{i}#rd"
        items.append(
            f'<li class="album__list-item js_album_item" data-msgid="{mid}" data-itemidx="{idx}" '
            f'data-link="{link}" data-title="{make_article(name, i).title}">'
            f'<span class="js_article_create_time">{1763000000 + i * 86400}</span></li>'
        )
    flag = "1" if continue_flag else "0"
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{COLUMN}</title></head><body>'
        f'<div id="js_tag_name">{COLUMN}</div><ul>{"".join(reversed(items))}</ul>'
        f"<script>window.cgiData = {{ albumId: '39204611876543{len(name):05d}', title: '{COLUMN}', "
        f"nick_name: '市直机关党建', continue_flag: '{flag}' * 1, reverse_continue_flag: '0' * 1 }};</script>"
        "</body></html>"
    )


def wechat_article_html(base: str, name: str, index: int) -> str:
    article = make_article(name, index)
    biz = wechat_biz(name)
    mid, idx, sn = _wechat_ids(name, index)
    body = "".join(f'<p><span leaf="">{p}</span></p>' for p in article.paragraphs)
    ct = 1763000000 + index * 86400
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><script>var biz = "{biz}" || "";'
        f'var sn = "{sn}" || ""; var mid = "{mid}" || ""; var idx = "{idx}" || "";</script>'
        f"<title>{article.title}</title></head><body id='activity-detail'>"
        f'<div id="js_article" class="rich_media"><div id="img-content">'
        f'<h1 class="rich_media_title" id="activity-name">{article.title}</h1>'
        f'<div class="rich_media_content" id="js_content"><p><span leaf="">市测试局党组书记、局长 王测试</span></p>'
        f"{body}</div></div></div>"
        f'<script>var item_show_type = "0"; var create_time = "{ct}" * 1; var ct = "{ct}";'
        f'var nickname = htmlDecode("市直机关党建"); var user_name = "gh_5a1c3e7d9b20";'
        f"var msg_title = '{article.title}'.html(false); var author = \"王测试\";"
        f'var msg_link = "{base}/wx/{name}/s?__biz={biz}\\x26amp;mid={mid}\\x26amp;idx={idx}\\x26amp;sn={sn}#rd";'
        "</script></body></html>"
    )


@dataclass(frozen=True)
class Action:
    """What the handler does: answer, sleep then answer, reset, truncate, or stream a huge body."""

    kind: str  # "answer" | "sleep" | "reset" | "truncate" | "stream"
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def _html(status: int, text: str | bytes, charset: str | None = "utf-8", **extra: str) -> Action:
    body = text.encode("utf-8") if isinstance(text, str) else text
    ctype = f"text/html; charset={charset}" if charset else "text/html"
    return Action("answer", status, (("Content-Type", ctype), *extra.items()), body)


def fault_action(fault: str, path: str, page: str) -> Action:
    """The faulty answer at `path`; `page` is the healthy page that the fault replaces or garbles."""
    if fault == "timeout":
        return Action("sleep", 200, (("Content-Type", "text/html; charset=utf-8"),), page.encode())
    if fault == "reset":
        return Action("reset")
    if fault.startswith("http"):
        status = int(fault[4:])
        return _html(status, f"<html><body><h1>{status}</h1><p>错误页面</p></body></html>")
    if fault == "ruishu412":
        return _html(412, RUISHU_PAGE, **{"Set-Cookie": "FSSBBIl1UgzbN7N80S=abc; path=/"})
    if fault == "jsl521":
        return _html(521, JSL_PAGE, None, **{"Set-Cookie": "__jsluid_s=abc123; path=/"})
    if fault == "redirect_loop":  # X.html -> X_loop.html -> X.html -> ...
        other = (
            path.replace("_loop.html", ".html") if path.endswith("_loop.html") else path.replace(".html", "_loop.html")
        )
        return Action("answer", 302, (("Location", other),))
    if fault == "huge":  # 20 MB announced by Content-Length
        return Action(
            "stream", 200, (("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(HUGE_BYTES)))
        )
    if fault == "huge_unsized":  # 20 MB without Content-Length: the size shows only as the bytes arrive
        return Action("stream", 200, (("Content-Type", "text/html; charset=utf-8"),))
    if fault == "truncated":
        return Action("truncate", 200, (("Content-Type", "text/html; charset=utf-8"),), page.encode())
    if fault == "binary":
        rng = random.Random(f"{SEED}:binary:{path}")
        return _html(200, bytes(rng.getrandbits(8) for _ in range(16_384)))
    if fault == "wrong_charset":  # declared UTF-8, bytes GBK
        return _html(200, page.encode("gbk"))
    if fault == "mixed_charset":  # declared UTF-8; bytes neither UTF-8 nor GBK all through
        data = page.encode("utf-8")
        half = len(data) // 2
        garbled = data[:half] + page[len(page) // 2 :].encode("gbk")
        return _html(200, garbled)
    if fault == "lying_charset":  # declared gb2312 in the header and the meta, bytes UTF-8
        return _html(200, page.replace("charset=utf-8", "charset=gb2312").encode("utf-8"), "gb2312")
    raise ValueError(f"unknown fault {fault!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Every spider of the crawl connects at once: the default backlog of 5 would drop connections,
    # and a dropped SYN is retried after 1 s, i.e. after the crawl's time limit.
    request_queue_size = 128


class FaultServer:
    """The fault server. `start()` returns the base URL; `requests` logs every path asked for."""

    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def hits(self, prefix: str) -> list[str]:
        with self._lock:
            return [p for p in self.requests if p.startswith(prefix)]

    # -- what each path answers -----------------------------------------------------------------

    def action(self, path: str, query: dict[str, str]) -> Action:
        with self._lock:
            self.requests.append(path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""))
        if path == "/robots.txt":
            return Action("answer", 200, (("Content-Type", "text/plain"),), b"User-agent: *\nAllow: /\n")
        parts = path.strip("/").split("/")
        if parts[0] == "ok" and len(parts) == 2:
            return self._column("/ok", "ok", parts[1])
        if parts[0] == "list" and len(parts) == 3 and parts[1] in SITE_FAULTS:
            fault = parts[1]
            page = site_list_html(f"/list/{fault}", f"list-{fault}")
            if parts[2].startswith("index"):
                return fault_action(fault, path, page)
            return self._column(f"/list/{fault}", f"list-{fault}", parts[2])
        if parts[0] == "article" and len(parts) == 3 and parts[1] in SITE_FAULTS:
            fault = parts[1]
            name = f"article-{fault}"
            if parts[2].startswith("a2"):
                return fault_action(fault, path, site_article_html(make_article(name, 2)))
            return self._column(f"/article/{fault}", name, parts[2])
        if parts[0] == "wx" and len(parts) >= 3 and parts[1] in WECHAT:
            return self._wechat(parts[1], "/".join(parts[2:]), query)
        return _html(404, "<html><body>404 not found</body></html>")

    def _column(self, prefix: str, name: str, leaf: str) -> Action:
        if leaf == "index.html":
            return _html(200, site_list_html(prefix, name))
        for i in (1, 2, 3):
            if leaf == f"a{i}.html":
                return _html(200, site_article_html(make_article(name, i)))
        return _html(404, "<html><body>404 not found</body></html>")

    def _wechat(self, name: str, rest: str, query: dict[str, str]) -> Action:
        album, bad_index, bad_kind = WECHAT[name]
        json_headers = (("Content-Type", "application/json; charset=UTF-8"),)
        if rest == "mp/appmsgalbum" and query.get("f") == "json":
            if album == "json_ret":
                return Action("answer", 200, json_headers, b'{"base_resp":{"ret":-6,"errmsg":"invalid args"}}')
            return Action("answer", 200, json_headers, b'{"base_resp":{"ret":0},"getalbum_resp":{"continue_flag":"0"}}')
        if rest == "mp/appmsgalbum":
            if album == "verify":
                return _html(200, VERIFICATION_PAGE)
            if album == "timeout":
                return Action("sleep", 200, (("Content-Type", "text/html; charset=utf-8"),), b"")
            return _html(200, wechat_album_html(self.base_url, name, continue_flag=album == "json_ret"))
        if rest == "s":
            for i in range(1, WECHAT_ARTICLES + 1):
                if query.get("mid") == _wechat_ids(name, i)[0]:
                    if i == bad_index:
                        if bad_kind == "verify":
                            return _html(200, VERIFICATION_PAGE)
                        return fault_action(bad_kind, "/wx/" + name + "/s", "")
                    return _html(200, wechat_article_html(self.base_url, name, i))
        return _html(404, "<html><body>404 not found</body></html>")


def expected_titles(source: str) -> set[str]:
    """Titles a correct crawl stores for one source of `fault_sources`."""
    if source == "ok-site":
        return {make_article("ok", i).title for i in (1, 2, 3)}
    kind, _, fault = source.partition("-")
    if kind == "list":
        return {make_article(f"list-{fault}", i).title for i in (1, 2, 3)} if fault in READABLE_FAULTS else set()
    if kind == "article":
        good = {make_article(f"article-{fault}", i).title for i in (1, 3)}
        return good | ({make_article(f"article-{fault}", 2).title} if fault in READABLE_FAULTS else set())
    album, bad_index, bad_kind = WECHAT[source]
    if album != "ok":
        return set()
    if bad_kind == "verify":  # oldest first; WeChat is asked nothing more after the verification page
        return {make_article(source, i).title for i in range(1, bad_index)}
    return {make_article(source, i).title for i in range(1, WECHAT_ARTICLES + 1) if i != bad_index}


def _make_handler(owner: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def handle(self) -> None:
            # The client resets connections when it gives up on a page (size or time limit): expected here.
            with contextlib.suppress(OSError):
                super().handle()

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            self._perform(owner.action(parts.path, query))

        def _perform(self, action: Action) -> None:
            if action.kind == "reset":
                # SO_LINGER 0: close() sends a TCP RST instead of an orderly FIN; nothing was answered.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            if action.kind == "sleep":
                owner.stopping.wait(SLEEP_SECONDS)
            self.send_response(action.status)
            for name, value in action.headers:
                self.send_header(name, value)
            if action.kind == "stream":
                self.send_header("Connection", "close")
                self.end_headers()
                self._stream()
                return
            if action.kind == "truncate":
                self.send_header("Content-Length", str(len(action.body) + 50_000))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(action.body[: len(action.body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(action.body)))
            self.end_headers()
            self.wfile.write(action.body)

        def _stream(self) -> None:
            chunk = ("<p>" + "很长的页面内容" * 1000 + "</p>\n").encode()
            self.wfile.write(b"<html><head><meta charset='utf-8'><title>huge</title></head><body>")
            sent = 0
            deadline = time.monotonic() + 20
            while sent < HUGE_BYTES and time.monotonic() < deadline and not owner.stopping.is_set():
                self.wfile.write(chunk)
                sent += len(chunk)
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def fault_sources(base: str) -> Iterator[tuple[str, str, str]]:
    """(key, kind, url) of every source the fault server offers: the healthy site, one list-level and
    one article-level site source per fault, one album per WeChat scenario."""
    yield "ok-site", "site_column", f"{base}/ok/index.html"
    for fault in SITE_FAULTS:
        yield f"list-{fault}", "site_column", f"{base}/list/{fault}/index.html"
    for fault in ARTICLE_FAULTS:
        yield f"article-{fault}", "site_column", f"{base}/article/{fault}/index.html"
    for name in WECHAT:
        biz = wechat_biz(name)
        url = f"{base}/wx/{name}/mp/appmsgalbum?__biz={biz}&action=getalbum&album_id=39204611876543{len(name):05d}"
        yield name, "wechat_album", url
