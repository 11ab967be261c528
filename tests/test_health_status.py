"""Issue 21, point 11: the health page and `zhuanlan status` in Chinese, usable on a phone, and
honest about whether a scheduler runs.

The failure rows are written by the pipeline's own functions (a real refused connection described
by the spider's errback, judged and recorded by `pipeline.corpus.runs`); the scheduler is the
installed `zhuanlan schedule` in a child process; the phone is headless Chromium at 390 px.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.error import ConnectionRefusedError as TwistedConnectionRefused
from twisted.python.failure import Failure

from archive.auth import record_failure
from archive.web import create_app
from crawler.spiders.base import describe_failure
from pipeline.corpus import labels
from pipeline.corpus.heartbeat import scheduler_state
from pipeline.corpus.models import Source, SourceRun, Unit
from pipeline.corpus.runs import (
    DEAD_PROCESS_REASON,
    UNFINISHED_SOURCE_RUN,
    apply_verification_limit,
    finish_crawl_run,
    judge_run,
    start_crawl_run,
    update_source_health,
)
from tests.support import browser_page, run_cli, serving_app, wait_for
from zhuanlan_config import ConfigError, parse_config

if TYPE_CHECKING:
    from collections.abc import Iterator

    from flask.testing import FlaskClient
    from playwright.sync_api import Page
    from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parent.parent
ZHUANLAN = Path(sys.executable).parent / "zhuanlan"  # the installed console script
PASSWORD = "健康页-口令-test"
SHANGHAI = ZoneInfo("Asia/Shanghai")
ALBUM = "shi-jiguan-dangjian-gongwei-album"  # a long key: a cell that cannot wrap at a space
CLIENT = "2001:db8:85a3::8a2e:370:7334"  # an IPv6 client address, another long unbroken token
LONG_URL = "http://jgdj.example.gov.cn/col/col12345/index.html?uid=98765&pageNum=3&" + "x=1&" * 30
ENGLISH = re.compile(r"\b(?:connection|refused|manual|failed|site_column|wechat_album|never|until)\b")


def refused_reason() -> str:
    """What the spider's errback records for a download the site refused (a real Twisted error)."""
    kind, reason = describe_failure(Failure(TwistedConnectionRefused("127.0.0.1", 9)))
    assert kind == "connection"
    return reason


def seed_failures(sessions: sessionmaker[Session], now: datetime) -> None:
    """A manual crawl in which the site refused every connection and WeChat showed its check page,
    recorded by the pipeline's own functions; and a lockout of the operator's login."""
    with sessions() as db, db.begin():
        unit = Unit(name="市机关党建工作委员会", aliases=[])
        db.add(unit)
        site = Source(
            key="jgdj-site",
            kind="site_column",
            url=LONG_URL,
            unit=unit,
            options={},
            enabled=True,
            status="new",
            consecutive_failures=0,
        )
        album = Source(
            key=ALBUM,
            kind="wechat_album",
            url="https://mp.weixin.qq.com/mp/appmsgalbum?__biz=MzA&album_id=1",
            unit=unit,
            options={},
            enabled=True,
            status="new",
            consecutive_failures=0,
        )
        db.add_all([site, album])
        db.flush()
        run_id = start_crawl_run(db, "manual", now)
        problems = [{"url": LONG_URL, "kind": "connection", "reason": refused_reason(), "http_status": None}]
        status, summary = judge_run(problems, [], 0)
        db.add(
            SourceRun(
                crawl_run_id=run_id,
                source_id=site.id,
                started_at=now,
                finished_at=now,
                status=status,
                error_summary=summary,
                problems=problems,
                errors=1,
            )
        )
        update_source_health(site, status, summary, now, verification=False)
        db.add(SourceRun(crawl_run_id=run_id, source_id=album.id, started_at=now, status="running", problems=[]))
        db.flush()
        finish_crawl_run(db, run_id, now)  # the album's run never finished: closed as unfinished
        apply_verification_limit(album, 3, now)  # and it met WeChat's check three times: blocked
    with sessions() as db:
        for _ in range(5):  # record_failure commits its own
            record_failure(db, CLIENT, now)


def build_app(tmp_path: Path, sessions: sessionmaker[Session], now: datetime, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ZHUANLAN_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("ZHUANLAN_SECRET_KEY", "health-test-secret")
    config = parse_config({"data_dir": "data", "public_dir": "public"}, base_dir=tmp_path)
    app = create_app(config, sessions, now=lambda: now)
    app.config["TESTING"] = True
    return app


def logged_in(client: FlaskClient) -> FlaskClient:
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    response = client.post("/login", data={"password": PASSWORD, "csrf_token": match.group(1)})
    assert response.status_code == 302, response.status_code
    return client


def visible_text(html: str) -> str:
    body = html.split("<main>", 1)[1].split("</main>", 1)[0]
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", body, flags=re.DOTALL)
    return re.sub(r"<[^>]+>", " ", body)


# --- Chinese throughout -------------------------------------------------------------------


def test_health_page_says_every_label_state_and_reason_in_chinese(
    tmp_path: Path, sessions: sessionmaker[Session], now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_failures(sessions, now)
    client = logged_in(build_app(tmp_path, sessions, now, monkeypatch).test_client())
    text = visible_text(client.get("/health").get_data(as_text=True))
    assert "连接被拒绝：网站可能已停止服务" in text, text
    assert "没有采集到任何内容：连接被拒绝：网站可能已停止服务" in text, text
    assert "手动 · 失败" in text, text
    assert "单位网站栏目" in text and "微信公众号合集" in text, text
    assert "采集进程在该源完成之前结束（被终止或崩溃）" in text, text
    assert "连续 3 次遇到微信验证页，已被拦截" in text and f"zhuanlan crawl --source {ALBUM} --force" in text, text
    assert "被拦截" in text and "出错" in text and "连接失败" in text, text
    logins = text.split("最近的登录失败与锁定", 1)[1]
    assert logins.count("密码错误") == 5 and "锁定" in logins and CLIENT in logins, logins
    assert "调度器未运行（从未有调度器运行过" in text, text
    without_urls = re.sub(r"https?://\S+|zhuanlan crawl --source \S+ --force", "", text)
    assert ENGLISH.search(without_urls) is None, ENGLISH.findall(without_urls)


def test_status_says_the_same_in_chinese(tmp_path: Path, db_url: str, sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    seed_failures(sessions, now)
    out = zhuanlan(write_config(tmp_path, db_url, heartbeat=30), db_url, "status").stdout
    assert "最近一次采集：#1 手动 · 失败" in out, out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("  jgdj-", "  shi-"))}
    assert "| 单位网站栏目 | 出错 | 从未 |" in rows["jgdj-site"], out
    assert "没有采集到任何内容：连接被拒绝：网站可能已停止服务" in rows["jgdj-site"], out
    assert "| 微信公众号合集 | 被拦截 |" in rows[ALBUM] and "直到强制采集" in rows[ALBUM], out
    assert "调度器未运行（从未有调度器运行过" in out and "下次运行：" not in out, out
    logins = out.split("最近的登录失败与锁定：", 1)[1].splitlines()[1:]
    assert sum(f"  密码错误  {CLIENT}" in line for line in logins) == 5, out
    assert sum(f"  锁定  {CLIENT}，锁定至 " in line for line in logins) == 1, out
    assert ENGLISH.search(re.sub(r"`[^`]*`|https?://\S+", "", out)) is None, out


def test_one_mapping_knows_every_reason_the_pipeline_and_scheduler_write() -> None:
    import scheduler

    samples = {
        refused_reason(): "连接被拒绝：网站可能已停止服务",
        judge_run([], [], 0)[1]: "没有采集到任何内容：爬虫既没有得到文章也没有得到列表页",
        judge_run([{"reason": refused_reason()}] * 2, [], 3)[1]: "2 个问题；第一个：连接被拒绝：网站可能已停止服务",
        UNFINISHED_SOURCE_RUN: "采集进程在该源完成之前结束（被终止或崩溃）",
        DEAD_PROCESS_REASON.format(pid=4242): "采集进程（pid 4242）已不存在：在完成之前被终止或崩溃",
        scheduler.STALE_RUN_REASON: "本次采集期间调度器进程结束（被终止或崩溃）；在下次启动时标记",
        "overran its 1 s limit (crawl.subprocess_timeout_seconds) and was stopped": "超过 1 秒的时间上限",
        "no answer within the time limit (20 s): the site is slow or down": "20 秒内没有应答",
        "HTTP 404: page not found": "HTTP 404：页面不存在",
        "the article is deleted by its author": "文章已被作者删除",
        "could not store the page: disk full": "页面保存失败：disk full",
        "album error (ret=-6): invalid args; listing abandoned": "合集接口返回错误（ret=-6）：invalid args：已放弃列表",
        "album error: the answer is not a JSON object": "合集接口返回错误：返回内容不是 JSON 对象",
    }
    for english, chinese in samples.items():
        assert english is not None
        assert labels.reason(english).startswith(chinese), (english, labels.reason(english))
    assert labels.reason("SomethingNew: odd failure") == "其他错误（原文）：SomethingNew: odd failure"
    assert labels.reason("瑞数 412 反爬拦截") == "瑞数 412 反爬拦截"  # already Chinese: as it is
    assert labels.trigger("manual") == "手动" and labels.run_status("failed") == "失败"
    assert (
        labels.source_kind("site_column") == "单位网站栏目" and labels.source_kind("wechat_album") == "微信公众号合集"
    )


# --- a phone: 390 px ----------------------------------------------------------------------


@pytest.fixture
def site(
    tmp_path: Path, sessions: sessionmaker[Session], now: datetime, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    seed_failures(sessions, now)
    with serving_app(build_app(tmp_path, sessions, now, monkeypatch)) as base:
        yield base


@pytest.fixture
def phone(chromium: Any) -> Iterator[Page]:
    with browser_page(chromium, 390, 844, device_scale_factor=2) as page:
        yield page


def test_health_page_fits_a_390px_phone(site: str, phone: Page, tmp_path: Path) -> None:
    phone.goto(f"{site}/login")
    phone.fill("input[name=password]", PASSWORD)
    with phone.expect_navigation():
        phone.click("main button[type=submit]")
    assert phone.url.endswith("/health")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    assert phone.evaluate("document.body.scrollWidth") <= 390
    for selector, text in (
        ("table.sources td.key", "jgdj-site"),
        ("table.sources td.kind", "单位网站栏目"),
        ("table.sources td.state", "出错"),
        ("table.sources td.err", "连接被拒绝"),
        ("table.source-runs td.err", "连接被拒绝"),
        ("table.sources td.key", ALBUM),
        ("table.logins td.event", "锁定"),
        ("table.logins td.client", CLIENT),
    ):
        cell = phone.locator(selector, has_text=text).first
        cell.scroll_into_view_if_needed()
        assert cell.is_visible(), selector
        box = cell.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
    # each cell says what it is, as the hidden header would
    label = phone.evaluate("getComputedStyle(document.querySelector('table.sources td.kind'), '::before').content")
    assert "类型" in label, label
    phone.screenshot(path=str(tmp_path / "health-390.png"), full_page=True)  # for a person to look at


# --- the scheduler's heartbeat ------------------------------------------------------------


def write_config(tmp_path: Path, db_url: str, *, heartbeat: int) -> Path:
    cfg = tmp_path / "zhuanlan.toml"
    cfg.write_text(
        f'database_url = "{db_url}"\ndata_dir = "data"\npublic_dir = "public"\n\n'
        f"[schedule]\ncrawl_interval_minutes = 1440\nheartbeat_seconds = {heartbeat}\n",
        encoding="utf-8",
    )
    return cfg


def zhuanlan(cfg: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = run_cli(cfg, db_url, *args, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def next_run_lines(out: str) -> list[str]:
    return [
        line for line in out.splitlines() if re.match(r"\s+(crawl|digest|digest-catchup|recheck|maintenance)\s", line)
    ]


def test_status_and_health_tell_a_live_scheduler_from_a_dead_one(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_config(tmp_path, db_url, heartbeat=1)
    log = tmp_path / "scheduler.log"
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(ZHUANLAN), "--config", str(cfg), "schedule"],
                cwd=ROOT,
                env={**os.environ, "ZHUANLAN_DATABASE_URL": db_url},
                stdout=out,
                stderr=out,
            )
        procs.append(proc)
        return proc

    def health() -> str:
        app = build_app(tmp_path, sessions, datetime.now(UTC), monkeypatch)
        return visible_text(logged_in(app.test_client()).get("/health").get_data(as_text=True))

    try:
        proc = start()
        out = wait_for(
            "status: alive",
            lambda: (o := zhuanlan(cfg, db_url, "status").stdout).startswith("调度器运行中") and o,
            60,
            proc,
        )
        assert re.match(r"调度器运行中（最近心跳 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d，\d+ 秒前）", out), out
        assert "下次运行：" in out and len(next_run_lines(out)) == 5, out
        page = health()
        assert "调度器运行中（最近心跳" in page and "下次运行" in page and "采集" in page.split("下次运行", 1)[1], page

        # killed: no clean stop is recorded; once three beats are missed it reads as not running
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        out = wait_for(
            "status: dead", lambda: (o := zhuanlan(cfg, db_url, "status").stdout).startswith("调度器未运行") and o, 30
        )
        assert re.match(r"调度器未运行（最近心跳 [\d: -]+，已停止 \d+ 秒）", out), out
        assert "下次运行：" not in out and next_run_lines(out) == [], out
        page = health()
        assert "调度器未运行（最近心跳" in page and "不显示下次运行时间" in page, page
        assert 'id="no-next-runs"' in health_html(tmp_path, sessions, monkeypatch), "the next runs are hidden"

        # a clean stop (SIGTERM) is recorded at once: not running, without waiting for a stale beat
        proc = start()
        wait_for("alive again", lambda: zhuanlan(cfg, db_url, "status").stdout.startswith("调度器运行中"), 60, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text(encoding="utf-8", errors="replace")
        with sessions() as db:
            state = scheduler_state(db, datetime.now(UTC))
        assert not state.alive and state.gone_since is not None
        assert datetime.now(UTC) - state.gone_since < timedelta(seconds=30)
        out = zhuanlan(cfg, db_url, "status").stdout
        assert out.startswith("调度器未运行（最近心跳") and next_run_lines(out) == [], out
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def health_html(tmp_path: Path, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> str:
    app = build_app(tmp_path, sessions, datetime.now(UTC), monkeypatch)
    return str(logged_in(app.test_client()).get("/health").get_data(as_text=True))


def test_a_beat_older_than_three_intervals_is_a_dead_scheduler(sessions: sessionmaker[Session]) -> None:
    from pipeline.corpus.heartbeat import beat, stopped

    start = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    with sessions() as db, db.begin():
        beat(db, start, host=socket.gethostname(), pid=4321, interval_seconds=10, start=True)
    with sessions() as db:
        assert scheduler_state(db, start + timedelta(seconds=30)).alive
        late = scheduler_state(db, start + timedelta(seconds=31))
        assert not late.alive and late.gone_since == start
        line = labels.scheduler_line(late, start + timedelta(minutes=5), SHANGHAI)
        assert line == "调度器未运行（最近心跳 2026-12-03 16:00:00，已停止 5 分钟）", line
    with sessions() as db, db.begin():
        stopped(db, start + timedelta(seconds=5), pid=9999)  # another scheduler's stop: not this one
    with sessions() as db:
        assert scheduler_state(db, start + timedelta(seconds=6)).alive
    with sessions() as db, db.begin():
        stopped(db, start + timedelta(seconds=5), pid=4321)
    with sessions() as db:
        assert not scheduler_state(db, start + timedelta(seconds=6)).alive


@pytest.mark.parametrize("value", [0, -5, 3601, "30", 1.5])
def test_a_bad_heartbeat_interval_is_refused_by_name(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"schedule": {"heartbeat_seconds": value}}, base_dir=tmp_path)
    assert "schedule.heartbeat_seconds" in str(error.value), str(error.value)
    assert parse_config({}, base_dir=tmp_path).schedule.heartbeat_seconds == 30
