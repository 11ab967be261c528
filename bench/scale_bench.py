"""The corpus at scale (issue 20): search, feeds, the digest and disk on a generated corpus of
`BENCH_STORIES` stories (bench/corpus_gen.py), on SQLite and on PostgreSQL.

For each database: the load (COPY / executemany), the search page a user gets
(`archive.search.search`: top 20 with snippets and the total) for common and rare two- and
four-character terms against the LIKE / ILIKE scan, the plans of the feed and digest queries
(`EXPLAIN` of the statements `feeds.selection` runs, to show they read indexes, not the corpus),
and the disk each table takes per 1,000 stories.

`BENCH_SCALE_SQLITE_URL` / `BENCH_SCALE_PG_URL` name an already loaded corpus to measure instead
of loading one (the 1,000,000-story runs); otherwise a temporary SQLite file and a temporary
PostgreSQL database on the server of `ZHUANLAN_BENCH_PG_URL` are loaded and dropped afterwards.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from archive.search import Filters, SearchResult, search
from bench.corpus_gen import COLUMN, load
from feeds.selection import load_digest_data, load_feed_items, plan_feeds
from pipeline.corpus.db import make_engine, session_factory, upgrade
from zhuanlan_config import Config, parse_config

TITLE = "The corpus at scale: search, feed and digest plans, disk per 1,000 stories"
STORIES = int(os.environ.get("BENCH_STORIES", "30000"))  # see docs/scaling.md: 1,000,000 takes hours here
PG_SERVER = os.environ.get("ZHUANLAN_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TZ = ZoneInfo("Asia/Shanghai")
QUERIES = (("党建", "2 字, common"), ("粮食", "2 字, rare"), ("自立自强", "4 字, common"), ("河湖长制", "4 字, rare"))
RUNS = 21
WEEK = "2026-W48"
TABLES = ("articles", "article_fts", "article_search", "appearances", "snapshots", "article_tags")


def _config(url: str, root: Path) -> Config:
    return parse_config(
        {
            "database_url": url,
            "public_dir": str(root / "public"),
            "data_dir": str(root / "data"),
            "web": {"base_url": "https://zl.example.org"},
            "feeds": {"items_per_feed": 50, "title_prefix": "专栏"},
            "columns": [{"name": COLUMN}],
            "digest": {"column_start": "2026-01-01"},
        },
        base_dir=root,
    )


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


CPU_MS: list[float] = []  # this process's CPU time of each sample of the last `_timed`


def _timed(func: Callable[[], object], runs: int) -> tuple[float, float, object]:
    """(median ms, p95 ms, last result); the CPU time of each run is left in CPU_MS."""
    samples, result = [], None
    CPU_MS.clear()
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        result = func()
        samples.append((time.perf_counter() - start) * 1000)
        CPU_MS.append((time.process_time() - cpu) * 1000)
    return statistics.median(samples), _p95(samples), result


def _scan(engine: Engine, q: str) -> tuple[int, list[int]]:
    """The baseline: count and newest 20 by a LIKE / ILIKE scan of title and body."""
    op = "ILIKE" if engine.dialect.name == "postgresql" else "LIKE"
    where = f"title {op} :p OR body_text {op} :p"
    with engine.connect() as conn:
        total = conn.execute(text(f"SELECT count(*) FROM articles WHERE {where}"), {"p": f"%{q}%"}).scalar_one()
        ids = conn.execute(
            text(f"SELECT id FROM articles WHERE {where} ORDER BY published_at DESC, id DESC LIMIT 20"), {"p": f"%{q}%"}
        ).scalars()
        return int(total), list(ids)


def search_rows(engine: Engine) -> list[str]:
    sessions = session_factory(engine)
    lines = [
        "| query | first run ms | search(): median / **p95** ms | CPU of this process: median / p95 ms | total shown | LIKE/ILIKE scan: count + newest 20 | speed-up (median) | same top 20 as the scan |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with sessions() as session:
        search(session, "党建", Filters(), tz=TZ)  # warm the process (the fold tables, the pool)
        for q, kind in QUERIES:
            # The query's first run reads its index pages into the caches: reported on its own, then
            # the warm runs (what every later search of the term costs).
            _, first, _ = _timed(partial(search, session, q, Filters(), tz=TZ), 1)
            median, p95, last = _timed(partial(search, session, q, Filters(), tz=TZ), RUNS)
            cpu = f"{statistics.median(CPU_MS):.1f} / {_p95(CPU_MS):.1f}"
            result = cast(SearchResult, last)
            shown = f"约 {result.total} 条" if result.estimated else f"{result.total} 篇"
            scan_ms, _, scanned = _timed(partial(_scan, engine, q), 1)
            total, newest = cast(tuple[int, list[int]], scanned)
            ids = [h.article_id for h in result.hits]
            same = "yes (newest first)" if result.estimated and ids == newest else "ranked (best first)"
            if not result.estimated and result.total != total:
                same = f"NO: {result.total} vs {total}"
            lines.append(
                f"| {q} ({kind}) | {first:.0f} | {median:.1f} / **{p95:.1f}** | {cpu} | {shown} (exact {total}) | {scan_ms:.0f} ms | "
                f"{scan_ms / median:.0f}× | {same} |"
            )
    return lines


@contextmanager
def _statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _explain(engine: Engine, statement: str, parameters: Any) -> list[str]:
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        cur = raw.cursor()  # type: ignore[union-attr]
        if engine.dialect.name == "postgresql":
            cur.execute("EXPLAIN " + statement, parameters)
            return [row[0] for row in cur.fetchall()]
        cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        return [row[3] for row in cur.fetchall()]


# A full read of a corpus table: PostgreSQL's Seq Scan, SQLite's SCAN without an index (SQLite's
# "SCAN articles USING INDEX ix" under a LIMIT is the ordered walk that stops at the limit).
_CORPUS_SCAN = re.compile(
    r"Seq Scan on (articles|appearances|article_tags|article_search|snapshots)\b"
    r"|^SCAN (articles|appearances|article_tags|snapshots)$"
)


def plan_rows(engine: Engine, url: str) -> list[str]:
    """Time the feed and digest loads and EXPLAIN every statement they run on the corpus."""
    sessions = session_factory(engine)
    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(url, Path(tmp))
        with sessions() as session:
            specs = plan_feeds(session, config)
        picks = {s.kind: s for s in reversed(specs)}  # one feed of each kind
        jobs: list[tuple[str, Callable[[], object]]] = []
        for kind in ("all", "unit", "column", "topic"):
            spec = picks[kind]
            feed = partial(load_feed_items, spec=spec, config=config)
            jobs.append((f"feed `{kind}` ({spec.title})", partial(_in_session, sessions, feed)))
        now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
        digest = partial(load_digest_data, week=WEEK, config=config, now=now)
        jobs.append((f"digest {WEEK}", partial(_in_session, sessions, digest)))
        out += [
            "| load | median ms (n=5) | statements on the corpus | any full scan of a corpus table |",
            "|---|---|---|---|",
        ]
        plans: list[str] = []
        for name, job in jobs:
            job()  # warm
            median, _, _ = _timed(job, 5)
            with _statements(engine) as seen:
                job()
            scans = []
            for statement, parameters in seen:
                lines = _explain(engine, statement, parameters)
                scans += [line.strip() for line in lines if _CORPUS_SCAN.search(line.strip())]
                plans += [f"-- {name}", statement.strip().splitlines()[0][:160] + " …", *lines, ""]
            out.append(f"| {name} | {median:.1f} | {len(seen)} | {'; '.join(scans) or 'none'} |")
        out += ["", "<details><summary>EXPLAIN of each statement</summary>", "", "```", *plans, "```", "</details>"]
    return out


def _in_session(sessions: Any, func: Callable[[Any], object]) -> object:
    with sessions() as session:
        return func(session)


def disk_rows(engine: Engine, stories: int) -> list[str]:
    per = 1000 / stories
    lines = ["| table | total MiB | KiB per 1,000 stories |", "|---|---|---|"]
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            sizes = {
                t: int(conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": t}).scalar_one())
                for t in TABLES
                if t != "article_fts"
            }
            whole = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
        else:
            rows = conn.execute(
                text(
                    "SELECT coalesce(m.tbl_name, d.name) AS t, sum(d.pgsize) FROM dbstat d "
                    "LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1"
                )
            ).all()
            by_table = {str(t): int(n) for t, n in rows}
            sizes = {
                t: sum(n for name, n in by_table.items() if name.startswith(t)) for t in TABLES if t != "article_search"
            }
            whole = int(
                conn.execute(
                    text("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size")
                ).scalar_one()
            )
    for table, size in sizes.items():
        lines.append(f"| {table} (with its indexes) | {size / 2**20:.1f} | {size * per / 1024:.0f} |")
    lines.append(f"| **whole database** | {whole / 2**20:.1f} | **{whole * per / 1024:.0f}** |")
    return lines


def _stories(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM articles")).scalar_one())


_PG_SETTINGS = ("server_version", "shared_buffers", "effective_cache_size", "work_mem", "random_page_cost", "jit")


def _server_settings(engine: Engine) -> list[str]:
    """The PostgreSQL server's settings that the plans and times depend on."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        shown = [f"{name} {conn.execute(text(f'SHOW {name}')).scalar_one()}" for name in _PG_SETTINGS]
    return ["", "Server: " + ", ".join(shown) + "."]


def measure(url: str, label: str, loaded_here: str) -> list[str]:
    engine = make_engine(url)
    try:
        upgrade(engine)  # a preloaded corpus gets this branch's indexes
        n = _stories(engine)
        out = [f"### {label}: {n:,} stories", "", loaded_here, *_server_settings(engine), ""]
        out += ["Search (each query run once, then 21 times warm):", "", *search_rows(engine), ""]
        out += [
            "Feeds and the digest (the statements `feeds.selection` runs, recorded and EXPLAINed):",
            "",
            *plan_rows(engine, url),
            "",
        ]
        out += ["Disk:", "", *disk_rows(engine, n), ""]
        return out
    finally:
        engine.dispose()


def _loaded(url: str, n: int) -> str:
    counts = load(url, n)
    return f"Loaded here: {counts.stories:,} stories in {counts.seconds:.0f} s ({counts.stories / counts.seconds:.0f} stories/s), {counts.rows}."


@contextmanager
def _pg_database() -> Iterator[str | None]:
    name = f"zh_bench_scale_{uuid.uuid4().hex[:8]}"
    server = make_url(PG_SERVER)
    admin = make_engine(server.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except SQLAlchemyError:
        admin.dispose()
        yield None
        return
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def run() -> list[str]:
    out = [
        f"Generated corpus (`python -m bench.corpus_gen`): stories of 400–1500 characters over eight years, 60 units, "
        f"120 sources, one appearance and one snapshot each, 1–3 topics, a third in the column. "
        f"`BENCH_STORIES` = {STORIES:,} for a fresh load.",
        "",
    ]
    sqlite_url = os.environ.get("BENCH_SCALE_SQLITE_URL")
    if sqlite_url:
        out += measure(sqlite_url, "SQLite", "Preloaded corpus (`BENCH_SCALE_SQLITE_URL`).")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/scale.db"
            out += measure(url, "SQLite", _loaded(url, STORIES))
    pg_url = os.environ.get("BENCH_SCALE_PG_URL")
    if pg_url:
        out += measure(pg_url, "PostgreSQL", "Preloaded corpus (`BENCH_SCALE_PG_URL`).")
    else:
        with _pg_database() as pg_temp:
            if pg_temp is None:
                out.append("No PostgreSQL server at ZHUANLAN_BENCH_PG_URL: PostgreSQL not measured.")
            else:
                out += measure(pg_temp, "PostgreSQL", _loaded(pg_temp, STORIES))
    return out


if __name__ == "__main__":
    print("\n".join(run()))
