"""The generated unit website the ingest benchmark crawls, and the static server that serves it.

A Hanweb/TRS-like municipal site: article pages with meta tags (ArticleTitle, PubDate,
ContentSource, Author) and a `#zoom` body of 1–3 KB of Chinese text drawn from jieba's word
frequencies with a seeded generator; a few % of the pages are near-duplicate reposts of earlier
ones (another 来源 header and 责任编辑 footer). Lists are plain HTML (list type `html`), 20 links per
page, newest first, paged by 「下一页」: one list over the whole site (`/col/all/`) and one per column
(`/col/colN/`, N = 1..columns) for the many-source cycles.

Files are written only when their bytes change, so the static server's ETag / Last-Modified stay
put for untouched lists (what a no-change cycle relies on).
"""

from __future__ import annotations

import html
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from bisect import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from itertools import accumulate
from pathlib import Path

PER_PAGE = 20
UNITS = (
    ("临溪市科学技术局", "市科技局", "局长"),
    ("临溪市教育局", "市教育局", "局长"),
    ("临溪市财政局", "市财政局", "局长"),
    ("临溪市交通运输局", "市交通运输局", "局长"),
    ("临溪市卫生健康委员会", "市卫生健康委", "主任"),
    ("临溪市生态环境局", "市生态环境局", "局长"),
    ("临溪市农业农村局", "市农业农村局", "局长"),
    ("临溪市住房和城乡建设局", "市住建局", "局长"),
    ("临溪市商务局", "市商务局", "局长"),
    ("中共临溪市直机关工委", "市直机关工委", "书记"),
)
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国志宏文斌海波立新春梅"
COLUMN = "学习贯彻党的二十届四中全会精神"
PHRASES = (
    "学习贯彻党的二十届四中全会精神",
    "全面从严治党",
    "科技创新",
    "高质量发展",
    "新质生产力",
    "作风建设",
    "乡村振兴",
    "中国式现代化",
)


@cache
def vocabulary() -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(words, cumulative weights) of jieba's dictionary: Chinese words of two to four characters with
    their corpus frequencies, so the generated text has realistic shingles and keywords."""
    import jieba

    path = Path(jieba.__file__).parent / "dict.txt"
    words: list[str] = []
    weights: list[int] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split(" ")
        if len(parts) < 2 or not 2 <= len(parts[0]) <= 4 or not all("\u4e00" <= ch <= "\u9fff" for ch in parts[0]):
            continue
        freq = int(parts[1])
        if freq >= 200:
            words.append(parts[0])
            weights.append(freq)
    return tuple(words), tuple(accumulate(weights))


def sentence(rng: random.Random) -> str:
    words, cumulative = vocabulary()
    total = cumulative[-1]
    n = rng.randint(8, 22)
    picked = [words[bisect(cumulative, rng.random() * total)] for _ in range(n)]
    if rng.random() < 0.25:
        picked.insert(rng.randrange(len(picked)), rng.choice(PHRASES))
    cut = rng.randrange(3, len(picked) - 2)
    return "".join(picked[:cut]) + "，" + "".join(picked[cut:]) + "。"


def paragraphs(rng: random.Random, n_chars: int) -> list[str]:
    out: list[str] = []
    size = 0
    while size < n_chars:
        para = "".join(sentence(rng) for _ in range(rng.randint(2, 5)))
        out.append(para)
        size += len(para)
    return out


def person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))


@dataclass
class Article:
    id: int
    column: int  # 1..columns
    title: str
    unit: int
    author: str
    published: datetime
    paragraphs: list[str]
    repost_of: int | None = None  # id of the article this page reposts

    @property
    def path(self) -> str:
        return f"/art/{self.published:%Y/%m/%d}/art_{self.column}_{self.id}.html"


@dataclass
class Site:
    """The generated site in `root`; `add(n)` publishes `n` more articles (newest first in the lists)."""

    root: Path
    columns: int = 100
    seed: int = 11
    repost_share: float = 0.03
    articles: list[Article] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.start = datetime(2025, 1, 1, 8, 0)
        self.root.mkdir(parents=True, exist_ok=True)
        self._write("robots.txt", "User-agent: *\nDisallow: /admin/\n")

    # -- content

    def _new_article(self) -> Article:
        rng = self.rng
        n = len(self.articles) + 1
        published = self.start + timedelta(minutes=37 * n + rng.randrange(30))
        column = (n - 1) % self.columns + 1
        if self.articles and rng.random() < self.repost_share:
            original = rng.choice(self.articles[-500:])
            body = [f"来源：{UNITS[original.unit][0]}", *original.paragraphs]
            if rng.random() < 0.5:
                body = body[: max(2, len(body) * 2 // 3)]
            body.append(f"（责任编辑：{person(rng)}）")
            return Article(
                n, column, original.title, rng.randrange(len(UNITS)), original.author, published, body, original.id
            )
        unit = rng.randrange(len(UNITS))
        name, short, title_word = UNITS[unit]
        author = person(rng)
        title = f"{short}{rng.choice(PHRASES)}{sentence(rng)[: rng.randint(8, 16)].rstrip('，。')}"
        body = [f"{name}党组书记、{title_word} {author}", *paragraphs(rng, rng.randint(400, 1000))]
        return Article(n, column, title, unit, author, published, body)

    def add(self, n: int) -> None:
        """Publish `n` more articles and rewrite the pages that changed."""
        added: list[Article] = []
        for _ in range(n):
            added.append(self._new_article())
            self.articles.append(added[-1])
        for article in added:
            self._write(article.path.lstrip("/"), render_article(article))
        self._write_lists("all", self.articles)
        touched = {a.column for a in added}
        for column in sorted(touched):
            self._write_lists(f"col{column}", [a for a in self.articles if a.column == column])

    def _write_lists(self, name: str, items: list[Article]) -> None:
        newest = items[::-1]
        pages = max(1, -(-len(newest) // PER_PAGE))
        for page in range(1, pages + 1):
            chunk = newest[(page - 1) * PER_PAGE : page * PER_PAGE]
            self._write(list_path(name, page).lstrip("/"), render_list(name, chunk, page, pages, len(newest)))

    def _write(self, relative: str, text: str) -> None:
        path = self.root / relative
        data = text.encode("utf-8")
        if path.exists() and path.read_bytes() == data:
            return  # unchanged: keep the mtime, hence the server's ETag / Last-Modified
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    @property
    def page_count(self) -> int:
        return len(self.articles)


def list_path(name: str, page: int) -> str:
    return f"/col/{name}/index.html" if page == 1 else f"/col/{name}/index_{page}.html"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_HEAD = """<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8" />
<meta name="SiteName" content="临溪市人民政府">
<meta name="SiteDomain" content="www.linxi.example">
<meta name="SiteIDCode" content="0000000001">
{meta}<title>{title}</title>
<link rel="stylesheet" href="/css/main.css">
<script type="text/javascript" src="/module/jslib/jquery/jquery.js"></script>
</head>
<body>
<div class="header"><div class="site-name">临溪市人民政府</div>
<div class="nav"><a href="/index.html">首页</a><a href="/col/col1201/index.html">政务公开</a><a href="/col/all/index.html">专题专栏</a><a href="/col/col1301/index.html">政务服务</a><a href="/col/col1401/index.html">互动交流</a></div></div>
"""
_FOOT = """<div class="footer"><p>主办单位：临溪市人民政府办公室　网站标识码：0000000001　示例ICP备00000001号</p>
<p>地址：临溪市行政中心一号楼　联系电话：0000-8000000</p></div>
</body>
</html>
"""


def render_list(name: str, items: list[Article], page: int, pages: int, total: int) -> str:
    def link(n: int) -> str:
        return list_path(name, n).rsplit("/", 1)[1]

    rows = "\n".join(
        f'<li><a href="{_e(a.path)}" target="_blank" title="{_e(a.title)}">{_e(a.title)}</a>'
        f"<span>{a.published:%Y-%m-%d}</span></li>"
        for a in items
    )
    prev = f'<a href="{link(page - 1)}">上一页</a>' if page > 1 else "<span>上一页</span>"
    nxt = f'<a href="{link(page + 1)}">下一页</a>' if page < pages else "<span>下一页</span>"
    meta = f'<meta name="ColumnName" content="{_e(COLUMN)}">\n<meta name="ColumnType" content="专题专栏">\n'
    return (
        _HEAD.format(meta=meta, title=_e(f"{COLUMN} 临溪市人民政府"))
        + f"""<div class="position">当前位置：<a href="/index.html">首页</a> &gt; <a href="/col/{name}/index.html">{_e(COLUMN)}</a></div>
<div class="main"><div class="column-name">{_e(COLUMN)}</div>
<ul class="news-list">
{rows}
</ul>
<div class="pages">共{total}条　{page}/{pages}页　<a href="{link(1)}">首页</a> {prev} {nxt} <a href="{link(pages)}">尾页</a></div>
</div>
"""
        + _FOOT
    )


def render_article(a: Article) -> str:
    unit = UNITS[a.unit][0]
    meta = (
        f'<meta name="ColumnName" content="{_e(COLUMN)}">\n'
        f'<meta name="ArticleTitle" content="{_e(a.title)}">\n'
        f'<meta name="PubDate" content="{a.published:%Y-%m-%d %H:%M}">\n'
        f'<meta name="ContentSource" content="{_e(unit)}">\n'
        f'<meta name="Author" content="{_e(a.author)}">\n'
        f'<meta name="Keywords" content="{_e(COLUMN)}">\n'
    )
    paras = "\n".join(f'<p style="text-indent: 2em;">{_e(p)}</p>' for p in a.paragraphs)
    return (
        _HEAD.format(meta=meta, title=_e(f"{a.title} 临溪市人民政府"))
        + f"""<div class="position">当前位置：<a href="/index.html">首页</a> &gt; <a href="/col/all/index.html">{_e(COLUMN)}</a> &gt; 正文</div>
<div class="main"><div class="article">
<h1 class="title">{_e(a.title)}</h1>
<div class="info"><span>发布日期：{a.published:%Y-%m-%d}</span>　<span>来源：{_e(unit)}</span>　<span>浏览次数：<script>document.write(123)</script></span>　【字体：<a href="javascript:;">大</a> <a href="javascript:;">中</a> <a href="javascript:;">小</a>】</div>
<div id="zoom">
{paras}
</div>
<div class="tools"><a href="javascript:window.print();">【打印本页】</a> <a href="javascript:window.close();">【关闭窗口】</a></div>
</div></div>
"""
        + _FOOT
    )


# --- the static server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 100000;
    types {{ text/html html; text/plain txt; }}
    default_type application/octet-stream;
    charset utf-8;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        etag on;
        if_modified_since exact;
    }}
}}
"""


class StaticServer:
    """nginx from Debian on a free loopback port when installed (and `nginx` is true), else a Python
    ThreadingHTTPServer. Tests pass `nginx=False`: nginx's workers run as another user, who cannot
    read pytest's private temporary directories."""

    def __init__(self, root: Path, work: Path, *, nginx: bool = True) -> None:
        self.root = root
        self.work = work
        self.use_nginx = nginx
        self.port = free_port()
        self.kind = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StaticServer:
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if nginx and self.use_nginx:
            self.work.mkdir(parents=True, exist_ok=True)
            conf = self.work / "nginx.conf"
            conf.write_text(NGINX_CONF.format(work=self.work, port=self.port, root=self.root))
            self._proc = subprocess.Popen(
                [nginx, "-c", str(conf), "-p", str(self.work), "-e", str(self.work / "error.log")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.kind = f"nginx ({nginx})"
        else:
            root = str(self.root)

            class Handler(SimpleHTTPRequestHandler):
                def __init__(self, *args: object, **kwargs: object) -> None:
                    super().__init__(*args, directory=root, **kwargs)  # type: ignore[arg-type]

                def log_message(self, format: str, *args: object) -> None:
                    pass

            self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
            threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
            self.kind = "Python ThreadingHTTPServer (nginx is not installed: apt-get install nginx-light)"
        self._wait()
        return self

    def _wait(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.work / 'error.log').read_text(errors='replace')[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"static server did not start on port {self.port}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
