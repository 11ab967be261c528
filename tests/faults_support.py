"""Shared by the fault tests (crash, database, mail): running `zhuanlan` as a subprocess on the
bundled sample sources, and reading back what a crawl stored as comparable plain data, with the
checks that no row is half-written or duplicated."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from crawler.samples.server import SampleSources
from pipeline.corpus.models import Appearance, Article, ArticleTag, CrawlRun, Snapshot, SourceRun, Tag
from pipeline.corpus.search_index import _dialect, indexed_count
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent


def write_config(
    path: Path, samples: SampleSources, *, smtp_port: int | None = None, download_delay: float = 0.0
) -> Path:
    """The samples' config; `download_delay` (seconds between requests) keeps a crawl going for a
    few seconds, so a fault can land while the pipeline worker still has batches to commit."""
    text = samples.config_toml(
        smtp_port=smtp_port or free_port(),
        web_port=free_port(),
        data_dir=str(path.parent / "data"),
        public_dir=str(path.parent / "public"),
    )
    if download_delay:
        text, count = re.subn(r"(?m)^download_delay_seconds = 0$", f"download_delay_seconds = {download_delay}", text)
        assert count == 1, "the samples' config no longer sets download_delay_seconds = 0"
    path.write_text(text, encoding="utf-8")
    return path


def cli_env(db_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "ZHUANLAN_DATABASE_URL": db_url, **(extra or {})}
    env.pop("ZHUANLAN_CONFIG", None)
    return env


def cli_command(cfg: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "zhuanlan_cli", "--config", str(cfg), *args]


def run_cli(
    cfg: Path, db_url: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(cfg, *args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=cli_env(db_url, env),
        timeout=timeout,
        check=False,
    )


def start_cli(
    cfg: Path, db_url: str, *args: str, env: Mapping[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """`zhuanlan …` in the background. Its stderr goes to `log` (default: `cli-<n>.log` beside the
    config), never to an unread pipe that would block a chatty child."""
    if log is None:
        log = cfg.parent / f"cli-{len(list(cfg.parent.glob('cli-*.log')))}.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            cli_command(cfg, *args), cwd=ROOT, env=cli_env(db_url, env), stdout=subprocess.DEVNULL, stderr=stderr
        )
    _LOGS[proc.pid] = log
    return proc


_LOGS: dict[int, Path] = {}


def log_tail(proc: subprocess.Popen[bytes], chars: int = 3000) -> str:
    """The end of what a `start_cli` child wrote to stderr."""
    path = _LOGS.get(proc.pid)
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path is not None and path.is_file() else ""


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


@dataclass(frozen=True)
class Corpus:
    """What a crawl stored, without ids or times: comparable across databases."""

    keys: frozenset[str]
    stories: frozenset[frozenset[str]]  # canonical keys that share a story
    originals: frozenset[str]  # the 首发 appearance of each story
    titles: frozenset[tuple[str, str]]  # (original key, story title)
    tags: frozenset[tuple[str, frozenset[tuple[str, str]]]]  # (original key, {(kind, name)})


def read_corpus(session: Session) -> Corpus:
    appearances = session.execute(select(Appearance.canonical_key, Appearance.article_id, Appearance.is_original)).all()
    by_article: dict[int, set[str]] = {}
    original_of: dict[int, str] = {}
    for key, article_id, is_original in appearances:
        by_article.setdefault(article_id, set()).add(key)
        if is_original:
            original_of[article_id] = key
    tags: dict[int, set[tuple[str, str]]] = {}
    for article_id, kind, name in session.execute(
        select(ArticleTag.article_id, Tag.kind, Tag.name).join(Tag, Tag.id == ArticleTag.tag_id)
    ):
        tags.setdefault(article_id, set()).add((kind, name))
    titles: dict[int, str] = {a: t for a, t in session.execute(select(Article.id, Article.title))}
    return Corpus(
        keys=frozenset(k for k, _, _ in appearances),
        stories=frozenset(frozenset(keys) for keys in by_article.values()),
        originals=frozenset(original_of.values()),
        titles=frozenset((original_of.get(a, "?"), t) for a, t in titles.items()),
        tags=frozenset((original_of.get(a, "?"), frozenset(tags.get(a, set()))) for a in titles),
    )


def integrity_problems(session: Session) -> list[str]:
    """Half-written or duplicated rows: every article has appearances, one original and its index
    entry; every appearance has its article and a snapshot; no key, guid or snapshot twice."""
    problems: list[str] = []

    def count(query: object) -> int:
        return int(session.scalar(query) or 0)  # type: ignore[call-overload]

    articles = count(select(func.count()).select_from(Article))
    bare = count(
        select(func.count())
        .select_from(Article)
        .where(~select(Appearance.id).where(Appearance.article_id == Article.id).exists())
    )
    if bare:
        problems.append(f"{bare} articles without an appearance")
    orphans = count(
        select(func.count())
        .select_from(Appearance)
        .where(~select(Article.id).where(Article.id == Appearance.article_id).exists())
    )
    if orphans:
        problems.append(f"{orphans} appearances without their article")
    no_snapshot = count(
        select(func.count())
        .select_from(Appearance)
        .where(~select(Snapshot.id).where(Snapshot.id == Appearance.snapshot_id).exists())
    )
    if no_snapshot:
        problems.append(f"{no_snapshot} appearances without a snapshot")
    originals = session.execute(
        select(Appearance.article_id, func.count())
        .where(Appearance.is_original.is_(True))
        .group_by(Appearance.article_id)
    ).all()
    if len(originals) != articles or any(n != 1 for _, n in originals):
        problems.append(f"{articles} articles but originals per article {sorted(n for _, n in originals)}")
    bad_first = count(
        select(func.count())
        .select_from(Article)
        .where(
            ~select(Appearance.id)
            .where(Appearance.id == Article.first_appearance_id, Appearance.article_id == Article.id)
            .exists()
        )
    )
    if bad_first:
        problems.append(f"{bad_first} articles whose first appearance is not theirs")
    for column, label in (
        (Appearance.canonical_key, "canonical key"),
        (Article.guid, "guid"),
        (Snapshot.sha256, "snapshot"),
    ):
        dupes = count(
            select(func.count()).select_from(select(column).group_by(column).having(func.count() > 1).subquery())
        )
        if dupes:
            problems.append(f"{dupes} duplicated {label}s")
    indexed = indexed_count(session)
    if indexed != articles:
        problems.append(f"search index has {indexed} rows for {articles} articles")
    table, id_column = (
        ("article_search", "article_id") if _dialect(session) == "postgresql" else ("article_fts", "rowid")
    )
    stray = count(text(f"SELECT count(*) FROM {table} WHERE {id_column} NOT IN (SELECT id FROM articles)"))
    if stray:
        problems.append(f"{stray} search index rows of no article")
    return problems


def run_statuses(session: Session) -> tuple[list[str], list[str]]:
    """(crawl run statuses, source run statuses), oldest first."""
    crawl = list(session.scalars(select(CrawlRun.status).order_by(CrawlRun.id)))
    source = list(session.scalars(select(SourceRun.status).order_by(SourceRun.id)))
    return crawl, source


def dispose(engine: Engine) -> None:
    engine.dispose()
