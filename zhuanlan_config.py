"""Configuration: one TOML file, validated on load into frozen dataclasses.

Owns reading and validating `zhuanlan.toml`. Every error names the key path and what was
expected (`ConfigError`); the CLI turns it into exit code 2. Secrets never live in the
file: they come from environment variables (each also accepted as `NAME_FILE`).
Nothing here reads configuration at import time.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SOURCE_KINDS = ("wechat_album", "site_column")
LIST_TYPES = ("html", "trs_js_pager", "hanweb_datastore", "hanweb_dataproxy", "page_num")
SMTP_SECURITY = ("starttls", "ssl", "none")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ConfigError(ValueError):
    """A configuration problem; `path` is the key path, e.g. `sources[2].kind`."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class UnitConf:
    name: str
    short_name: str | None = None
    aliases: tuple[str, ...] = ()
    slug: str | None = None  # the feed URL's name (/feeds/unit/<slug>.atom); default: from pinyin


@dataclass(frozen=True)
class RecipientConf:
    unit: str
    name: str
    email: str
    active: bool = True


@dataclass(frozen=True)
class SourceConf:
    key: str
    kind: str
    url: str
    unit: str | None = None
    column: str | None = None
    enabled: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicConf:
    name: str
    keywords: Mapping[str, float]  # keyword or phrase -> weight
    min_score: float = 1.0
    slug: str | None = None  # the feed URL's name (/feeds/topic/<slug>.atom); default: from pinyin


@dataclass(frozen=True)
class ColumnConf:
    name: str
    title_keywords: tuple[str, ...] = ()  # a title containing one of these is a column member
    slug: str | None = None  # the feed URL's name (/feeds/column/<slug>.atom); default: from pinyin


@dataclass(frozen=True)
class CrawlConf:
    user_agent: str = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 zhuanlan/0.1"
    )
    timeout_seconds: float = 30.0
    download_delay_seconds: float = 1.0
    wechat_delay_seconds: float = 5.0
    max_page_bytes: int = 10 * 1024 * 1024
    obey_robots: bool = True
    subprocess_timeout_seconds: int = 3600


@dataclass(frozen=True)
class ScheduleConf:
    timezone: str = "Asia/Shanghai"
    crawl_interval_minutes: int = 120
    crawl_jitter_seconds: int = 300
    digest_weekday: str = "mon"
    digest_time: str = "08:00"
    recheck_time: str = "03:30"
    maintenance_time: str = "04:30"
    misfire_grace_hours: float = 6.0


@dataclass(frozen=True)
class SmtpConf:
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"
    user: str | None = None
    from_addr: str = "zhuanlan@localhost"
    from_name: str = "专栏聚合"
    password_env: str = "ZHUANLAN_SMTP_PASSWORD"
    timeout_seconds: float = 30.0
    max_per_minute: int = 60
    max_attempts: int = 5

    def password(self) -> str | None:
        return secret_from_env(self.password_env)


@dataclass(frozen=True)
class WebConf:
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = "http://127.0.0.1:8080"
    image_cache_mb: int = 200  # the image proxy's disk cache; least recently used images go first


@dataclass(frozen=True)
class FeedsConf:
    items_per_feed: int = 50
    title_prefix: str = "专栏"
    # Stories deleted at source: shown in public feeds and pages (true), or only to the operator.
    show_deleted: bool = False


@dataclass(frozen=True)
class DigestConf:
    operator_email: str | None = None
    grace_days: int = 3
    column_start: str | None = None  # ISO date the column started, for "since the column started"


@dataclass(frozen=True)
class DistributedConf:
    """Crawl workers on several machines (`zhuanlan worker`), fed through Redis; off without a URL."""

    redis_url: str | None = None
    key_prefix: str = "zhuanlan"
    lease_seconds: int = 60


@dataclass(frozen=True)
class Config:
    database_url: str
    data_dir: Path
    public_dir: Path
    units: tuple[UnitConf, ...]
    recipients: tuple[RecipientConf, ...]
    sources: tuple[SourceConf, ...]
    topics: tuple[TopicConf, ...]
    columns: tuple[ColumnConf, ...]
    crawl: CrawlConf
    schedule: ScheduleConf
    smtp: SmtpConf
    web: WebConf
    feeds: FeedsConf
    digest: DigestConf
    path: Path | None = None
    distributed: DistributedConf = DistributedConf()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.schedule.timezone)

    def source(self, key: str) -> SourceConf:
        for source in self.sources:
            if source.key == key:
                return source
        raise ConfigError("sources", f"no source with key {key!r}; known: {', '.join(s.key for s in self.sources)}")


def secret_from_env(name: str) -> str | None:
    """A secret from `NAME`, or from the file named by `NAME_FILE`."""
    value = os.environ.get(name)
    if value:
        return value
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text(encoding="utf-8").strip()
    return None


# --- validation helpers -------------------------------------------------------------


def _type_name(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true/false",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class _Table:
    """Reads one TOML table, tracking which keys were used so unknown keys are errors."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a table, got {_type_name(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str:
        value = self.raw(key)
        if value is None:
            if required or default is None:
                raise ConfigError(self._key(key), "missing; expected a string")
            return default
        if not isinstance(value, str) or (required and not value.strip()):
            raise ConfigError(self._key(key), f"expected a non-empty string, got {_type_name(value)}")
        return value

    def opt_string(self, key: str) -> str | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(self._key(key), f"expected a string, got {_type_name(value)}")
        return value or None

    def integer(self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self._key(key), f"expected an integer, got {_type_name(value)}")
        if minimum is not None and value < minimum:
            raise ConfigError(self._key(key), f"expected an integer >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(self._key(key), f"expected an integer <= {maximum}, got {value}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self._key(key), f"expected a number, got {_type_name(value)}")
        if value < minimum:
            raise ConfigError(self._key(key), f"expected a number >= {minimum}, got {value}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(self._key(key), f"expected true or false, got {_type_name(value)}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.string(key, default, required=default is None)
        if value not in choices:
            raise ConfigError(self._key(key), f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self._key(key), "expected a list of strings")
        return tuple(value)

    def tables(self, key: str) -> list[_Table]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ConfigError(self._key(key), f"expected an array of tables ([[{key}]]), got {_type_name(value)}")
        return [_Table(item, f"{self._key(key)}[{i}]") for i, item in enumerate(value)]

    def table(self, key: str) -> _Table:
        value = self.raw(key)
        return _Table({} if value is None else value, self._key(key))

    def done(self, allowed_extra: tuple[str, ...] = ()) -> None:
        unknown = sorted(set(self.data) - self.used - set(allowed_extra))
        if unknown:
            known = ", ".join(sorted(self.used)) or "none"
            raise ConfigError(self._key(unknown[0]), f"unknown key; expected one of: {known}")


_SOURCE_OPTION_KEYS = frozenset(
    {
        # wechat_album
        "album_title",
        "delay_seconds",
        "page_size",
        "max_pages",
        "verification_backoff_minutes",
        "verification_max_retries",
        # site_column
        "list_type",
        "link_selector",
        "next_page",
        "include",
        "exclude",
        "title_include",
        "title_exclude",
        "page_limit",
        "selectors",
        "encoding",
        "column_id",
        "unit_id",
        "dataproxy_url",
        "per_page",
        "keep_non_column",
    }
)
_SELECTOR_KEYS = frozenset({"title", "date", "source", "author", "body"})
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _hhmm(table: _Table, key: str, default: str) -> str:
    value = table.string(key, default)
    if not _HHMM.match(value):
        raise ConfigError(table._key(key), f"expected a time HH:MM, got {value!r}")
    return value


def _slug(t: _Table, seen: set[str]) -> str | None:
    """An optional feed URL slug: lowercase letters, digits and single hyphens, unique per kind."""
    value = t.opt_string("slug")
    if value is None:
        return None
    if len(value) > 80 or not _SLUG.match(value):
        raise ConfigError(
            t._key("slug"), f"expected lowercase letters, digits and single hyphens (at most 80), got {value!r}"
        )
    if value in seen:
        raise ConfigError(t._key("slug"), f"slug {value!r} is already used by another entry of this kind")
    seen.add(value)
    return value


def _source(t: _Table, units: set[str]) -> SourceConf:
    key = t.string("key", required=True)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
        raise ConfigError(t._key("key"), f"expected letters, digits, '-', '_' or '.', got {key!r}")
    kind = t.choice("kind", SOURCE_KINDS)
    url = t.string("url", required=True)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(t._key("url"), f"expected an http(s) URL, got {url!r}")
    unit = t.opt_string("unit")
    if unit is not None and unit not in units:
        raise ConfigError(t._key("unit"), f"expected the name of a configured unit, got {unit!r}")
    options = t.raw("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(t._key("options"), f"expected a table, got {_type_name(options)}")
    for name, value in options.items():
        opt_path = f"{t._key('options')}.{name}"
        if name not in _SOURCE_OPTION_KEYS:
            raise ConfigError(opt_path, f"unknown option; expected one of: {', '.join(sorted(_SOURCE_OPTION_KEYS))}")
        if name == "list_type" and value not in LIST_TYPES:
            raise ConfigError(opt_path, f"expected one of {', '.join(LIST_TYPES)}, got {value!r}")
        if name == "selectors":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(opt_path, "expected a table of CSS selectors (title, date, source, author, body)")
            bad = set(value) - _SELECTOR_KEYS
            if bad:
                raise ConfigError(
                    f"{opt_path}.{sorted(bad)[0]}",
                    f"unknown selector; expected one of: {', '.join(sorted(_SELECTOR_KEYS))}",
                )
        if name in {"include", "exclude", "title_include", "title_exclude"}:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(opt_path, "expected a list of strings (regular expressions)")
            for pattern in value:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(opt_path, f"invalid regular expression {pattern!r}: {exc}") from exc
        if name == "keep_non_column" and not isinstance(value, bool):
            raise ConfigError(opt_path, "expected true or false")
        if name in {"delay_seconds"} and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise ConfigError(opt_path, "expected a number >= 0")
        if name in {
            "page_size",
            "max_pages",
            "page_limit",
            "verification_backoff_minutes",
            "verification_max_retries",
            "per_page",
        } and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(opt_path, "expected an integer >= 0")
    if kind == "site_column" and "list_type" not in options:
        options = {**options, "list_type": "html"}
    conf = SourceConf(
        key=key,
        kind=kind,
        url=url,
        unit=unit,
        column=t.opt_string("column"),
        enabled=t.boolean("enabled", True),
        options=options,
    )
    t.done()
    return conf


def _resolve_sqlite(url: str, base_dir: Path) -> str:
    """A relative SQLite path is relative to the config file, not to the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix):
        rest = url[len(prefix) :]
        if rest and not rest.startswith("/") and not rest.startswith(":memory:"):
            return prefix + str(base_dir / rest)
    elif not re.match(r"^[a-z0-9+]+://", url):
        raise ConfigError("database_url", f"expected a database URL such as sqlite:///data/zhuanlan.db, got {url!r}")
    return url


def parse_config(data: Mapping[str, Any], *, base_dir: Path, path: Path | None = None) -> Config:
    """Validate a parsed TOML document. Relative directories resolve against `base_dir`."""
    root = _Table(dict(data), "")
    db_default = "sqlite:///" + str((base_dir / root.string("data_dir", "data")) / "zhuanlan.db")
    file_url = root.string("database_url", db_default)
    database_url = secret_from_env("ZHUANLAN_DATABASE_URL") or file_url
    database_url = _resolve_sqlite(database_url, base_dir)
    data_dir = base_dir / root.string("data_dir", "data")
    public_dir = base_dir / root.string("public_dir", "public")

    units: list[UnitConf] = []
    unit_slugs: set[str] = set()
    for t in root.tables("units"):
        unit = UnitConf(
            name=t.string("name", required=True),
            short_name=t.opt_string("short_name"),
            aliases=t.strings("aliases"),
            slug=_slug(t, unit_slugs),
        )
        t.done()
        units.append(unit)
    unit_names = {u.name for u in units}
    if len(unit_names) != len(units):
        raise ConfigError("units", "unit names must be unique")

    recipients: list[RecipientConf] = []
    for t in root.tables("recipients"):
        r = RecipientConf(
            unit=t.string("unit", required=True),
            name=t.string("name", required=True),
            email=t.string("email", required=True),
            active=t.boolean("active", True),
        )
        if r.unit not in unit_names:
            raise ConfigError(t._key("unit"), f"expected the name of a configured unit, got {r.unit!r}")
        if not _EMAIL.match(r.email):
            raise ConfigError(t._key("email"), f"expected an email address, got {r.email!r}")
        t.done()
        recipients.append(r)

    sources = [_source(t, unit_names) for t in root.tables("sources")]
    keys = [s.key for s in sources]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise ConfigError("sources", f"source keys must be unique; repeated: {', '.join(duplicated)}")

    topics: list[TopicConf] = []
    topic_slugs: set[str] = set()
    for t in root.tables("topics"):
        kw = t.raw("keywords")
        if isinstance(kw, list) and all(isinstance(k, str) for k in kw):
            keywords: dict[str, float] = {k: 1.0 for k in kw}
        elif isinstance(kw, dict) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in kw.values()):
            keywords = {str(k): float(v) for k, v in kw.items()}
        else:
            raise ConfigError(t._key("keywords"), "expected a list of phrases or a table phrase = weight")
        if not keywords:
            raise ConfigError(t._key("keywords"), "expected at least one phrase")
        topics.append(
            TopicConf(
                name=t.string("name", required=True),
                keywords=keywords,
                min_score=t.number("min_score", 1.0),
                slug=_slug(t, topic_slugs),
            )
        )
        t.done()

    columns: list[ColumnConf] = []
    column_slugs: set[str] = set()
    for t in root.tables("columns"):
        columns.append(
            ColumnConf(
                name=t.string("name", required=True),
                title_keywords=t.strings("title_keywords"),
                slug=_slug(t, column_slugs),
            )
        )
        t.done()

    c = root.table("crawl")
    crawl = CrawlConf(
        user_agent=c.string("user_agent", CrawlConf.user_agent),
        timeout_seconds=c.number("timeout_seconds", CrawlConf.timeout_seconds, minimum=0.1),
        download_delay_seconds=c.number("download_delay_seconds", CrawlConf.download_delay_seconds),
        wechat_delay_seconds=c.number("wechat_delay_seconds", CrawlConf.wechat_delay_seconds),
        max_page_bytes=c.integer("max_page_bytes", CrawlConf.max_page_bytes, minimum=1024),
        obey_robots=c.boolean("obey_robots", True),
        subprocess_timeout_seconds=c.integer(
            "subprocess_timeout_seconds", CrawlConf.subprocess_timeout_seconds, minimum=1
        ),
    )
    c.done()

    s = root.table("schedule")
    tz_name = s.string("timezone", ScheduleConf.timezone)
    try:
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            "schedule.timezone", f"expected an IANA time zone such as Asia/Shanghai, got {tz_name!r}"
        ) from exc
    schedule = ScheduleConf(
        timezone=tz_name,
        crawl_interval_minutes=s.integer("crawl_interval_minutes", ScheduleConf.crawl_interval_minutes, minimum=1),
        crawl_jitter_seconds=s.integer("crawl_jitter_seconds", ScheduleConf.crawl_jitter_seconds, minimum=0),
        digest_weekday=s.choice("digest_weekday", WEEKDAYS, "mon"),
        digest_time=_hhmm(s, "digest_time", ScheduleConf.digest_time),
        recheck_time=_hhmm(s, "recheck_time", ScheduleConf.recheck_time),
        maintenance_time=_hhmm(s, "maintenance_time", ScheduleConf.maintenance_time),
        misfire_grace_hours=s.number("misfire_grace_hours", ScheduleConf.misfire_grace_hours),
    )
    s.done()

    m = root.table("smtp")
    smtp = SmtpConf(
        host=m.string("host", SmtpConf.host),
        port=m.integer("port", SmtpConf.port, minimum=1, maximum=65535),
        security=m.choice("security", SMTP_SECURITY, "none"),
        user=m.opt_string("user"),
        from_addr=m.string("from_addr", SmtpConf.from_addr),
        from_name=m.string("from_name", SmtpConf.from_name),
        password_env=m.string("password_env", SmtpConf.password_env),
        timeout_seconds=m.number("timeout_seconds", SmtpConf.timeout_seconds, minimum=0.1),
        max_per_minute=m.integer("max_per_minute", SmtpConf.max_per_minute, minimum=1),
        max_attempts=m.integer("max_attempts", SmtpConf.max_attempts, minimum=1),
    )
    m.done()

    w = root.table("web")
    web = WebConf(
        host=w.string("host", WebConf.host),
        port=w.integer("port", WebConf.port, minimum=1, maximum=65535),
        base_url=w.string("base_url", WebConf.base_url).rstrip("/"),
        image_cache_mb=w.integer("image_cache_mb", WebConf.image_cache_mb, minimum=1, maximum=1_000_000),
    )
    w.done()

    f = root.table("feeds")
    feeds = FeedsConf(
        items_per_feed=f.integer("items_per_feed", FeedsConf.items_per_feed, minimum=1, maximum=1000),
        title_prefix=f.string("title_prefix", FeedsConf.title_prefix),
        show_deleted=f.boolean("show_deleted", FeedsConf.show_deleted),
    )
    f.done()

    d = root.table("digest")
    digest = DigestConf(
        operator_email=d.opt_string("operator_email"),
        grace_days=d.integer("grace_days", DigestConf.grace_days, minimum=0),
        column_start=d.opt_string("column_start"),
    )
    d.done()

    dt = root.table("distributed")
    redis_url = dt.opt_string("redis_url")
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("distributed.redis_url", f"expected a redis://, rediss:// or unix:// URL, got {redis_url!r}")
    key_prefix = dt.string("key_prefix", DistributedConf.key_prefix)
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", key_prefix):
        raise ConfigError("distributed.key_prefix", f"expected 1-64 letters, digits or _.:- , got {key_prefix!r}")
    distributed = DistributedConf(
        redis_url=redis_url,
        key_prefix=key_prefix,
        lease_seconds=dt.integer("lease_seconds", DistributedConf.lease_seconds, minimum=5, maximum=3600),
    )
    dt.done()
    root.done()
    return Config(
        database_url=database_url,
        data_dir=data_dir,
        public_dir=public_dir,
        units=tuple(units),
        recipients=tuple(recipients),
        sources=tuple(sources),
        topics=tuple(topics),
        columns=tuple(columns),
        crawl=crawl,
        schedule=schedule,
        smtp=smtp,
        web=web,
        feeds=feeds,
        digest=digest,
        path=path,
        distributed=distributed,
    )


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; raises ConfigError with the key path on any problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError("", f"config file {p} not found; copy zhuanlan.example.toml to {p} and edit it") from exc
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {p}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{p} is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{p} is not valid TOML: {exc}") from exc
    return parse_config(data, base_dir=p.resolve().parent, path=p.resolve())
