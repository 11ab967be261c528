"""Configuration: one TOML file, validated on load into frozen dataclasses.

Owns reading and validating `zhuanlan.toml`. Every error names the key path and what was
expected (`ConfigError`); one pass finds them all (`ConfigErrors` when there are several); the CLI
prints one line per error and exits with code 2. Secrets never live in the
file: they come from environment variables (each also accepted as `NAME_FILE`).
Nothing here reads configuration at import time.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
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


class ConfigErrors(ConfigError):
    """Every problem found in one config, in file order; `path` and `message` are the first's."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors: tuple[ConfigError, ...] = tuple(_flatten(errors))
        assert self.errors, "ConfigErrors needs at least one error"
        super().__init__(self.errors[0].path, self.errors[0].message)
        self.args = ("\n".join(str(e) for e in self.errors),)


def _flatten(errors: Iterable[ConfigError]) -> Iterable[ConfigError]:
    for error in errors:
        yield from error.errors if isinstance(error, ConfigErrors) else (error,)


T = TypeVar("T")


class _Collector:
    """Gathers the config's problems so one run of `check-config` names them all."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def get(self, read: Callable[[], T], fallback: T) -> T:
        """`read()`, or `fallback` with its problem kept."""
        try:
            return read()
        except ConfigError as exc:
            self.errors.append(exc)
            return fallback

    def raise_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


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
    columns: tuple[str, ...] = ()  # the columns whose digest this person gets; () = every column


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
    start: date | None = None  # the day the column started: its digest's 第1期 and "since the start" counts


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
    heartbeat_seconds: int = 30  # how often a running scheduler writes its heartbeat


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
    # The address a reverse proxy (nginx) connects from: its X-Forwarded-For and X-Forwarded-Proto are
    # believed, and only its. None: the connection's own address is the client's (headers ignored).
    trusted_proxy: str | None = None
    trusted_proxy_count: int = 1  # proxies in the chain in front of the app (their X-Forwarded-For entries)
    # The most stories one download from the search page may hold; more: narrow the search, or use
    # `zhuanlan export` on the server (no limit there).
    export_limit: int = 10_000


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
    # The start of a column without its own `[[columns]] start` (the key from before columns had one).
    column_start: str | None = None
    # "required": each issue is sent only once the office approved it (feeds.review); "off": as sent before.
    review: str = "off"
    # Review required: the weekday and time after the week's end ("mon 12:00") by which an issue must be
    # approved, else it is skipped; None: 4 hours after the send time (feeds.review.APPROVE_HOURS).
    approve_by: str | None = None


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

    def column_start(self, column: str) -> date | None:
        """The day `column` started: its own `[[columns]] start`, else `digest.column_start`."""
        for c in self.columns:
            if c.name == column and c.start is not None:
                return c.start
        return date.fromisoformat(self.digest.column_start) if self.digest.column_start else None

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


def _ip_address(table: _Table, key: str) -> str | None:
    """An IP address as the WSGI server writes a peer's (no brackets, no port, no range)."""
    value = table.opt_string(key)
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ConfigError(
            table._key(key), f"expected the IP address the proxy connects from (as 127.0.0.1), got {value!r}"
        ) from None


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
        known = ", ".join(sorted(self.used)) or "none"
        errors = [ConfigError(self._key(name), f"unknown key; expected one of: {known}") for name in unknown]
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ConfigErrors(errors)


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


def _iso_date(t: _Table, key: str) -> date | None:
    """A day, written as a TOML date (2025-11-01) or a string ("2025-11-01")."""
    value = t.raw(key)
    if value is None or value == "":
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(t._key(key), f"expected a date such as 2025-11-01, got {value!r}")


def _iso_date_text(t: _Table, key: str) -> str | None:
    day = _iso_date(t, key)
    return day.isoformat() if day is not None else None


def _hhmm(table: _Table, key: str, default: str) -> str:
    value = table.string(key, default)
    if not _HHMM.match(value):
        raise ConfigError(table._key(key), f"expected a time HH:MM, got {value!r}")
    return value


REVIEW_MODES = ("required", "off")
_APPROVE_BY = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun) ([01]\d|2[0-3]):([0-5]\d)$")


def _week_minutes(weekday: str, hhmm: str) -> int:
    """Minutes from the end of the reported week (Monday 00:00) to `weekday hh:mm` after it."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    return WEEKDAYS.index(weekday) * 1440 + hour * 60 + minute


def _approve_by(table: _Table, schedule: ScheduleConf) -> str | None:
    """`digest.approve_by`: "mon 12:00", no earlier than the digest's send time and no later than
    the grace within which the scheduler still sends an owed digest (or it could never go out)."""
    key = table._key("approve_by")
    given = table.opt_string("approve_by")
    if given is None:
        return None
    value = given.strip().lower()
    m = _APPROVE_BY.match(value)
    if not m:
        raise ConfigError(key, f'expected a weekday and a time such as "mon 12:00", got {value!r}')
    by = _week_minutes(m.group(1), f"{m.group(2)}:{m.group(3)}")
    send = _week_minutes(schedule.digest_weekday, schedule.digest_time)
    if by < send:
        raise ConfigError(
            key, f"{value!r} is before the digest's send time ({schedule.digest_weekday} {schedule.digest_time})"
        )
    grace_days = table.raw("grace_days")
    grace = max(
        (grace_days if isinstance(grace_days, int) else DigestConf.grace_days) * 1440,
        int(schedule.misfire_grace_hours * 60),
    )
    if by - send > grace:
        raise ConfigError(
            key, f"{value!r} is more than digest.grace_days after the send time: the issue could never go out"
        )
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


def unit_reference_error(path: str, name: str, units: Iterable[UnitConf]) -> ConfigError:
    """A unit named where a configured unit's full name is expected; names the unit `name` is an
    alias or short name of, when it is one."""
    meant = [u.name for u in units if name in u.aliases or name == u.short_name]
    if meant:
        return ConfigError(path, f"units 中没有“{name}”，是否指“{'”或“'.join(meant)}”？")
    return ConfigError(path, f"expected the name of a configured unit, got {name!r}")


def _source_option(opt_path: str, name: str, value: object) -> None:
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


def _source(t: _Table, units: Iterable[UnitConf], errors: _Collector) -> SourceConf:
    """A [[sources]] entry; each of its problems goes to `errors` (the config then fails)."""
    units = tuple(units)

    def key_of() -> str:
        key = t.string("key", required=True)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise ConfigError(t._key("key"), f"expected letters, digits, '-', '_' or '.', got {key!r}")
        return key

    def url_of() -> str:
        url = t.string("url", required=True)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(t._key("url"), f"expected an http(s) URL, got {url!r}")
        return url

    def unit_of() -> str | None:
        unit = t.opt_string("unit")
        if unit is not None and unit not in {u.name for u in units}:
            raise unit_reference_error(t._key("unit"), unit, units)
        return unit

    key = errors.get(key_of, "")
    kind = errors.get(lambda: t.choice("kind", SOURCE_KINDS), "")
    url = errors.get(url_of, "")
    unit = errors.get(unit_of, None)
    options = t.raw("options") or {}
    if not isinstance(options, dict):
        errors.errors.append(ConfigError(t._key("options"), f"expected a table, got {_type_name(options)}"))
        options = {}
    for name, value in options.items():
        errors.get(partial(_source_option, f"{t._key('options')}.{name}", name, value), None)
    if kind == "site_column" and "list_type" not in options:
        options = {**options, "list_type": "html"}
    conf = SourceConf(
        key=key,
        kind=kind,
        url=url,
        unit=unit,
        column=errors.get(lambda: t.opt_string("column"), None),
        enabled=errors.get(lambda: t.boolean("enabled", True), True),
        options=options,
    )
    errors.get(t.done, None)
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
    """Validate a parsed TOML document. Relative directories resolve against `base_dir`.

    Every problem is found in one pass: one raises `ConfigError`, several `ConfigErrors`."""
    errors = _Collector()
    get = errors.get
    root = _Table(dict(data), "")
    data_dir_name = get(lambda: root.string("data_dir", "data"), "data")
    db_default = "sqlite:///" + str((base_dir / data_dir_name) / "zhuanlan.db")
    file_url = get(lambda: root.string("database_url", db_default), db_default)
    database_url = secret_from_env("ZHUANLAN_DATABASE_URL") or file_url
    database_url = get(lambda: _resolve_sqlite(database_url, base_dir), database_url)
    data_dir = base_dir / data_dir_name
    public_dir = base_dir / get(lambda: root.string("public_dir", "public"), "public")

    def tables(key: str) -> list[_Table]:
        """The array's tables; an entry that is not a table is a problem, the others are read."""
        value = root.raw(key)
        if value is not None and not isinstance(value, list):
            return get(lambda: root.tables(key), [])
        found = []
        for i, item in enumerate(value or []):
            table = get(partial(_Table, item, f"{key}[{i}]"), None)
            if table is not None:
                found.append(table)
        return found

    units: list[UnitConf] = []
    unit_slugs: set[str] = set()
    for t in tables("units"):
        unit = UnitConf(
            name=get(partial(t.string, "name", required=True), ""),
            short_name=get(partial(t.opt_string, "short_name"), None),
            aliases=get(partial(t.strings, "aliases"), ()),
            slug=get(partial(_slug, t, unit_slugs), None),
        )
        get(t.done, None)
        units.append(unit)
    named_units = [u for u in units if u.name]
    unit_names = {u.name for u in named_units}
    if len(unit_names) != len(named_units):
        errors.errors.append(ConfigError("units", "unit names must be unique"))

    def recipient(t: _Table) -> RecipientConf:
        r = RecipientConf(
            unit=get(lambda: t.string("unit", required=True), ""),
            name=get(lambda: t.string("name", required=True), ""),
            email=get(lambda: t.string("email", required=True), ""),
            active=get(lambda: t.boolean("active", True), True),
            columns=get(lambda: t.strings("columns"), ()),
        )
        if r.unit and r.unit not in unit_names:
            errors.errors.append(unit_reference_error(t._key("unit"), r.unit, named_units))
        if r.email and not _EMAIL.match(r.email):
            errors.errors.append(ConfigError(t._key("email"), f"expected an email address, got {r.email!r}"))
        get(t.done, None)
        return r

    recipient_tables = tables("recipients")
    recipients = [recipient(t) for t in recipient_tables]
    sources = [_source(t, named_units, errors) for t in tables("sources")]
    keys = [s.key for s in sources if s.key]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        errors.errors.append(ConfigError("sources", f"source keys must be unique; repeated: {', '.join(duplicated)}"))

    def topic(t: _Table, slugs: set[str]) -> TopicConf:
        kw = t.raw("keywords")
        keywords: dict[str, float] = {}
        if isinstance(kw, list) and all(isinstance(k, str) for k in kw):
            keywords = {k: 1.0 for k in kw}
        elif isinstance(kw, dict) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in kw.values()):
            keywords = {str(k): float(v) for k, v in kw.items()}
        else:
            errors.errors.append(
                ConfigError(t._key("keywords"), "expected a list of phrases or a table phrase = weight")
            )
            kw = None
        if kw is not None and not keywords:
            errors.errors.append(ConfigError(t._key("keywords"), "expected at least one phrase"))
        conf = TopicConf(
            name=get(lambda: t.string("name", required=True), ""),
            keywords=keywords,
            min_score=get(lambda: t.number("min_score", 1.0), 1.0),
            slug=get(lambda: _slug(t, slugs), None),
        )
        get(t.done, None)
        return conf

    topic_slugs: set[str] = set()
    topics = [topic(t, topic_slugs) for t in tables("topics")]

    columns: list[ColumnConf] = []
    column_slugs: set[str] = set()
    for t in tables("columns"):
        columns.append(
            ColumnConf(
                name=get(partial(t.string, "name", required=True), ""),
                title_keywords=get(partial(t.strings, "title_keywords"), ()),
                slug=get(partial(_slug, t, column_slugs), None),
                start=get(partial(_iso_date, t, "start"), None),
            )
        )
        get(t.done, None)
    column_names = [c.name for c in columns if c.name]
    if len(set(column_names)) != len(column_names):
        errors.errors.append(ConfigError("columns", "column names must be unique"))
    for r, t in zip(recipients, recipient_tables, strict=True):
        unknown = [c for c in r.columns if c not in column_names]
        if unknown:
            known = "、".join(column_names) if column_names else "none is configured under [[columns]]"
            errors.errors.append(
                ConfigError(t._key("columns"), f"expected names of configured columns ({known}), got {unknown[0]!r}")
            )

    def section(key: str) -> _Table:
        return get(lambda: root.table(key), _Table({}, key))

    c = section("crawl")
    crawl = CrawlConf(
        user_agent=get(lambda: c.string("user_agent", CrawlConf.user_agent), CrawlConf.user_agent),
        timeout_seconds=get(
            lambda: c.number("timeout_seconds", CrawlConf.timeout_seconds, minimum=0.1), CrawlConf.timeout_seconds
        ),
        download_delay_seconds=get(
            lambda: c.number("download_delay_seconds", CrawlConf.download_delay_seconds),
            CrawlConf.download_delay_seconds,
        ),
        wechat_delay_seconds=get(
            lambda: c.number("wechat_delay_seconds", CrawlConf.wechat_delay_seconds), CrawlConf.wechat_delay_seconds
        ),
        max_page_bytes=get(
            lambda: c.integer("max_page_bytes", CrawlConf.max_page_bytes, minimum=1024), CrawlConf.max_page_bytes
        ),
        obey_robots=get(lambda: c.boolean("obey_robots", True), True),
        subprocess_timeout_seconds=get(
            lambda: c.integer("subprocess_timeout_seconds", CrawlConf.subprocess_timeout_seconds, minimum=1),
            CrawlConf.subprocess_timeout_seconds,
        ),
    )
    get(c.done, None)

    s = section("schedule")

    def timezone() -> str:
        tz_name = s.string("timezone", ScheduleConf.timezone)
        try:
            ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                "schedule.timezone", f"expected an IANA time zone such as Asia/Shanghai, got {tz_name!r}"
            ) from exc
        return tz_name

    sc = ScheduleConf
    schedule = ScheduleConf(
        timezone=get(timezone, sc.timezone),
        crawl_interval_minutes=get(
            lambda: s.integer("crawl_interval_minutes", sc.crawl_interval_minutes, minimum=1), sc.crawl_interval_minutes
        ),
        crawl_jitter_seconds=get(
            lambda: s.integer("crawl_jitter_seconds", sc.crawl_jitter_seconds, minimum=0), sc.crawl_jitter_seconds
        ),
        digest_weekday=get(lambda: s.choice("digest_weekday", WEEKDAYS, "mon"), "mon"),
        digest_time=get(lambda: _hhmm(s, "digest_time", sc.digest_time), sc.digest_time),
        recheck_time=get(lambda: _hhmm(s, "recheck_time", sc.recheck_time), sc.recheck_time),
        maintenance_time=get(lambda: _hhmm(s, "maintenance_time", sc.maintenance_time), sc.maintenance_time),
        misfire_grace_hours=get(
            lambda: s.number("misfire_grace_hours", sc.misfire_grace_hours), sc.misfire_grace_hours
        ),
        heartbeat_seconds=get(
            lambda: s.integer("heartbeat_seconds", sc.heartbeat_seconds, minimum=1, maximum=3600), sc.heartbeat_seconds
        ),
    )
    get(s.done, None)

    m = section("smtp")
    smtp = SmtpConf(
        host=get(lambda: m.string("host", SmtpConf.host), SmtpConf.host),
        port=get(lambda: m.integer("port", SmtpConf.port, minimum=1, maximum=65535), SmtpConf.port),
        security=get(lambda: m.choice("security", SMTP_SECURITY, "none"), "none"),
        user=get(lambda: m.opt_string("user"), None),
        from_addr=get(lambda: m.string("from_addr", SmtpConf.from_addr), SmtpConf.from_addr),
        from_name=get(lambda: m.string("from_name", SmtpConf.from_name), SmtpConf.from_name),
        password_env=get(lambda: m.string("password_env", SmtpConf.password_env), SmtpConf.password_env),
        timeout_seconds=get(
            lambda: m.number("timeout_seconds", SmtpConf.timeout_seconds, minimum=0.1), SmtpConf.timeout_seconds
        ),
        max_per_minute=get(
            lambda: m.integer("max_per_minute", SmtpConf.max_per_minute, minimum=1), SmtpConf.max_per_minute
        ),
        max_attempts=get(lambda: m.integer("max_attempts", SmtpConf.max_attempts, minimum=1), SmtpConf.max_attempts),
    )
    get(m.done, None)

    w = section("web")
    web = WebConf(
        host=get(lambda: w.string("host", WebConf.host), WebConf.host),
        port=get(lambda: w.integer("port", WebConf.port, minimum=1, maximum=65535), WebConf.port),
        base_url=get(lambda: w.string("base_url", WebConf.base_url), WebConf.base_url).rstrip("/"),
        image_cache_mb=get(
            lambda: w.integer("image_cache_mb", WebConf.image_cache_mb, minimum=1, maximum=1_000_000),
            WebConf.image_cache_mb,
        ),
        trusted_proxy=get(lambda: _ip_address(w, "trusted_proxy"), None),
        trusted_proxy_count=get(
            lambda: w.integer("trusted_proxy_count", WebConf.trusted_proxy_count, minimum=1, maximum=10),
            WebConf.trusted_proxy_count,
        ),
        export_limit=get(
            lambda: w.integer("export_limit", WebConf.export_limit, minimum=1, maximum=10_000_000),
            WebConf.export_limit,
        ),
    )
    get(w.done, None)

    f = section("feeds")
    feeds = FeedsConf(
        items_per_feed=get(
            lambda: f.integer("items_per_feed", FeedsConf.items_per_feed, minimum=1, maximum=1000),
            FeedsConf.items_per_feed,
        ),
        title_prefix=get(lambda: f.string("title_prefix", FeedsConf.title_prefix), FeedsConf.title_prefix),
        show_deleted=get(lambda: f.boolean("show_deleted", FeedsConf.show_deleted), FeedsConf.show_deleted),
    )
    get(f.done, None)

    d = section("digest")
    digest = DigestConf(
        operator_email=get(lambda: d.opt_string("operator_email"), None),
        grace_days=get(lambda: d.integer("grace_days", DigestConf.grace_days, minimum=0), DigestConf.grace_days),
        column_start=get(lambda: _iso_date_text(d, "column_start"), None),
        review=get(lambda: d.choice("review", REVIEW_MODES, DigestConf.review), DigestConf.review),
        approve_by=get(lambda: _approve_by(d, schedule), None),
    )
    if digest.review == "required" and not digest.operator_email:
        errors.errors.append(
            ConfigError(
                "digest.review", 'review = "required" needs digest.operator_email: the reminder to approve goes there'
            )
        )
    get(d.done, None)

    dt = section("distributed")

    def redis_url() -> str | None:
        url = dt.opt_string("redis_url")
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("distributed.redis_url", f"expected a redis://, rediss:// or unix:// URL, got {url!r}")
        return url

    def key_prefix() -> str:
        prefix = dt.string("key_prefix", DistributedConf.key_prefix)
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", prefix):
            raise ConfigError("distributed.key_prefix", f"expected 1-64 letters, digits or _.:- , got {prefix!r}")
        return prefix

    distributed = DistributedConf(
        redis_url=get(redis_url, None),
        key_prefix=get(key_prefix, DistributedConf.key_prefix),
        lease_seconds=get(
            lambda: dt.integer("lease_seconds", DistributedConf.lease_seconds, minimum=5, maximum=3600),
            DistributedConf.lease_seconds,
        ),
    )
    get(dt.done, None)
    get(root.done, None)
    errors.raise_any()
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
