"""Why a source's run failed, in the operator's words (Chinese): pure functions over what a run recorded.

The spiders classify each problem (`kind`: timeout, connection, http, blocked, verification, …, with
the HTTP status and an English reason for the log and the database); `judge_run` in
`pipeline.corpus.runs` picks the problem that decides a run. This module says that problem in one
short Chinese phrase for the terminal, e.g. 「连接被拒绝（网站可能已停止服务）」.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

BLOCKING_KINDS = frozenset({"blocked", "verification"})
UNFINISHED_SOURCE_RUN = "the crawl process ended before this source finished (killed or crashed)"
_SECONDS = re.compile(r"\((\d+(?:\.\d+)?) s\)")


def _http(status: int) -> str:
    if status == 403:
        return "网站拒绝访问（HTTP 403）"
    if status in {404, 410}:
        return f"页面不存在（HTTP {status}）"
    if status == 429:
        return "请求过于频繁，被网站限流（HTTP 429）"
    if status >= 500:
        return f"网站服务器出错（HTTP {status}）"
    return f"网站拒绝了请求（HTTP {status}）"


def problem_reason_zh(problem: Mapping[str, Any]) -> str:
    """One problem (a `source_runs.problems` entry) as a short Chinese phrase."""
    kind = str(problem.get("kind") or "")
    reason = str(problem.get("reason") or "")
    lowered = reason.lower()
    status = problem.get("http_status")
    if kind == "timeout":
        seconds = _SECONDS.search(reason)
        limit = f"{seconds.group(1)} 秒" if seconds else "时限"
        return f"{limit}内没有应答（网站缓慢或已停止服务）"
    if kind == "connection":
        if "refused" in lowered:
            return "连接被拒绝（网站可能已停止服务）"
        if "host name not found" in lowered:
            return "找不到网站的主机名（域名无法解析）"
        return "页面送达前连接被网站断开"
    if kind == "truncated":
        return "页面没有完整送达（连接提前关闭），未保存"
    if kind == "too_large":
        return "页面超过大小上限，已停止下载，未保存"
    if kind == "verification":
        return "微信要求验证（环境异常），已暂停采集该来源"
    if kind == "blocked" and "challenge" in lowered:
        name = "瑞数" if "瑞数" in reason else "加速乐" if "加速乐" in reason else "网站"
        return f"{name} JS 验证拦截（HTTP {status}），需要浏览器，未尝试" if status else f"{name} JS 验证拦截，未尝试"
    if "redirect loop" in lowered:
        return "页面不断重定向（重定向循环）"
    if isinstance(status, int) and status >= 400:
        return _http(status)
    if kind == "album":
        return f"微信合集接口返回错误：{reason}"
    if kind == "database":
        return f"数据库出错：{reason}"
    return reason or kind or "原因不明"


def run_reason_zh(status: str, error_summary: str | None, problems: Sequence[Mapping[str, Any]]) -> str:
    """Why a failed source run failed: the problem `judge_run` decided on, in Chinese (its stored
    summary as it is when no recorded problem matches it)."""
    summary = error_summary or ""
    if status == "blocked":
        deciding = [p for p in problems if p.get("kind") in BLOCKING_KINDS]
    else:
        deciding = [p for p in problems if p.get("reason") and str(p.get("reason")) in summary]
    if deciding:
        return problem_reason_zh(deciding[0])
    if summary == UNFINISHED_SOURCE_RUN:
        return "采集进程在该来源完成前结束（被终止或崩溃）"
    if summary.startswith("nothing could be fetched: the spider produced no article and no list page"):
        return "什么也没有采集到：没有得到列表页，也没有文章"
    if problems:
        return problem_reason_zh(problems[0])
    return summary or "原因不明"


def failed_source_line(key: str, reason: str) -> str:
    """The terminal's line for a source that failed."""
    return f"来源 {key} 采集失败：{reason}"
