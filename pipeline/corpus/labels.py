"""What the operator reads about health, in Chinese: one mapping for the health page and `zhuanlan status`.

The pipeline records states, kinds, triggers and failure reasons in English words (stable codes
that tests, logs and older rows share); this module is where they become the Chinese the operator
reads. Source kinds, statuses, triggers, job names, problem kinds and login events are lookup
tables; a failure reason is matched against the shapes the crawler, the pipeline and the scheduler
write (`REASONS`), with its variable parts (URLs, numbers, nested reasons) carried over. A reason of
no known shape keeps its text behind a Chinese prefix, so nothing the pipeline said is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from pipeline.corpus.heartbeat import SchedulerState

SOURCE_KINDS = {"site_column": "单位网站栏目", "wechat_album": "微信公众号合集"}
SOURCE_STATUSES = {"new": "未运行", "ok": "正常", "error": "出错", "blocked": "被拦截", "paused": "暂停"}
RUN_STATUSES = {
    "running": "运行中",
    "ok": "成功",
    "partial": "部分失败",
    "failed": "失败",
    "killed": "已中止",
    "error": "出错",
    "blocked": "被拦截",
}
TRIGGERS = {
    "manual": "手动",
    "schedule": "定时",
    "recheck": "每日复查",
    "run-once": "单次运行",
    "scrapy": "单独运行爬虫",
    "demo": "演示",
}
JOBS = {
    "crawl": "采集",
    "digest": "周报",
    "digest-catchup": "周报补发",
    "recheck": "每日复查",
    "maintenance": "夜间维护",
}
PROBLEM_KINDS = {
    "timeout": "超时",
    "connection": "连接失败",
    "truncated": "页面不完整",
    "too_large": "页面过大",
    "fetch": "下载失败",
    "redirect": "重定向",
    "http": "HTTP 错误",
    "album": "合集",
    "parse": "解析失败",
    "encoding": "编码错误",
    "verification": "验证页",
    "blocked": "反爬拦截",
    "deleted": "已被作者删除",
    "violation": "因违规被删除",
    "unavailable": "暂时无法查看",
    "expired": "临时链接已过期",
    "error": "页面无法读取",
    "database": "数据库",
    "pipeline": "处理出错",
    "store": "存储出错",
}
LOGIN_EVENTS = {"failure": "密码错误", "lockout": "锁定"}

_WECHAT_STATES = {
    "deleted by its author": "已被作者删除",
    "removed by WeChat for a policy violation": "因违规已被微信删除",
    "temporarily unavailable": "暂时无法查看",
    "an expired temporary link": "临时链接，已过期",
}


def label(table: Mapping[str, str], code: str | None) -> str:
    """The Chinese for `code` in `table`; a code the table does not know is shown as it is."""
    if not code:
        return "—"
    return table.get(code, code)


def source_kind(code: str | None) -> str:
    return label(SOURCE_KINDS, code)


def source_status(code: str | None) -> str:
    return label(SOURCE_STATUSES, code)


def run_status(code: str | None) -> str:
    return label(RUN_STATUSES, code)


def trigger(code: str | None) -> str:
    return label(TRIGGERS, code)


def job(code: str | None) -> str:
    return label(JOBS, code)


def problem_kind(code: str | None) -> str:
    return label(PROBLEM_KINDS, code)


def login_event(code: str | None) -> str:
    return label(LOGIN_EVENTS, code)


# --- failure reasons -----------------------------------------------------------------------

# (pattern, Chinese): the pattern matches a whole reason; `{name}` in the Chinese takes the
# pattern's group of that name. A group named `inner` is a reason itself, translated in turn; one
# named `msg` is translated when it has a known shape and kept as it is otherwise (a site's or
# WeChat's own message, such as "invalid args").
_Pattern = tuple[str, str | Callable[[re.Match[str]], str]]
REASONS: tuple[_Pattern, ...] = (
    # crawler/spiders/base.py describe_failure
    (
        r"no answer within the time limit(?: \((?P<limit>[\d.]+) s\))?: the site is slow or down",
        "{limit_text}内没有应答：网站响应太慢或已停止服务",
    ),
    (r"connection refused: is the site down\?", "连接被拒绝：网站可能已停止服务"),
    (r"host name not found", "找不到该域名（DNS 解析失败）"),
    (r"the page arrived incomplete: .*", "页面未完整传回：连接在收齐声明的字节数之前就关闭了，本页内容未保存"),
    (
        r"page larger than the (?:(?P<limit>\d+)-byte )?size limit(?: \(it announced (?P<size>\d+) bytes\))?: download stopped, nothing kept",
        "页面超过{limit_bytes}大小上限{size_text}：已停止下载，未保存任何内容",
    ),
    (r"download cancelled \((?P<detail>.*)\)", "下载被取消（{detail}）"),
    (
        r"connection dropped before the page arrived: the site closed or reset the connection",
        "页面传回之前连接中断：网站关闭或重置了连接",
    ),
    (r"request abandoned \((?P<detail>.*)\)", "请求已放弃（{detail}）"),
    # crawler/parsing/site_article.py detect_block
    (
        r"瑞数 JS challenge \(HTTP (?P<status>\d+)\): the site needs a browser; not attempted",
        "瑞数 JS 反爬验证（HTTP {status}）：需用浏览器访问，未尝试",
    ),
    (
        r"加速乐 JS challenge \(HTTP (?P<status>\d+)\): the site needs a browser; not attempted",
        "加速乐 JS 反爬验证（HTTP {status}）：需用浏览器访问，未尝试",
    ),
    (r"瑞数 JS challenge page", "瑞数 JS 反爬验证页"),
    (r"HTTP 403: the site refused the request \(forbidden\)", "HTTP 403：网站拒绝了请求（禁止访问）"),
    (r"HTTP (?P<status>\d+): page not found", "HTTP {status}：页面不存在"),
    (r"HTTP 429: too many requests \(rate limited\)", "HTTP 429：请求过于频繁（被限流）"),
    (r"HTTP (?P<status>\d+): the site rejected the request", "HTTP {status}：网站拒绝了请求"),
    (r"HTTP (?P<status>\d+): server error at the site", "HTTP {status}：网站服务器出错"),
    (r"empty page", "空白页面"),
    # crawler/spiders/site_column.py
    (r"HTTP (?P<status>\d+) redirect without a Location: nowhere to go", "HTTP {status} 重定向但没有给出目标地址"),
    (
        r"redirect loop: (?P<url>\S+) redirects back to (?P<target>\S+), a page already visited",
        "重定向循环：{url} 又重定向回已访问过的 {target}",
    ),
    (
        r"too many redirects: still redirected after (?P<hops>\d+) hops \(last to (?P<target>.*)\)",
        "重定向次数过多：{hops} 次后仍在重定向（最后指向 {target}）",
    ),
    (r"list page unreadable: (?P<detail>.*)", "栏目列表页无法解码：{detail}"),
    (r"list page not understood: (?P<detail>.*)", "栏目列表页无法解析：{detail}"),
    (
        r"the column list has no article links \(list_type (?P<type>\S+)\): check the source options",
        "栏目列表中没有文章链接（列表类型 {type}）：请检查采集源设置",
    ),
    (
        r"page of (?P<size>\d+) bytes exceeds the (?P<limit>\d+)-byte limit",
        "页面大小 {size} 字节，超过 {limit} 字节的上限",
    ),
    (r"article not stored: (?P<detail>.*)", "文章未保存：{detail}"),
    (r"no article text found on the page", "页面上没有找到正文"),
    # crawler/spiders/wechat_album.py
    (
        r"the seed article answered HTTP (?P<status>\d+) \((?P<state>[^)]*)\); cannot find its album",
        "种子文章返回 HTTP {status}（{state}）：无法找到它所在的合集",
    ),
    (r"the seed article could not be read: (?P<detail>.*)", "种子文章无法读取：{detail}"),
    (
        r"the seed article is in no album titled (?P<title>.*) \(its albums: (?P<albums>.*)\)",
        "种子文章不在名为 {title} 的合集中（它所在的合集：{albums}）",
    ),
    (r"the album page answered HTTP (?P<status>\d+)", "合集页面返回 HTTP {status}"),
    (
        r"the album JSON API answered HTTP (?P<status>\d+); listing abandoned",
        "合集 JSON 接口返回 HTTP {status}：已放弃列表",
    ),
    (
        r"the album JSON API redirected to (?P<target>.*); listing abandoned",
        "合集 JSON 接口重定向到 {target}：已放弃列表",
    ),
    (
        r"too many redirects or a redirect without a target \(HTTP (?P<status>\d+)\)",
        "重定向次数过多或重定向没有目标地址（HTTP {status}）",
    ),
    (r"the article page answered HTTP (?P<status>\d+)", "文章页面返回 HTTP {status}"),
    (r"the page is not a WeChat article page", "该页面不是微信文章页面"),
    (r"the article is (?P<words>.*)", lambda m: "文章" + _WECHAT_STATES.get(m["words"], m["words"])),
    (
        r"WeChat answered with its verification page \(环境异常 / 去验证\) instead of (?P<url>\S+); nothing more was "
        r"asked of WeChat in this run\. The source pauses \(back-off from (?P<minutes>\d+) minutes\) and is blocked "
        r"after (?P<max>\d+) such runs in a row\.",
        "微信返回了验证页面（环境异常 / 去验证），而不是 {url}；本次运行不再访问微信。该源暂停（退避 {minutes} 分钟起），"
        "连续 {max} 次即被拦截。",
    ),
    (
        r"redirect loop or chain: still redirected after (?P<hops>\d+) hops \(last to (?P<target>.*)\)",
        "重定向循环或链过长：{hops} 次后仍在重定向（最后指向 {target}）",
    ),
    (r"(?P<inner>.*); listing abandoned", "{inner}：已放弃列表"),
    # crawler/parsing/wechat.py (AlbumError, WechatParseError); `msg` may be WeChat's own errmsg
    (r"album error \(ret=(?P<ret>[^)]*)\): (?P<msg>.*)", "合集接口返回错误（ret={ret}）：{msg}"),
    (r"album error: (?P<msg>.*)", "合集接口返回错误：{msg}"),
    (
        r"the page is not an album page \(no album items, no cgiData\)",
        "该页面不是合集页面（没有合集条目，也没有 cgiData）",
    ),
    (r"the album page reports an error", "合集页面报告了错误"),
    (r"the answer is not JSON \((?P<detail>.*)\)", "返回内容不是 JSON（{detail}）"),
    (r"the answer is not a JSON object", "返回内容不是 JSON 对象"),
    (r"WeChat refused the album request", "微信拒绝了合集请求"),
    (r"the answer has no getalbum_resp", "返回内容中没有 getalbum_resp"),
    (r"verify_status=(?P<status>\S+): WeChat asks for a verification", "verify_status={status}：微信要求验证"),
    (r"empty page: (?P<url>\S+)", "空白页面：{url}"),
    (r"article page lacks (?P<what>.*): (?P<url>\S+)", "文章页面缺少 {what}：{url}"),
    # pipeline/normalize.py
    (r"page has no title", "页面没有标题"),
    (r"page has no article text", "页面没有正文"),
    (
        r"the site asked for a verification \(环境异常 / captcha\) instead of the article",
        "网站要求验证（环境异常 / 验证码），没有返回文章",
    ),
    (r"the site answered with a JS anti-crawl challenge", "网站返回了 JS 反爬验证"),
    (r"page state (?P<state>.*)", "页面状态：{state}"),
    # pipeline/corpus/runs.py, pipeline/store.py, pipeline/worker/shell.py
    (
        r"the crawl process ended before this source finished \(killed or crashed\)",
        "采集进程在该源完成之前结束（被终止或崩溃）",
    ),
    (
        r"the crawl process \(pid (?P<pid>\d+)\) is gone: it was killed or crashed before it finished",
        "采集进程（pid {pid}）已不存在：在完成之前被终止或崩溃",
    ),
    (
        r"blocked after (?P<n>\d+) WeChat verification pages in a row .*?`zhuanlan crawl --source (?P<key>\S+) --force`",
        "连续 {n} 次遇到微信验证页，已被拦截：不再采集，直到操作员处理——在浏览器中打开该合集并通过验证，"
        "然后运行 `zhuanlan crawl --source {key} --force`",
    ),
    (
        r"paused until (?P<until>[\d-]+ [\d:]+) \((?P<minutes>\d+) min\): WeChat answered with its verification page "
        r"\(环境异常\), try (?P<try>\d+) of (?P<limit>\d+); blocked at (?P<limit2>\d+) in a row",
        "暂停至 {until}（{minutes} 分钟）：微信返回了验证页面（环境异常），第 {try} 次，共 {limit} 次；连续 {limit2} 次即被拦截",
    ),
    (
        r"nothing could be fetched: the spider produced no article and no list page",
        "没有采集到任何内容：爬虫既没有得到文章也没有得到列表页",
    ),
    (r"nothing could be fetched: (?P<inner>.*)", "没有采集到任何内容：{inner}"),
    (r"(?P<count>\d+) problems?; first: (?P<inner>.*)", "{count} 个问题；第一个：{inner}"),
    (r"could not process the page: (?P<detail>.*)", "页面处理失败：{detail}"),
    (r"could not store the page: (?P<detail>.*)", "页面保存失败：{detail}"),
    # scheduler.py
    (
        r"the scheduler process ended during this crawl \(killed or crashed\); marked at the next start",
        "本次采集期间调度器进程结束（被终止或崩溃）；在下次启动时标记",
    ),
    (
        r"overran its (?P<limit>\d+) s limit \(crawl\.subprocess_timeout_seconds\) and was stopped",
        "超过 {limit} 秒的时间上限（crawl.subprocess_timeout_seconds），已被停止",
    ),
    (r"stopped: the scheduler shut down during this crawl", "已停止：本次采集期间调度器关闭"),
)
_COMPILED = tuple((re.compile(pattern, re.DOTALL), chinese) for pattern, chinese in REASONS)
UNKNOWN_REASON = "其他错误（原文）：{text}"


def _fill(chinese: str | Callable[[re.Match[str]], str], match: re.Match[str]) -> str:
    if callable(chinese):
        return chinese(match)
    values = match.groupdict("")
    if "inner" in values:
        values["inner"] = reason(values["inner"])
    if "msg" in values:
        values["msg"] = _known(values["msg"]) or values["msg"]
    limit, size = values.get("limit", ""), values.get("size", "")
    values["limit_text"] = f"{limit} 秒" if limit else "时间上限"
    values["limit_bytes"] = f" {limit} 字节的" if limit else ""
    values["size_text"] = f"（网站声明 {size} 字节）" if size else ""
    return chinese.format(**values)


def _known(text: str) -> str | None:
    """The Chinese of a reason of a known shape (or of one already Chinese), else None."""
    for pattern, chinese in _COMPILED:
        match = pattern.fullmatch(text)
        if match is not None:
            return _fill(chinese, match)
    if re.search(r"[A-Za-z]{3,}", text) is None:
        return text  # already Chinese (or only codes and numbers)
    return None


def reason(text: str | None) -> str:
    """A failure reason in Chinese ("" for none); one of no known shape keeps its text."""
    if not text:
        return ""
    text = " ".join(text.split())
    return _known(text) or UNKNOWN_REASON.format(text=text)


# --- the scheduler's heartbeat -------------------------------------------------------------


def duration(span: timedelta) -> str:
    """A span in Chinese, to the largest sensible unit: 45 秒, 12 分钟, 3 小时 5 分钟, 2 天 4 小时."""
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return f"{seconds} 秒"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes} 分钟"
    if hours < 24:
        rest = minutes - hours * 60
        return f"{hours} 小时" + (f" {rest} 分钟" if rest else "")
    rest = hours - days * 24
    return f"{days} 天" + (f" {rest} 小时" if rest else "")


def scheduler_line(state: SchedulerState, now: datetime, tz: ZoneInfo) -> str:
    """「调度器运行中（最近心跳 …）」 or 「调度器未运行（最近心跳 …，已停止 …）」."""
    if state.last_beat is None:
        return "调度器未运行（从未有调度器运行过：用 zhuanlan schedule 启动）"
    beat = f"{state.last_beat.astimezone(tz):%Y-%m-%d %H:%M:%S}"
    if state.alive:
        return f"调度器运行中（最近心跳 {beat}，{duration(now - state.last_beat)}前）"
    gone = state.gone_since or state.last_beat
    return f"调度器未运行（最近心跳 {beat}，已停止 {duration(now - gone)}）"
