"""What a crawl with failing sources shows in the terminal (issue 21, point 10): one line per failed
source with its reason in plain Chinese, nothing on stderr, and the tracebacks and Scrapy's log in
data_dir/logs/crawl.log, whose path is printed. A real crawl through the installed `zhuanlan` script,
against `tests.faultserver` (a 500 list page, a list page that never answers in time) and a port
that refuses connections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.faultserver import FaultServer
from tests.support import free_port

ZHUANLAN = Path(sys.executable).parent / "zhuanlan"


def config_toml(base: str, refused: str) -> str:
    sources = {
        "ok-site": f"{base}/ok/index.html",
        "broken-500": f"{base}/list/http500/index.html",
        "slow-site": f"{base}/list/timeout/index.html",
        "gone-site": f"{refused}/col/index.html",
    }
    lines = [
        'data_dir = "data"',
        "[[units]]",
        'name = "临溪市测试局"',
        "[crawl]",
        "timeout_seconds = 3",
        "download_delay_seconds = 0",
        "obey_robots = true",
    ]
    for key, url in sources.items():
        lines += ["[[sources]]", f'key = "{key}"', 'kind = "site_column"', f"url = {json.dumps(url)}"]
        lines += ['unit = "临溪市测试局"', "[sources.options]", 'link_selector = "ul.news-list li a"']
    return "\n".join(lines) + "\n"


def zhuanlan(cfg: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZHUANLAN_DATABASE_URL": db_url}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [str(ZHUANLAN), "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        cwd=cfg.parent,
        env=env,
        timeout=300,
        check=False,
    )


def test_a_failed_crawl_says_one_line_per_source_and_logs_the_rest(tmp_path: Path, db_url: str) -> None:
    refused = f"http://127.0.0.1:{free_port()}"  # bound, then closed: nothing listens there
    with FaultServer() as server:
        cfg = tmp_path / "zhuanlan.toml"
        cfg.write_text(config_toml(server.base_url, refused), encoding="utf-8")
        assert zhuanlan(cfg, db_url, "init").returncode == 0
        crawl = zhuanlan(cfg, db_url, "crawl")

    assert crawl.returncode == 0, crawl.stdout + crawl.stderr[-3000:]  # partial: the healthy site is crawled
    assert crawl.stderr == "", crawl.stderr[-3000:]  # no traceback, no Scrapy log, no warning
    lines = crawl.stdout.splitlines()
    failed = sorted(line for line in lines if line.startswith("来源 "))
    assert failed == [
        "来源 broken-500 采集失败：网站服务器出错（HTTP 500）",
        "来源 gone-site 采集失败：连接被拒绝（网站可能已停止服务）",
        "来源 slow-site 采集失败：3 秒内没有应答（网站缓慢或已停止服务）",
    ], crawl.stdout
    assert lines[0].startswith("crawl run ") and ": partial — sources 4" in lines[0], lines
    log = tmp_path / "data" / "logs" / "crawl.log"
    assert lines[-1] == f"details (tracebacks, Scrapy's log): {log}", lines
    assert len(lines) == 1 + 3 + 1, lines
    text = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "Connection was refused" in text, text[-3000:]

    # The same in --json, for scripts: each failed source with its reason; still nothing on stderr.
    again = zhuanlan(cfg, db_url, "crawl", "--json", "--source", "gone-site")
    summary = json.loads(again.stdout)
    assert again.stderr == "" and again.returncode == 1, again.stderr[-3000:]
    assert summary["failed_sources"] == [
        {"source": "gone-site", "status": "error", "reason": "连接被拒绝（网站可能已停止服务）"}
    ]
    assert summary["log_file"] == str(log)


def test_each_kind_of_failure_has_its_plain_chinese_reason() -> None:
    from pipeline.corpus.reasons import run_reason_zh

    def reason(status: str, summary: str, kind: str, text: str, http: int | None = None) -> str:
        return run_reason_zh(status, summary, [{"url": "u", "kind": kind, "reason": text, "http_status": http}])

    assert reason("error", "nothing could be fetched: host name not found", "connection", "host name not found") == (
        "找不到网站的主机名（域名无法解析）"
    )
    assert reason("error", "HTTP 404: page not found", "http", "HTTP 404: page not found", 404) == (
        "页面不存在（HTTP 404）"
    )
    challenge = "瑞数 JS challenge (HTTP 412): the site needs a browser; not attempted"
    assert reason("blocked", challenge, "blocked", challenge, 412) == "瑞数 JS 验证拦截（HTTP 412），需要浏览器，未尝试"
    verification = "WeChat verification page (环境异常)"
    assert reason("blocked", verification, "verification", verification) == "微信要求验证（环境异常），已暂停采集该来源"
    # A summary no recorded problem explains is shown as it is: nothing is hidden.
    assert run_reason_zh("error", "could not store the page: disk full", []) == "could not store the page: disk full"
