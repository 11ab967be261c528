"""A complete zhuanlan configuration (TOML text) for the sample sources.

Owns the sample units, recipients, sources, column rules and topic vocabulary as configuration; the
text must pass `zhuanlan_config.parse_config`. Only example.org mail addresses are used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from crawler.samples.catalog import SITE_SPECS, WECHAT_SOURCE_KEY, album_url, current_anchor
from crawler.samples.content import COLUMN, COLUMN_KEYWORDS, STORIES, UNITS, unit_name
from crawler.samples.site_pages import (
    DATAPROXY_PATH,
    HANWEB_LIST_PATH,
    LABELS_LIST_PATH,
    committee_list_path,
    gbk_list_path,
    labels_list_query,
    trs_list_path,
)

# Topic vocabulary: topic -> phrase weights. Phrases are chosen so each sample article scores on
# the topic(s) it is about and not on the others.
TOPICS: dict[str, dict[str, float]] = {
    "科技创新": {
        "科技创新": 2.0,
        "科技自立自强": 3.0,
        "成果转化": 2.0,
        "研发投入": 1.0,
        "高新技术企业": 1.0,
        "科技特派员": 2.0,
    },
    "高质量发展": {
        "高质量发展": 1.0,
        "新质生产力": 2.0,
        "营商环境": 1.5,
        "招商引资": 1.5,
        "扩大内需": 2.0,
        "提振消费": 2.0,
        "交通强市": 2.0,
        "基础设施": 1.0,
        "节约集约": 2.0,
    },
    "财政管理": {"财政资金": 1.5, "预算绩效": 2.0, "预算管理": 1.5, "财会监督": 2.0, "政府债务": 2.0, "过紧日子": 2.0},
    "民生保障": {"民生": 1.0, "社会救助": 2.0, "养老服务": 2.0, "困难群众": 2.0, "兜底": 1.5, "便民生活圈": 2.0},
    "生态文明": {
        "生态文明": 3.0,
        "绿水青山": 2.0,
        "污染防治": 2.0,
        "碳达峰": 2.0,
        "生态保护修复": 2.0,
        "绿色低碳": 1.5,
    },
    "乡村振兴": {
        "乡村振兴": 2.0,
        "乡村全面振兴": 2.0,
        "粮食安全": 2.0,
        "农民增收": 2.0,
        "和美乡村": 2.0,
        "农村公路": 1.5,
    },
    "全面从严治党": {"全面从严治党": 3.0, "作风建设": 2.0, "八项规定": 2.0, "警示教育": 2.0, "廉政": 1.0, "四风": 1.5},
    "法治建设": {"法治": 1.0, "依法治国": 2.0, "法治政府": 3.0, "公共法律服务": 2.0, "枫桥经验": 2.0, "人民调解": 2.0},
    "文旅融合": {
        "文旅融合": 3.0,
        "文化和旅游": 2.0,
        "文物": 1.0,
        "非物质文化遗产": 2.0,
        "公共文化服务": 2.0,
        "旅游": 1.0,
    },
    "教育强市": {"教育强国": 2.0, "教育强市": 3.0, "立德树人": 2.0, "思政课": 2.0, "教育评价": 2.0, "教师队伍": 1.0},
    "健康临溪": {"健康中国": 2.0, "卫生健康": 1.0, "公立医院": 2.0, "医共体": 2.0, "家庭医生": 1.5, "义诊": 1.5},
    "机关党建": {"机关党建": 3.0, "模范机关": 3.0, "党支部": 1.0, "理论学习": 1.5, "青年干部": 1.5},
}
TOPIC_MIN_SCORE = 2.0


def _q(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(value, ensure_ascii=False)


def _list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def _inline(table: Mapping[str, object]) -> str:
    parts = []
    for key, value in table.items():
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, int | float):
            rendered = repr(value)
        elif isinstance(value, str):
            rendered = _q(value)
        elif isinstance(value, list | tuple):
            rendered = _list([str(v) for v in value])
        else:
            raise TypeError(f"cannot render {key}={value!r} as TOML")
        parts.append(f"{_q(key) if not key.isidentifier() else key} = {rendered}")
    return "{ " + ", ".join(parts) + " }"


@dataclass(frozen=True)
class SiteSource:
    key: str
    url: str
    unit: str
    column: str | None
    options: dict[str, object]


def site_sources(base_url: str) -> list[SiteSource]:
    """The `site_column` sources, one per sample website (also used by tests)."""
    base = base_url.rstrip("/")
    urls = {
        "jgdj": base + committee_list_path(1),
        "kjj": base + HANWEB_LIST_PATH,
        "czj": base + trs_list_path(0),
        "jyj": base + gbk_list_path(1),
        "wjw": f"{base}{LABELS_LIST_PATH}?{labels_list_query(1)}",
    }
    selectors = {
        "jgdj": "ul.news-list li a",
        "kjj": "",
        "czj": "ul.list li a",
        "jyj": "table.news-list a",
        "wjw": "ul.news-list li a",
    }
    sources: list[SiteSource] = []
    for s in SITE_SPECS:
        options: dict[str, object] = {"list_type": s.list_type}
        if selectors[s.code]:
            options["link_selector"] = selectors[s.code]
        if s.list_type == "hanweb_datastore":
            options.update(
                column_id=s.column_id, unit_id=s.unit_id, per_page=s.per_page, dataproxy_url=base + DATAPROXY_PATH
            )
        if s.title_include:
            options["title_include"] = list(s.title_include)
        column = COLUMN if s.is_column or s.title_include else None
        sources.append(SiteSource(s.source_key, urls[s.code], unit_name(s.unit), column, options))
    return sources


def sample_config_toml(
    base_url: str,
    *,
    smtp_port: int,
    web_port: int,
    data_dir: str = "data",
    public_dir: str = "public",
    anchor: date | None = None,
    review: str = "off",
) -> str:
    """A complete config for the sample sources served at `base_url`; `review`: `digest.review`."""
    base = base_url.rstrip("/")
    anchor = anchor or current_anchor()
    first_column_day = max(s.days_ago for s in STORIES if s.written_for_column)
    out: list[str] = [
        "# zhuanlan configuration for the bundled sample sources (crawler.samples).",
        f"data_dir = {_q(data_dir)}",
        f"public_dir = {_q(public_dir)}",
        "",
    ]
    for u in UNITS:
        out += [
            "[[units]]",
            f"name = {_q(u.name)}",
            f"short_name = {_q(u.short_name)}",
            f"aliases = {_list(u.aliases)}",
            "",
        ]
    for u in UNITS:
        out += [
            "[[recipients]]",
            f"unit = {_q(u.name)}",
            f"name = {_q(u.secretary)}",
            f'email = "{u.code}@example.org"',
            "",
        ]
    out += [
        "[[sources]]",
        f"key = {_q(WECHAT_SOURCE_KEY)}",
        'kind = "wechat_album"',
        f"url = {_q(album_url(base))}",
        f"unit = {_q(unit_name('jgdj'))}",
        f"column = {_q(COLUMN)}",
        f"options = {_inline({'delay_seconds': 0, 'album_title': COLUMN, 'page_size': 10})}",
        "",
    ]
    for src in site_sources(base):
        out += ["[[sources]]", f"key = {_q(src.key)}", 'kind = "site_column"', f"url = {_q(src.url)}"]
        out.append(f"unit = {_q(src.unit)}")
        if src.column:
            out.append(f"column = {_q(src.column)}")
        out += [f"options = {_inline(src.options)}", ""]
    out += ["[[columns]]", f"name = {_q(COLUMN)}", f"title_keywords = {_list(COLUMN_KEYWORDS)}", ""]
    for name, keywords in TOPICS.items():
        kw = ", ".join(f"{_q(k)} = {v}" for k, v in keywords.items())
        out += ["[[topics]]", f"name = {_q(name)}", f"keywords = {{ {kw} }}", f"min_score = {TOPIC_MIN_SCORE}", ""]
    column_start = anchor - timedelta(days=first_column_day)
    out += [
        "[crawl]",
        "timeout_seconds = 10.0",
        "download_delay_seconds = 0",
        "wechat_delay_seconds = 0",
        "obey_robots = true",
        "subprocess_timeout_seconds = 600",
        "",
        "[schedule]",
        'timezone = "Asia/Shanghai"',
        "crawl_interval_minutes = 120",
        "crawl_jitter_seconds = 0",
        'digest_weekday = "mon"',
        'digest_time = "08:00"',
        'recheck_time = "03:30"',
        'maintenance_time = "04:30"',
        "misfire_grace_hours = 6.0",
        "",
        "[smtp]",
        'host = "127.0.0.1"',
        f"port = {smtp_port}",
        'security = "none"',
        'from_addr = "zhuanlan@example.org"',
        'from_name = "临溪机关专栏聚合"',
        "timeout_seconds = 10.0",
        "max_per_minute = 600",
        "max_attempts = 3",
        "",
        "[web]",
        'host = "127.0.0.1"',
        f"port = {web_port}",
        f'base_url = "http://127.0.0.1:{web_port}"',
        "",
        "[feeds]",
        "items_per_feed = 50",
        'title_prefix = "临溪机关专栏"',
        "",
        "[digest]",
        'operator_email = "operator@example.org"',
        "grace_days = 3",
        f'column_start = "{column_start.isoformat()}"',
        f"review = {_q(review)}",
        "",
    ]
    return "\n".join(out)
