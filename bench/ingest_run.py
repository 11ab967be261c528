"""Running `zhuanlan` crawls of the generated site for the ingest benchmark.

Writes a config for the site (units, topics, one source over the whole site or one per column),
runs `zhuanlan init` and `zhuanlan crawl` as child processes exactly as the scheduler does, and
measures each crawl: wall time, peak RSS of that child (`os.wait4`), requests per source and what
was stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.ingest_site import COLUMN, UNITS

ROOT = Path(__file__).resolve().parent.parent
CRAWL_TIMEOUT = 600


def _toml(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def write_config(
    path: Path, base: str, database_url: str, *, sources: list[tuple[str, str]], page_limit: int = 200
) -> Path:
    """A zhuanlan.toml for the site: `sources` is (key, list prefix) pairs, each an `html` list."""
    lines = [
        f"database_url = {_toml(database_url)}",
        f"data_dir = {_toml(str(path.parent / 'data'))}",
        f"public_dir = {_toml(str(path.parent / 'public'))}",
        "",
    ]
    for name, short, _title in UNITS:
        lines += [
            "[[units]]",
            f"name = {_toml(name)}",
            f"short_name = {_toml(short)}",
            f"aliases = [{_toml(short)}]",
            "",
        ]
    for key, prefix in sources:
        lines += [
            "[[sources]]",
            f"key = {_toml(key)}",
            'kind = "site_column"',
            f"url = {_toml(base + prefix + 'index.html')}",
            f"unit = {_toml(UNITS[-1][0])}",
            f"column = {_toml(COLUMN)}",
            "[sources.options]",
            'list_type = "html"',
            'link_selector = "ul.news-list li a"',
            'include = ["/art/"]',
            f"page_limit = {page_limit}",
            "",
        ]
    lines += [
        "[[columns]]",
        f"name = {_toml(COLUMN)}",
        'title_keywords = ["四中全会"]',
        "",
        "[[topics]]",
        'name = "科技创新"',
        'keywords = { "科技创新" = 2.0, "自立自强" = 2.0, "成果转化" = 1.0, "新质生产力" = 1.5 }',
        "min_score = 2.0",
        "",
        "[[topics]]",
        'name = "全面从严治党"',
        'keywords = ["全面从严治党", "作风建设", "八项规定", "廉政"]',
        "",
        "[crawl]",
        "download_delay_seconds = 0.0",
        "obey_robots = true",
        "timeout_seconds = 30",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class CrawlResult:
    seconds: float
    peak_rss_mb: float  # of the crawl process (its pipeline worker is another process)
    summary: dict[str, Any]
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0  # user + system of the process and its waited-for children (the pipeline worker)


def _env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ZHUANLAN_DATABASE_URL"] = database_url
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def zhuanlan(config: Path, database_url: str, *args: str, prefix: tuple[str, ...] = ()) -> CrawlResult:
    """Run `zhuanlan --config CONFIG ARGS…` in a child process; wall time and that child's peak RSS."""
    cmd = [sys.executable, *prefix, "-c", "import sys, zhuanlan_cli; sys.exit(zhuanlan_cli.entry())", "--config"]
    cmd += [str(config), *args]
    if prefix:  # python -m cProfile … -c is not possible: run the CLI module as a script instead
        cmd = [sys.executable, *prefix, str(ROOT / "zhuanlan_cli.py"), "--config", str(config), *args]
    out_path, err_path = config.with_suffix(".out"), config.with_suffix(".err")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=_env(database_url), cwd=ROOT)
        deadline = time.monotonic() + CRAWL_TIMEOUT
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"zhuanlan {' '.join(args)} exited {proc.returncode}: {stderr[-1500:]}")
    summary: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            summary = json.loads(line)
    return CrawlResult(
        seconds, usage.ru_maxrss / 1024, summary, stdout, stderr, cpu_seconds=usage.ru_utime + usage.ru_stime
    )


def crawl(config: Path, database_url: str, *extra: str, prefix: tuple[str, ...] = ()) -> CrawlResult:
    return zhuanlan(config, database_url, "crawl", "--json", *extra, prefix=prefix)


def init(config: Path, database_url: str) -> None:
    zhuanlan(config, database_url, "init")


@dataclass
class RunCounts:
    sources: int
    requests: list[int]  # per source, this crawl run
    new_stories: int
    reposts: int
    unchanged: int
    errors: int
    articles: int  # stored stories in the database
    appearances: int
    indexed: int  # search index entries


def counts(database_url: str, run_id: int) -> RunCounts:
    from pipeline.corpus.db import make_engine

    engine = make_engine(database_url) if database_url.startswith("sqlite") else _pg_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT requests, new_stories, reposts, unchanged, errors FROM source_runs "
                    "WHERE crawl_run_id = :r ORDER BY id"
                ),
                {"r": run_id},
            ).all()
            articles = int(conn.execute(text("SELECT count(*) FROM articles")).scalar_one())
            appearances = int(conn.execute(text("SELECT count(*) FROM appearances")).scalar_one())
            table = "article_fts" if database_url.startswith("sqlite") else "article_search"
            indexed = int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()
    return RunCounts(
        sources=len(rows),
        requests=[int(r[0] or 0) for r in rows],
        new_stories=sum(int(r[1] or 0) for r in rows),
        reposts=sum(int(r[2] or 0) for r in rows),
        unchanged=sum(int(r[3] or 0) for r in rows),
        errors=sum(int(r[4] or 0) for r in rows),
        articles=articles,
        appearances=appearances,
        indexed=indexed,
    )


def _pg_engine(url: str) -> Any:
    from pipeline.corpus.db import make_engine

    return make_engine(url)


def pg_answers(url: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


class PgSchema:
    """A private schema on the PostgreSQL server, dropped afterwards; `url` selects it."""

    def __init__(self, server: str, name: str) -> None:
        from urllib.parse import quote

        self.server = server
        self.name = name
        sep = "&" if "?" in server else "?"
        self.url = f"{server}{sep}options={quote(f'-csearch_path={name}')}"

    def __enter__(self) -> PgSchema:
        self.reset()
        return self

    def reset(self) -> None:
        """An empty schema (dropped and created again)."""
        engine = create_engine(self.server.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        engine.dispose()

    def __exit__(self, *exc: object) -> None:
        engine = create_engine(self.server.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
        engine.dispose()


def preload(database_url: str, n: int, seed: int = 5) -> None:
    """Store `n` synthetic stories (one appearance each, under a source of their own) straight into
    the database: the corpus "already stored" for the memory point. Signatures are random values of
    the current scheme, so they sit in the near-duplicate index like real ones but never collide."""
    import hashlib
    from datetime import UTC, datetime

    import numpy as np
    from sqlalchemy import insert

    from pipeline.corpus.db import make_engine
    from pipeline.corpus.models import Appearance, Article, Source
    from pipeline.similarity import NUM_PERM, SIGNATURE_SCHEME

    rng = np.random.default_rng(seed)
    now = datetime(2025, 6, 1, tzinfo=UTC)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            inserted = conn.execute(
                insert(Source).values(
                    key="preloaded", kind="site_column", url="http://preloaded.invalid/", options={}, enabled=False
                )
            ).inserted_primary_key
            assert inserted is not None
            source_id = inserted[0]
            start = int(conn.execute(text("SELECT coalesce(max(id), 0) FROM articles")).scalar_one()) + 1
            batch = 2000
            for offset in range(0, n, batch):
                ids = range(start + offset, start + min(n, offset + batch))
                body = "预置的存量文章正文。" * 60
                conn.execute(
                    insert(Article),
                    [
                        {
                            "id": i,
                            "guid": hashlib.sha1(f"pre-{i}".encode()).hexdigest(),
                            "title": f"存量文章{i}",
                            "positions": [],
                            "body_html": f"<p>{body}</p>",
                            "body_text": body,
                            "content_hash": hashlib.sha256(f"pre-{i}".encode()).hexdigest(),
                            "minhash": rng.integers(0, 2**63, 2 * NUM_PERM, dtype=np.uint64).astype("<u8").tobytes(),
                            "minhash_scheme": SIGNATURE_SCHEME,
                            "state": "live",
                            "created_at": now,
                            "updated_at": now,
                            "published_at": now,
                        }
                        for i in ids
                    ],
                )
                conn.execute(
                    insert(Appearance),
                    [
                        {
                            "article_id": i,
                            "source_id": source_id,
                            "canonical_key": f"preloaded.invalid/art/{i}.html",
                            "url": f"http://preloaded.invalid/art/{i}.html",
                            "fetched_at": now,
                            "content_hash": hashlib.sha256(f"pre-{i}".encode()).hexdigest(),
                            "is_original": True,
                            "meta": {},
                        }
                        for i in ids
                    ],
                )
    finally:
        engine.dispose()
